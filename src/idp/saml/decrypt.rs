//! Decrypting an `EncryptedAssertion` (XML Encryption), after the Response signature that
//! covers it has verified.
//!
//! samael decrypts only AES-128 (CBC or GCM) with RSA-OAEP over SHA-1, while IdPs send
//! AES-256-GCM and RSA-OAEP with SHA-256 too. So rolegate decrypts itself, with OpenSSL
//! (already linked by the server for xmlsec), exactly these forms and nothing else:
//! - key transport: `xmlenc#rsa-oaep-mgf1p` and `xmlenc11#rsa-oaep`, digest SHA-1 or
//!   SHA-256, MGF1 with SHA-1 (the default) or SHA-256;
//! - content: `xmlenc11#aes128-gcm` and `xmlenc11#aes256-gcm` (authenticated: a changed
//!   ciphertext fails, unlike CBC, which is refused);
//! - the `EncryptedKey` inside the `EncryptedData`'s `KeyInfo` (no `RetrievalMethod`).
//!
//! The pre-filter admits exactly these algorithms, so anything else is refused before
//! verification with its own reason.

use base64::Engine as _;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::Cipher;
use quick_xml::events::Event;

const XENC: &[u8] = b"http://www.w3.org/2001/04/xmlenc#";
const DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// Key transport algorithms rolegate decrypts.
pub const KEY_TRANSPORT: [&str; 2] = [
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
];
/// Content encryption algorithms rolegate decrypts.
pub const DATA_ENCRYPTION: [&str; 2] = [
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
];
/// OAEP digests (`ds:DigestMethod` inside the key's `EncryptionMethod`).
pub const OAEP_DIGESTS: [&str; 2] = [
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256",
];
/// MGF1 variants (`xenc11:MGF`).
pub const MGF: [&str; 2] = [
    "http://www.w3.org/2009/xmlenc11#mgf1sha1",
    "http://www.w3.org/2009/xmlenc11#mgf1sha256",
];

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("the encrypted assertion is not well formed: {0}")]
    Shape(String),
    #[error("the encrypted key cannot be decrypted with the SP key")]
    Key,
    #[error("the assertion's ciphertext does not decrypt (changed or truncated)")]
    Content,
    #[error("the decrypted assertion is not UTF-8 XML")]
    Plaintext,
}

/// What the `EncryptedAssertion` holds.
#[derive(Default)]
struct Parts {
    data_alg: Option<String>,
    key_alg: Option<String>,
    key_digest: Option<String>,
    mgf: Option<String>,
    key_cipher: String,
    data_cipher: String,
    /// Byte range of the whole `EncryptedAssertion` element in the document.
    range: Option<(usize, usize)>,
}

fn attr(e: &quick_xml::events::BytesStart, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::default())
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Finds the parts of the (single) `EncryptedAssertion` in `xml`.
fn parts(xml: &str) -> Result<Parts, DecryptError> {
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut p = Parts::default();
    // Local names of open elements (with their namespace), innermost last.
    let mut stack: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut start_of_ea = None;
    loop {
        let before = reader.buffer_position() as usize;
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| DecryptError::Shape(e.to_string()))?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => ns.as_ref().to_vec(),
            _ => Vec::new(),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_vec();
                let parent = stack.last().map(|(_, l)| l.as_slice());
                if local == b"EncryptedAssertion" {
                    start_of_ea = Some(before);
                }
                if ns == XENC && local == b"EncryptionMethod" {
                    match parent {
                        Some(b"EncryptedData") => p.data_alg = attr(e, b"Algorithm"),
                        Some(b"EncryptedKey") => p.key_alg = attr(e, b"Algorithm"),
                        _ => {}
                    }
                }
                if ns == DSIG && local == b"DigestMethod" && parent == Some(b"EncryptionMethod") {
                    p.key_digest = attr(e, b"Algorithm");
                }
                if local == b"MGF" && parent == Some(b"EncryptionMethod") {
                    p.mgf = attr(e, b"Algorithm");
                }
                if matches!(event, Event::Start(_)) {
                    stack.push((ns, local));
                }
            }
            Event::Text(t) => {
                let in_value = stack
                    .last()
                    .is_some_and(|(ns, l)| ns == XENC && l == b"CipherValue");
                if in_value {
                    // CipherValue > CipherData > EncryptedKey | EncryptedData
                    let owner = stack
                        .len()
                        .checked_sub(3)
                        .and_then(|i| stack.get(i))
                        .map(|(_, l)| l.clone());
                    let text = t
                        .decode()
                        .map_err(|e| DecryptError::Shape(e.to_string()))?
                        .into_owned();
                    match owner.as_deref() {
                        Some(b"EncryptedKey") => p.key_cipher.push_str(&text),
                        Some(b"EncryptedData") => p.data_cipher.push_str(&text),
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                stack.pop();
                if e.local_name().as_ref() == b"EncryptedAssertion"
                    && let Some(start) = start_of_ea
                {
                    p.range = Some((start, reader.buffer_position() as usize));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(p)
}

fn b64(text: &str) -> Result<Vec<u8>, DecryptError> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|_| DecryptError::Shape("a CipherValue is not base64".into()))
}

fn digest(uri: Option<&str>, what: &str) -> Result<&'static MdRef, DecryptError> {
    match uri {
        None | Some("http://www.w3.org/2000/09/xmldsig#sha1") => Ok(Md::sha1()),
        Some("http://www.w3.org/2001/04/xmlenc#sha256") => Ok(Md::sha256()),
        Some(other) => Err(DecryptError::Shape(format!(
            "{what} {other:?} is not supported"
        ))),
    }
}

