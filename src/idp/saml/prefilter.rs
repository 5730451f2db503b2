//! A strict look at a SAML Response before anything else parses it.
//!
//! xmlsec fetches `Reference` URIs (http, file) and applies transforms before it checks a
//! signature, and libxml2 accepts DTDs; samael puts no limits on either (SECURITY-BAR §0.2,
//! S14, S15, S17). So the raw XML is first read with quick-xml, which loads nothing and
//! expands no entities, and refused unless it has exactly the shape SAML needs:
//!
//! - no `<!DOCTYPE>`; no processing instruction other than the XML declaration;
//! - one root element, `samlp:Response`; exactly one `saml:Assertion` or
//!   `saml:EncryptedAssertion`; no duplicate `ID`s; bounded depth and attribute counts;
//! - each `ds:Signature` is a direct child of the Response or of the Assertion, with exactly
//!   one `ds:Reference` whose `URI` is `#` + its parent's ID (or empty, for the Response);
//!   transforms only enveloped-signature and (exclusive) c14n; `SignatureMethod` and
//!   `DigestMethod` from the allow-list; no `ds:Object`, `ds:Manifest` or
//!   `ds:RetrievalMethod` anywhere;
//! - an `EncryptedAssertion` only with RSA-OAEP key transport and AES-GCM content
//!   encryption, only when the SP has a key, and only inside a signed Response.

use std::collections::HashSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const NS_PROTOCOL: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
pub const NS_XENC: &[u8] = b"http://www.w3.org/2001/04/xmlenc#";

const MAX_DEPTH: usize = 48;
const MAX_ATTRIBUTES: usize = 64;

const TRANSFORMS: [&str; 5] = [
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
];

const DIGESTS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

// Encryption: exactly what `decrypt` can decrypt, nothing else.
use super::decrypt::{DATA_ENCRYPTION, KEY_TRANSPORT, MGF, OAEP_DIGESTS};
const NS_XENC11: &[u8] = b"http://www.w3.org/2009/xmlenc11#";

/// The signature algorithm URI of a configured short name (`rsa-sha256`, ...).
pub fn signature_algorithm_uri(short: &str) -> Option<&'static str> {
    Some(match short {
        "rsa-sha256" => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "rsa-sha384" => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "rsa-sha512" => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "ecdsa-sha256" => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "ecdsa-sha384" => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "ecdsa-sha512" => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        _ => return None,
    })
}

/// Why the raw XML was refused. Each is its own metric label and log reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the document is not well-formed XML: {0}")]
    Malformed(String),
    #[error("the document has a DOCTYPE (DTDs and entities are refused)")]
    Doctype,
    #[error("the document has a processing instruction")]
    ProcessingInstruction,
    #[error("the root element is not a single samlp:Response")]
    NotAResponse,
    #[error("the document is nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("an element has more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("the ID {0:?} appears more than once")]
    DuplicateId(String),
    #[error("the response holds {0} assertions; exactly one is required")]
    AssertionCount(usize),
    #[error("the response is not signed")]
    Unsigned,
    #[error("a signature is not a direct child of the Response or the Assertion")]
    MisplacedSignature,
    #[error("a signature must have exactly one Reference (it has {0})")]
    ReferenceCount(usize),
    #[error("a signature references {0:?}, not the element it signs")]
    ReferenceUri(String),
    #[error("transform {0:?} is not allowed")]
    Transform(String),
    #[error("canonicalization method {0:?} is not allowed (only exclusive or inclusive C14N)")]
    Canonicalization(String),
    #[error("signature algorithm {0:?} is not allowed")]
    SignatureAlgorithm(String),
    #[error("digest algorithm {0:?} is not allowed")]
    DigestAlgorithm(String),
    #[error("ds:{0} is not allowed in a SAML response")]
    ForbiddenElement(String),
    #[error(
        "encryption algorithm {0:?} is not allowed (only RSA-OAEP with SHA-1 or SHA-256, and AES-128-GCM or AES-256-GCM)"
    )]
    EncryptionAlgorithm(String),
    #[error("the response holds an encrypted assertion, but no SP key is configured")]
    EncryptionNotConfigured,
    #[error("an encrypted assertion needs a signed Response")]
    EncryptedButResponseUnsigned,
}

/// What the pre-parse learned (unverified: used only for extra checks, never for identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub response_id: Option<String>,
    pub response_issue_instant: Option<String>,
    pub in_response_to: Option<String>,
    /// The root Response's `Destination` attribute.
    pub destination: Option<String>,
    pub response_signed: bool,
    pub assertion_signed: bool,
    pub encrypted: bool,
}

struct Frame {
    ns: Vec<u8>,
    local: Vec<u8>,
    id: Option<String>,
}

