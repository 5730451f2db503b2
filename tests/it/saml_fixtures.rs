//! SAML test responses, built from templates and signed with the `xmlsec1` command-line
//! tool using a test IdP key pair owned by the tests. Each attack case starts from one
//! known-good response (fresh timestamps) and changes exactly one thing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
pub const IDP_ENTITY: &str = "https://idp.attacks.test/metadata";

/// A key pair with a self-signed certificate, made with openssl.
pub struct KeyPair {
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl KeyPair {
    pub fn generate(dir: &Path, name: &str) -> Self {
        Self::generate_with(dir, name, &["-newkey", "rsa:2048"])
    }

    /// An EC P-256 key pair (what ADFS and Entra can be set to, next to RSA).
    pub fn generate_ec(dir: &Path, name: &str) -> Self {
        Self::generate_with(
            dir,
            name,
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    fn generate_with(dir: &Path, name: &str, key_args: &[&str]) -> Self {
        let (key, cert) = (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.crt")),
        );
        let ok = Command::new("openssl")
            .args(["req", "-x509"])
            .args(key_args)
            .args(["-nodes", "-days", "30", "-subj", &format!("/CN={name}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs")
            .status
            .success();
        assert!(ok, "openssl key generation");
        Self { key, cert }
    }

    /// The certificate's base64 DER (what metadata and KeyInfo carry).
    pub fn cert_b64(&self) -> String {
        let pem = std::fs::read_to_string(&self.cert).unwrap();
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }
}

pub struct Keys {
    pub dir: PathBuf,
    pub idp: KeyPair,
    /// A second, EC P-256, signing key of the same IdP.
    pub idp_ec: KeyPair,
    /// The broker's SP key pair (assertions are encrypted to its certificate).
    pub sp: KeyPair,
    pub attacker: KeyPair,
}

/// The test IdP's and an attacker's key pairs, made once per test binary.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        Keys {
            idp: KeyPair::generate(&dir, "test-idp"),
            idp_ec: KeyPair::generate_ec(&dir, "test-idp-ec"),
            sp: KeyPair::generate(&dir, "test-sp"),
            attacker: KeyPair::generate(&dir, "attacker"),
            dir,
        }
    })
}

/// IdP metadata for the test IdP, signing key = `key`.
pub fn idp_metadata(key: &KeyPair) -> String {
    idp_metadata_with(&[key])
}

/// IdP metadata with several signing keys, in this order.
pub fn idp_metadata_with(keys: &[&KeyPair]) -> String {
    let descriptors: String = keys
        .iter()
        .map(|k| format!(
            r#"
    <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            k.cert_b64()
        ))
        .collect();
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{IDP_ENTITY}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{descriptors}
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://127.0.0.1:9/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
    )
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A signature template for `reference` (xmlsec1 fills it in).
pub fn sig_template_for(reference: &str, sig_alg: &str, digest: &str) -> String {
    sig_template(reference, sig_alg, digest)
}

fn sig_template(reference: &str, sig_alg: &str, digest: &str) -> String {
    format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{sig_alg}"/><ds:Reference URI="#{reference}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##
    )
}

/// Everything one response says; `Default` is a known-good response for no request.
#[derive(Clone)]
pub struct Fixture {
    pub response_id: String,
    pub assertion_id: String,
    pub issue_instant: DateTime<Utc>,
    pub assertion_issue_instant: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_on_or_after: DateTime<Utc>,
    pub destination: Option<String>,
    pub recipient: String,
    /// `None`: no AudienceRestriction at all.
    pub audience: Option<String>,
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub issuer: String,
    pub status: String,
    pub groups: Vec<String>,
    pub sign_assertion: bool,
    pub sign_response: bool,
    pub sig_alg: String,
    pub digest: String,
    /// Signs with this key (default: the test IdP's).
    pub attacker_key: bool,
    /// Signs with the IdP's EC key (with `sig_alg` ECDSA_SHA256).
    pub ec_key: bool,
    /// The Response's own `InResponseTo` when it should differ from the assertion's
    /// (`Some(None)`: none at all).
    pub response_in_response_to: Option<Option<String>>,
    /// Encrypts the (signed) assertion to the SP's certificate with this content cipher
    /// (`AES128_GCM`, `AES256_GCM`), RSA-OAEP-MGF1P key transport, as IdPs do.
    pub encrypt: Option<&'static str>,
}

pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";