/// The document `xml` with its `EncryptedAssertion` replaced by the decrypted assertion.
pub fn decrypt(xml: &str, sp_key: &PKey<Private>) -> Result<String, DecryptError> {
    let p = parts(xml)?;
    let (start, end) = p
        .range
        .ok_or_else(|| DecryptError::Shape("no EncryptedAssertion".into()))?;
    let data_alg = p
        .data_alg
        .as_deref()
        .ok_or_else(|| DecryptError::Shape("no content EncryptionMethod".into()))?;
    let key_alg = p
        .key_alg
        .as_deref()
        .ok_or_else(|| DecryptError::Shape("no EncryptedKey in the KeyInfo".into()))?;
    if !KEY_TRANSPORT.contains(&key_alg) {
        return Err(DecryptError::Shape(format!(
            "key transport {key_alg:?} is not supported"
        )));
    }
    let oaep_md = digest(p.key_digest.as_deref(), "OAEP digest")?;
    let mgf_md = match p.mgf.as_deref() {
        None | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => Md::sha1(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => Md::sha256(),
        Some(other) => {
            return Err(DecryptError::Shape(format!(
                "MGF {other:?} is not supported"
            )));
        }
    };
    // rsa-oaep-mgf1p fixes MGF1 to SHA-1.
    if key_alg.ends_with("#rsa-oaep-mgf1p") && p.mgf.is_some() {
        return Err(DecryptError::Shape("rsa-oaep-mgf1p takes no MGF".into()));
    }
    let (cipher, key_len) = match data_alg {
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => (Cipher::aes_128_gcm(), 16),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => (Cipher::aes_256_gcm(), 32),
        other => {
            return Err(DecryptError::Shape(format!(
                "content encryption {other:?} is not supported"
            )));
        }
    };

    let wrapped = b64(&p.key_cipher)?;
    let session_key = (|| -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut ctx = PkeyCtx::new(sp_key)?;
        ctx.decrypt_init()?;
        ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
        ctx.set_rsa_oaep_md(oaep_md)?;
        ctx.set_rsa_mgf1_md(mgf_md)?;
        let mut out = Vec::new();
        ctx.decrypt_to_vec(&wrapped, &mut out)?;
        Ok(out)
    })()
    .map_err(|_| DecryptError::Key)?;
    if session_key.len() != key_len {
        return Err(DecryptError::Key);
    }

    // GCM: 96-bit IV first, 128-bit tag last.
    let data = b64(&p.data_cipher)?;
    if data.len() < 12 + 16 {
        return Err(DecryptError::Content);
    }
    let (iv, rest) = data.split_at(12);
    let (ciphertext, tag) = rest.split_at(rest.len() - 16);
    let plain = openssl::symm::decrypt_aead(cipher, &session_key, Some(iv), &[], ciphertext, tag)
        .map_err(|_| DecryptError::Content)?;
    let assertion = String::from_utf8(plain).map_err(|_| DecryptError::Plaintext)?;
    if !assertion.trim_start().starts_with('<') {
        return Err(DecryptError::Plaintext);
    }
    Ok(format!(
        "{}{}{}",
        &xml[..start],
        assertion.trim(),
        &xml[end..]
    ))
}

#[cfg(test)]
mod tests {
    use openssl::rsa::Rsa;