struct SignatureState {
    /// Index in the element stack of the Signature element.
    depth: usize,
    parent_id: Option<String>,
    parent_is_root: bool,
    references: usize,
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, Rejection> {
    for a in e.attributes() {
        let a = a.map_err(|err| Rejection::Malformed(err.to_string()))?;
        if a.key.as_ref() == name {
            let v = a
                .normalized_value(quick_xml::XmlVersion::default())
                .map_err(|err| Rejection::Malformed(err.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Checks the raw response XML. `allowed_signature_algorithms` are URIs.
pub fn check(
    xml: &str,
    allowed_signature_algorithms: &[&str],
    sp_has_key: bool,
) -> Result<Shape, Rejection> {
    let mut reader = NsReader::from_str(xml);
    let mut shape = Shape::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut seen_root = false;
    let mut assertions = 0usize;
    let mut signatures = 0usize;
    let mut sig: Option<SignatureState> = None;

    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| Rejection::Malformed(e.to_string()))?;
        let ns: Vec<u8> = match resolved {
            ResolveResult::Bound(n) => n.as_ref().to_vec(),
            ResolveResult::Unbound => Vec::new(),
            ResolveResult::Unknown(p) => {
                return Err(Rejection::Malformed(format!(
                    "undeclared namespace prefix {:?}",
                    String::from_utf8_lossy(&p)
                )));
            }
        };
        match event {
            Event::DocType(_) => return Err(Rejection::Doctype),
            Event::PI(_) => return Err(Rejection::ProcessingInstruction),
            Event::Decl(_) => {
                if seen_root {
                    return Err(Rejection::ProcessingInstruction);
                }
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let local = e.local_name().as_ref().to_vec();
                if stack.is_empty() {
                    if seen_root || ns != NS_PROTOCOL || local != b"Response" {
                        return Err(Rejection::NotAResponse);
                    }
                    seen_root = true;
                    shape.response_id = attr(e, b"ID")?;
                    shape.response_issue_instant = attr(e, b"IssueInstant")?;
                    shape.in_response_to = attr(e, b"InResponseTo")?;
                    shape.destination = attr(e, b"Destination")?;
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(Rejection::TooDeep);
                }
                if e.attributes().count() > MAX_ATTRIBUTES {
                    return Err(Rejection::TooManyAttributes);
                }
                let id = attr(e, b"ID")?;
                if let Some(id) = &id
                    && !ids.insert(id.clone())
                {
                    return Err(Rejection::DuplicateId(id.clone()));
                }
                check_element(
                    &ns,
                    &local,
                    e,
                    &stack,
                    &mut sig,
                    &mut shape,
                    &mut assertions,
                    &mut signatures,
                    allowed_signature_algorithms,
                    sp_has_key,
                )?;
                if is_empty {
                    // An empty ds:Signature has no Reference.
                    if sig.as_ref().is_some_and(|s| s.depth == stack.len()) {
                        return Err(Rejection::ReferenceCount(0));
                    }
                } else {
                    stack.push(Frame { ns, local, id });
                }
            }
            Event::End(_) => {
                let Some(frame) = stack.pop() else {
                    return Err(Rejection::Malformed("unbalanced end tag".into()));
                };
                if frame.ns == NS_DSIG
                    && frame.local == b"Signature"
                    && let Some(s) = sig.take()
                    && s.references != 1
                {
                    return Err(Rejection::ReferenceCount(s.references));
                }
            }
            Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::GeneralRef(_) => {
                if stack.is_empty()
                    && matches!(event, Event::Text(ref t) if !t.iter().all(u8::is_ascii_whitespace))
                {
                    return Err(Rejection::Malformed("text outside the root element".into()));
                }
            }
            Event::Eof => break,
        }
    }
    if !seen_root || !stack.is_empty() {
        return Err(Rejection::NotAResponse);
    }
    if assertions != 1 {
        return Err(Rejection::AssertionCount(assertions));
    }
    // Checked before "unsigned" so that it is the reason given: an encrypted assertion's
    // own signature is invisible here, so only a Response signature can count.
    if shape.encrypted && !shape.response_signed {
        return Err(Rejection::EncryptedButResponseUnsigned);
    }
    if signatures == 0 {
        return Err(Rejection::Unsigned);
    }
    Ok(shape)
}

#[allow(clippy::too_many_arguments)]
fn check_element(
    ns: &[u8],
    local: &[u8],
    e: &BytesStart<'_>,
    stack: &[Frame],
    sig: &mut Option<SignatureState>,
    shape: &mut Shape,
    assertions: &mut usize,
    signatures: &mut usize,
    allowed_signature_algorithms: &[&str],
    sp_has_key: bool,
) -> Result<(), Rejection> {
    let name = String::from_utf8_lossy(local).into_owned();
    if ns == NS_ASSERTION && (local == b"Assertion" || local == b"EncryptedAssertion") {
        *assertions += 1;
        if local == b"EncryptedAssertion" {
            if !sp_has_key {
                return Err(Rejection::EncryptionNotConfigured);
            }
            shape.encrypted = true;
        }
    }
    if ns == NS_XENC && local == b"EncryptionMethod" {
        let alg = attr(e, b"Algorithm")?.unwrap_or_default();
        // The content cipher belongs to EncryptedData, key transport to EncryptedKey.
        let allowed: &[&str] = match stack.last().map(|f| f.local.as_slice()) {
            Some(b"EncryptedData") => &DATA_ENCRYPTION,
            Some(b"EncryptedKey") => &KEY_TRANSPORT,
            _ => &[],
        };
        if !allowed.contains(&alg.as_str()) {
            return Err(Rejection::EncryptionAlgorithm(alg));
        }
    }
    if ns == NS_XENC11 && local == b"MGF" {
        let alg = attr(e, b"Algorithm")?.unwrap_or_default();
        if !MGF.contains(&alg.as_str()) {
            return Err(Rejection::EncryptionAlgorithm(alg));
        }
    }
    if ns != NS_DSIG {
        return Ok(());
    }
    match local {
        b"Object" | b"Manifest" | b"RetrievalMethod" => Err(Rejection::ForbiddenElement(name)),
        b"Signature" => {
            let parent = stack.last().ok_or(Rejection::MisplacedSignature)?;
            let parent_is_root = stack.len() == 1;
            let parent_ok =
                (parent_is_root && parent.ns == NS_PROTOCOL && parent.local == b"Response")
                    || (parent.ns == NS_ASSERTION && parent.local == b"Assertion");
            if !parent_ok || sig.is_some() {
                return Err(Rejection::MisplacedSignature);
            }
            *signatures += 1;
            if parent_is_root {
                shape.response_signed = true;
            } else {
                shape.assertion_signed = true;
            }
            *sig = Some(SignatureState {
                depth: stack.len(),
                parent_id: parent.id.clone(),
                parent_is_root,
                references: 0,
            });
            Ok(())
        }
        b"Reference" => {
            let Some(s) = sig.as_mut() else {
                return Err(Rejection::ForbiddenElement(name));
            };
            s.references += 1;
            let uri = attr(e, b"URI")?.unwrap_or_default();
            let ok = match uri.strip_prefix('#') {
                Some(id) => s.parent_id.as_deref() == Some(id),
                None => uri.is_empty() && s.parent_is_root,
            };
            if ok {
                Ok(())
            } else {
                Err(Rejection::ReferenceUri(uri))
            }
        }
        b"Transform" => {
            let alg = attr(e, b"Algorithm")?.unwrap_or_default();
            if TRANSFORMS.contains(&alg.as_str()) {
                Ok(())
            } else {
                Err(Rejection::Transform(alg))
            }
        }
        // SignedInfo's own canonicalization: a method xmlsec would run on attacker input
        // (XSLT, XPath, anything unknown) is refused here, with its own reason, instead of
        // surfacing later as an invalid signature.
        b"CanonicalizationMethod" => {
            let alg = attr(e, b"Algorithm")?.unwrap_or_default();
            if alg != "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
                && TRANSFORMS.contains(&alg.as_str())
            {
                Ok(())
            } else {
                Err(Rejection::Canonicalization(alg))
            }
        }
        b"SignatureMethod" => {
            let alg = attr(e, b"Algorithm")?.unwrap_or_default();
            if allowed_signature_algorithms.contains(&alg.as_str()) {
                Ok(())
            } else {
                Err(Rejection::SignatureAlgorithm(alg))
            }
        }
        b"DigestMethod" => {
            let alg = attr(e, b"Algorithm")?.unwrap_or_default();
            // Inside an xenc:EncryptionMethod it is RSA-OAEP's digest (SHA-1 is what
            // ADFS, Entra, Okta and Shibboleth send), not a signature's.
            let in_encryption = stack
                .last()
                .is_some_and(|f| f.ns == NS_XENC && f.local == b"EncryptionMethod");
            if in_encryption {
                return if OAEP_DIGESTS.contains(&alg.as_str()) {
                    Ok(())
                } else {
                    Err(Rejection::EncryptionAlgorithm(alg))
                };
            }
            if DIGESTS.contains(&alg.as_str()) {
                Ok(())
            } else {
                Err(Rejection::DigestAlgorithm(alg))
            }
        }
        // XPath/XSLT travel inside Transform, which is already refused by algorithm.
        _ => Ok(()),
    }
}