/// Encrypts the first `saml:Assertion` in `xml` into a `saml:EncryptedAssertion`, with the
/// real xmlsec1 tool: RSA-OAEP-MGF1P (SHA-1, as ADFS, Entra, Okta and Shibboleth send)
/// to the SP certificate, content with `data_alg`.
pub fn xmlsec_encrypt(xml: &str, data_alg: &str, sp: &KeyPair) -> String {
    let assertion = element(xml, "<saml:Assertion", "</saml:Assertion>");
    let wrapped = xml.replacen(
        assertion,
        &format!("<saml:EncryptedAssertion>{assertion}</saml:EncryptedAssertion>"),
        1,
    );
    let template = format!(
        r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element"><xenc:EncryptionMethod Algorithm="{data_alg}"/><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"><ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>"#
    );
    let session_key = if data_alg.contains("aes256") {
        "aes-256"
    } else {
        "aes-128"
    };
    let dir = tempfile::tempdir().unwrap();
    let (data, tmpl, out) = (
        dir.path().join("data.xml"),
        dir.path().join("tmpl.xml"),
        dir.path().join("out.xml"),
    );
    std::fs::write(&data, wrapped).unwrap();
    std::fs::write(&tmpl, template).unwrap();
    let res = Command::new("xmlsec1")
        .arg("--encrypt")
        .arg("--pubkey-cert-pem")
        .arg(&sp.cert)
        .args(["--session-key", session_key])
        .arg("--xml-data")
        .arg(&data)
        .args([
            "--node-name",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg("--output")
        .arg(&out)
        .arg(&tmpl)
        .output()
        .expect("xmlsec1 runs");
    assert!(
        res.status.success(),
        "xmlsec1 --encrypt: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let encrypted = std::fs::read_to_string(&out).unwrap();
    match encrypted.strip_prefix("<?xml version=\"1.0\"?>\n") {
        Some(rest) => rest.trim_end().to_owned(),
        None => encrypted.trim_end().to_owned(),
    }
}

impl Fixture {
    pub fn new(sp_entity: &str, acs: &str, in_response_to: Option<&str>) -> Self {
        let now = Utc::now();
        Self {
            response_id: format!("_r{:032x}", rand::random::<u128>()),
            assertion_id: format!("_a{:032x}", rand::random::<u128>()),
            issue_instant: now,
            assertion_issue_instant: now,
            not_before: now - Duration::seconds(30),
            not_on_or_after: now + Duration::minutes(5),
            destination: Some(acs.to_owned()),
            recipient: acs.to_owned(),
            audience: Some(sp_entity.to_owned()),
            in_response_to: in_response_to.map(str::to_owned),
            name_id: "alice@example.com".into(),
            issuer: IDP_ENTITY.into(),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            groups: vec!["devs".into()],
            sign_assertion: true,
            sign_response: false,
            sig_alg: RSA_SHA256.into(),
            digest: SHA256.into(),
            attacker_key: false,
            ec_key: false,
            encrypt: None,
            response_in_response_to: None,
        }
    }

    pub fn assertion(&self, with_template: bool) -> String {
        let irt = self
            .in_response_to
            .as_ref()
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        let audience = self
            .audience
            .as_ref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{a}</saml:Audience></saml:AudienceRestriction>"))
            .unwrap_or_default();
        let groups: String = self
            .groups
            .iter()
            .map(|g| format!(r#"<saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">{g}</saml:AttributeValue>"#))
            .collect();
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{ii}"><saml:Issuer>{issuer}</saml:Issuer>{sig}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name_id}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{noa}" Recipient="{recipient}"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{nb}" NotOnOrAfter="{noa}">{audience}</saml:Conditions><saml:AuthnStatement AuthnInstant="{ii}" SessionIndex="_s1"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement><saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">{groups}</saml:Attribute><saml:Attribute Name="mail" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue>{name_id}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#,
            id = self.assertion_id,
            ii = ts(self.assertion_issue_instant),
            issuer = self.issuer,
            sig = if with_template {
                sig_template(&self.assertion_id, &self.sig_alg, &self.digest)
            } else {
                String::new()
            },
            name_id = self.name_id,
            noa = ts(self.not_on_or_after),
            nb = ts(self.not_before),
            recipient = self.recipient,
        )
    }

    /// The Response around `assertion`, with a signature template when asked.
    pub fn response(&self, assertion: &str, with_template: bool) -> String {
        let irt = self
            .response_in_response_to
            .clone()
            .unwrap_or_else(|| self.in_response_to.clone())
            .as_ref()
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        let dest = self
            .destination
            .as_ref()
            .map(|d| format!(r#" Destination="{d}""#))
            .unwrap_or_default();
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{ii}"{dest}{irt}><saml:Issuer>{issuer}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>{assertion}</samlp:Response>"#,
            id = self.response_id,
            ii = ts(self.issue_instant),
            issuer = self.issuer,
            sig = if with_template {
                sig_template(&self.response_id, &self.sig_alg, &self.digest)
            } else {
                String::new()
            },
            status = self.status,
        )
    }

    /// The signed response XML.
    pub fn signed(&self) -> String {
        let key = if self.attacker_key {
            &keys().attacker
        } else if self.ec_key {
            &keys().idp_ec
        } else {
            &keys().idp
        };
        let mut xml = self.response(&self.assertion(self.sign_assertion), false);
        if self.sign_assertion {
            xml = xmlsec_sign(&xml, key);
        }
        if let Some(data_alg) = self.encrypt {
            xml = xmlsec_encrypt(&xml, data_alg, &keys().sp);
        }
        if self.sign_response {
            // The response's Signature goes right after its Issuer and is signed last, so
            // it covers the already signed assertion.
            let issuer_end = xml.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
            xml.insert_str(
                issuer_end,
                &sig_template(&self.response_id, &self.sig_alg, &self.digest),
            );
            xml = xmlsec_sign(&xml, key);
        }
        xml
    }
}

/// Signs the first signature template in `xml` with the real xmlsec1 tool.
pub fn xmlsec_sign(xml: &str, key: &KeyPair) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.xml"), dir.path().join("out.xml"));
    std::fs::write(&input, xml).unwrap();
    let out = Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(format!("{},{}", key.key.display(), key.cert.display()))
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
        ])
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .expect("xmlsec1 runs (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "xmlsec1 --sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = std::fs::read_to_string(&output).unwrap();
    // xmlsec1 writes an XML declaration; keep the document as an IdP would send it.
    match signed.strip_prefix("<?xml version=\"1.0\"?>\n") {
        Some(rest) => rest.trim_end().to_owned(),
        None => signed.trim_end().to_owned(),
    }
}

pub fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// The element `<prefix:Name ...>...</prefix:Name>` starting at the first `open` found.
pub fn element<'a>(xml: &'a str, open: &str, close: &str) -> &'a str {
    let start = xml.find(open).unwrap_or_else(|| panic!("no {open}"));
    let end = start
        + xml[start..]
            .find(close)
            .unwrap_or_else(|| panic!("no {close}"))
        + close.len();
    &xml[start..end]
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}