    use super::*;

    /// Encrypts `plain` the way an IdP using xmlenc 1.1 does: RSA-OAEP with `digest` and
    /// MGF1 with `mgf`, AES-256-GCM content.
    fn encrypted_response(
        key: &PKey<Private>,
        plain: &str,
        digest: (&str, &'static MdRef),
        mgf: (&str, &'static MdRef),
    ) -> String {
        let mut session_key = [0u8; 32];
        let mut iv = [0u8; 12];
        openssl::rand::rand_bytes(&mut session_key).unwrap();
        openssl::rand::rand_bytes(&mut iv).unwrap();
        let mut tag = [0u8; 16];
        let ct = openssl::symm::encrypt_aead(
            Cipher::aes_256_gcm(),
            &session_key,
            Some(&iv),
            &[],
            plain.as_bytes(),
            &mut tag,
        )
        .unwrap();
        let mut data = iv.to_vec();
        data.extend_from_slice(&ct);
        data.extend_from_slice(&tag);
        let mut ctx = PkeyCtx::new(key).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        ctx.set_rsa_oaep_md(digest.1).unwrap();
        ctx.set_rsa_mgf1_md(mgf.1).unwrap();
        let mut wrapped = Vec::new();
        ctx.encrypt_to_vec(&session_key, &mut wrapped).unwrap();
        let b = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r"><saml:Issuer>idp</saml:Issuer><saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element"><xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep"><ds:DigestMethod Algorithm="{}"/><xenc11:MGF xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" Algorithm="{}"/></xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#,
            digest.0,
            mgf.0,
            b(&wrapped),
            b(&data)
        )
    }

    const ASSERTION: &str =
        r#"<saml:Assertion ID="_a"><saml:Issuer>idp</saml:Issuer></saml:Assertion>"#;

    #[test]
    fn xmlenc11_rsa_oaep_with_sha256_and_mgf1_sha256_decrypts() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let xml = encrypted_response(
            &key,
            ASSERTION,
            ("http://www.w3.org/2001/04/xmlenc#sha256", Md::sha256()),
            ("http://www.w3.org/2009/xmlenc11#mgf1sha256", Md::sha256()),
        );
        let doc = decrypt(&xml, &key).unwrap();
        assert!(doc.contains(ASSERTION), "{doc}");
        assert!(!doc.contains("EncryptedAssertion"), "{doc}");
        assert!(doc.starts_with("<samlp:Response") && doc.ends_with("</samlp:Response>"));
    }

    #[test]
    fn a_declared_digest_that_was_not_used_fails_to_unwrap_the_key() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        // Wrapped with SHA-1, but the document claims SHA-256.
        let xml = encrypted_response(
            &key,
            ASSERTION,
            ("http://www.w3.org/2001/04/xmlenc#sha256", Md::sha1()),
            ("http://www.w3.org/2009/xmlenc11#mgf1sha1", Md::sha1()),
        );
        assert!(matches!(decrypt(&xml, &key), Err(DecryptError::Key)));
        let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let xml = encrypted_response(
            &key,
            ASSERTION,
            ("http://www.w3.org/2000/09/xmldsig#sha1", Md::sha1()),
            ("http://www.w3.org/2009/xmlenc11#mgf1sha1", Md::sha1()),
        );
        assert!(
            matches!(decrypt(&xml, &other), Err(DecryptError::Key)),
            "another SP's key"
        );
    }

    #[test]
    fn unsupported_forms_are_named() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let xml = encrypted_response(
            &key,
            ASSERTION,
            ("http://www.w3.org/2001/04/xmlenc#sha512", Md::sha512()),
            ("http://www.w3.org/2009/xmlenc11#mgf1sha1", Md::sha1()),
        );
        let err = decrypt(&xml, &key).unwrap_err().to_string();
        assert!(
            err.contains("OAEP digest") && err.contains("sha512"),
            "{err}"
        );
        let good = encrypted_response(
            &key,
            ASSERTION,
            ("http://www.w3.org/2000/09/xmldsig#sha1", Md::sha1()),
            ("http://www.w3.org/2009/xmlenc11#mgf1sha1", Md::sha1()),
        );
        let cbc = good.replace(
            "http://www.w3.org/2009/xmlenc11#aes256-gcm",
            "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        );
        let err = decrypt(&cbc, &key).unwrap_err().to_string();
        assert!(err.contains("aes256-cbc"), "{err}");
    }
}
