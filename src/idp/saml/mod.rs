//! SAML 2.0 service provider: SP-initiated login (HTTP-Redirect AuthnRequest) and the
//! HTTP-POST assertion consumer, as a hardened wrapper around samael.
//!
//! The ACS path, in order, every step failing closed (SECURITY-BAR S1–S34):
//! 1. size cap on the base64 form value, then base64 and UTF-8;
//! 2. [`prefilter::check`]: the strict pre-parse (no DTD, no external references, one
//!    Reference per signature to its parent, allowed transforms and algorithms);
//! 3. the pending request is taken atomically from the store by the opaque RelayState:
//!    the IdP comes from it, never from the request;
//! 4. samael verification with only the pinned certificates, the algorithm allow-list and
//!    the no-ancestors reduction, off the async executor in a bounded pool with a hard
//!    timeout, a panic turned into an error;
//! 5. what samael leaves out: an AudienceRestriction with our entity id is required,
//!    IssueInstants not in the future beyond the skew, InResponseTo equal to the pending
//!    request id of this login;
//! 6. the replay cache: assertion and response ids put-if-absent until NotOnOrAfter;
//! 7. the identity: NameID exactly as sent, attributes as claims.
//!
//! The browser binding of the request is checked by the web layer when the ACS hands the
//! verified login over to a same-site GET (the ACS POST itself is cross-site).

mod decrypt;
mod error;
pub mod prefilter;

pub use error::SamlError;
use error::from_samael;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use samael::metadata::{EntityDescriptor, KeyDescriptor};
use samael::schema::Assertion;
use samael::service_provider::ServiceProvider;
use serde_json::{Value as Json, json};
use url::Url;

use super::{ClaimsError, VerifiedIdentity, identity_from_claims};
use crate::config::{IdpConfig, MetadataSource, SamlSettings};

/// Largest accepted `SAMLResponse` form value (base64), checked before decoding.
pub const MAX_RESPONSE_B64: usize = 256 * 1024;
/// How long one samael verification may take before the login is refused.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Verifications running at once, per IdP; more wait (and time out) rather than pile up.
/// Each costs a hop to the blocking pool and back, so a few more than the cores keep them
/// busy: on 2 cores, 8 slots verify 10-20 % more responses per second than 4
/// (BENCHMARKS.md), and a flood still gets at most 8 threads.
const VERIFY_SLOTS: usize = 8;
/// The longest a replay-cache entry is kept, whatever the assertion says.
const MAX_REPLAY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The pinned, loaded state of one IdP: samael SPs built with only pinned keys, one per
/// key. (samael gives up at the first certificate whose key type does not fit the
/// signature, so an IdP publishing an RSA and an EC key needs each tried on its own.)
struct Loaded {
    sps: Vec<Arc<ServiceProvider>>,
    /// The same SP without IdP keys, for the response checks of an encrypted response
    /// once its signature has verified and rolegate has decrypted it (`verify_encrypted`).
    plain_sp: Arc<ServiceProvider>,
    idp_entity_id: String,
    sso_url: String,
}

pub struct SamlProvider {
    pub idp: IdpConfig,
    settings: SamlSettings,
    pub sp_entity_id: String,
    pub acs_url: String,
    allowed_uris: Vec<&'static str>,
    loaded: RwLock<Option<Arc<Loaded>>>,
    slots: Arc<tokio::sync::Semaphore>,
    http: reqwest::Client,
}

/// A verified SAML login, before it becomes a session.
pub struct SamlLogin {
    pub identity: VerifiedIdentity,
    /// The browser-binding value of the SP-initiated login (None: IdP-initiated).
    pub binding: Option<String>,
}

/// What an SP-initiated login keeps server-side, under its RelayState.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PendingRequest {
    pub idp: String,
    pub request_id: String,
    pub binding: String,
    /// Where the browser goes after the sign-in (a checked local path), if not `/`.
    #[serde(default)]
    pub return_to: Option<String>,
}

fn sha256_hex(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cert_der(b64: &str) -> Option<Vec<u8>> {
    let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

impl SamlProvider {
    pub fn new(idp: IdpConfig, settings: SamlSettings, public_url: &Url) -> Self {
        let base = public_url.as_str().trim_end_matches('/');
        let allowed_uris = settings
            .allowed_algorithms
            .iter()
            .filter_map(|a| prefilter::signature_algorithm_uri(a))
            .collect();
        Self {
            sp_entity_id: format!("{base}/saml/{}/metadata", idp.id),
            acs_url: format!("{base}/saml/{}/acs", idp.id),
            idp,
            settings,
            allowed_uris,
            loaded: RwLock::new(None),
            slots: Arc::new(tokio::sync::Semaphore::new(VERIFY_SLOTS)),
            http: super::oidc::idp_http_client(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.loaded.read().map(|l| l.is_some()).unwrap_or(false)
    }

    fn current(&self) -> Result<Arc<Loaded>, SamlError> {
        self.loaded
            .read()
            .ok()
            .and_then(|l| l.clone())
            .ok_or(SamlError::Unavailable)
    }

    /// Loads IdP metadata: every signing certificate in it must be pinned; samael is then
    /// given exactly the pinned certificates (so it can never run without a key).
    pub fn load_metadata(&self, xml: &str) -> Result<(), String> {
        let mut md: EntityDescriptor = xml
            .parse()
            .map_err(|e| format!("metadata is not valid: {e}"))?;
        let entity_id = md.entity_id.clone().ok_or("metadata has no entityID")?;
        if let Some(expected) = &self.settings.entity_id
            && expected != &entity_id
        {
            return Err(format!(
                "metadata entityID {entity_id:?} is not the configured {expected:?}"
            ));
        }
        let pinned_pems: Vec<Vec<u8>> = self
            .settings
            .signing_cert_pems
            .iter()
            .filter_map(|p| pem::parse(p).ok().map(|b| b.contents().to_vec()))
            .collect();
        let is_pinned = |der: &[u8]| {
            let fp = sha256_hex(der);
            self.settings.signing_cert_sha256.contains(&fp) || pinned_pems.iter().any(|p| p == der)
        };
        let descriptors = md
            .idp_sso_descriptors
            .as_mut()
            .filter(|d| !d.is_empty())
            .ok_or("metadata has no IDPSSODescriptor")?;
        let mut trusted: Vec<Vec<u8>> = Vec::new();
        let mut sso_url = None;
        for d in descriptors.iter() {
            for kd in &d.key_descriptors {
                if kd.key_use.as_deref().is_some_and(|u| u == "encryption") {
                    continue;
                }
                for c in kd
                    .key_info
                    .x509_data
                    .iter()
                    .flat_map(|x| x.certificates.iter())
                {
                    let der = cert_der(c).ok_or("metadata holds an unreadable certificate")?;
                    if !is_pinned(&der) {
                        return Err(format!(
                            "metadata signing certificate sha256:{} is not pinned in the config",
                            sha256_hex(&der)
                        ));
                    }
                    if !trusted.contains(&der) {
                        trusted.push(der);
                    }
                }
            }
            sso_url = sso_url.or_else(|| {
                d.single_sign_on_services
                    .iter()
                    .find(|s| s.binding == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect")
                    .map(|s| s.location.clone())
            });
        }
        for der in &pinned_pems {
            if !trusted.contains(der) {
                trusted.push(der.clone());
            }
        }
        if trusted.is_empty() {
            return Err("no pinned signing certificate is available for this IdP".into());
        }
        let sso_url = sso_url.ok_or("metadata has no HTTP-Redirect SingleSignOnService")?;
        // samael sees only the pinned keys, all as signing keys.
        let key_descriptors: Vec<KeyDescriptor> = trusted
            .iter()
            .map(|der| KeyDescriptor {
                key_use: Some("signing".into()),
                key_info: samael::key_info::KeyInfo {
                    id: None,
                    x509_data: Some(samael::key_info::X509Data {
                        certificates: vec![base64::engine::general_purpose::STANDARD.encode(der)],
                    }),
                },
                encryption_methods: None,
            })
            .collect();
        for d in descriptors.iter_mut() {
            d.key_descriptors = key_descriptors.clone();
        }
        let allowed = self
            .settings
            .allowed_algorithms
            .iter()
            .filter_map(|a| {
                use samael::crypto::AllowedSignatureAlgorithm as A;
                Some(match a.as_str() {
                    "rsa-sha256" => A::RsaSha256,
                    "rsa-sha384" => A::RsaSha384,
                    "rsa-sha512" => A::RsaSha512,
                    "ecdsa-sha256" => A::EcdsaSha256,
                    "ecdsa-sha384" => A::EcdsaSha384,
                    "ecdsa-sha512" => A::EcdsaSha512,
                    _ => return None,
                })
            })
            .collect();
        let skew = chrono::Duration::from_std(self.settings.clock_skew).unwrap_or_default();
        // The optional SP key pair: signs AuthnRequests, decrypts assertions, and its
        // certificate is published in the SP metadata.
        let (key, certificate) = match (&self.settings.sp_key, &self.settings.sp_cert_pem) {
            (Some(k), Some(c)) => {
                use secrecy::ExposeSecret;
                let key = openssl::pkey::PKey::private_key_from_pem(k.expose_secret().as_bytes())
                    .map_err(|_| "the SP key is not a PEM private key")?;
                let der = pem::parse(c)
                    .map_err(|_| "the SP certificate is not PEM")?
                    .contents()
                    .to_vec();
                (Some(key), Some(samael::crypto::CertificateDer::from(der)))
            }
            _ => (None, None),
        };
        let sp = ServiceProvider {
            entity_id: Some(self.sp_entity_id.clone()),
            key,
            certificate,
            metadata_url: Some(self.sp_entity_id.clone()),
            acs_url: Some(self.acs_url.clone()),
            slo_url: None,
            idp_metadata: md,
            allow_idp_initiated: self.settings.allow_idp_initiated,
            max_issue_delay: chrono::Duration::seconds(90) + skew,
            max_clock_skew: skew,
            allowed_signature_algorithms: Some(allowed),
            authn_name_id_format: None,
            ..ServiceProvider::default()
        };
        let sps: Vec<Arc<ServiceProvider>> = key_descriptors
            .iter()
            .map(|kd| {
                let mut one = sp.clone();
                for d in one.idp_metadata.idp_sso_descriptors.iter_mut().flatten() {
                    d.key_descriptors = vec![kd.clone()];
                }
                Arc::new(one)
            })
            .collect();
        if sps
            .iter()
            .any(|sp| !matches!(sp.idp_signing_certs(), Ok(Some(ref c)) if c.len() == 1))
        {
            return Err("samael sees no signing certificate".into());
        }
        let mut plain = sp.clone();
        for d in plain.idp_metadata.idp_sso_descriptors.iter_mut().flatten() {
            d.key_descriptors = Vec::new();
        }
        if let Ok(mut l) = self.loaded.write() {
            *l = Some(Arc::new(Loaded {
                sps,
                plain_sp: Arc::new(plain),
                idp_entity_id: entity_id,
                sso_url,
            }));
        }
        Ok(())
    }

    /// Loads metadata from the file, or fetches it from the URL (retrying with backoff
    /// until it loads, then refreshing on the configured schedule; a failed refresh keeps
    /// the last good metadata).
    pub async fn run_metadata(self: Arc<Self>) {
        match self.settings.metadata.clone() {
            MetadataSource::File(path) => {
                let result = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|xml| self.load_metadata(&xml));
                if let Err(e) = result {
                    tracing::error!(idp = %self.idp.id, error = %e, "SAML metadata refused; this IdP cannot sign anyone in");
                }
            }
            MetadataSource::Url { url, refresh } => {
                let mut delay = Duration::from_secs(1);
                loop {
                    let result = async {
                        let res = self
                            .http
                            .get(url.clone())
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if !res.status().is_success() {
                            return Err(format!("HTTP {}", res.status()));
                        }
                        let body = res.bytes().await.map_err(|e| e.to_string())?;
                        let xml = std::str::from_utf8(&body)
                            .map_err(|_| "metadata is not UTF-8".to_owned())?;
                        self.load_metadata(xml)
                    }
                    .await;
                    match result {
                        Ok(()) => {
                            tracing::info!(idp = %self.idp.id, "SAML metadata loaded");
                            delay = Duration::from_secs(1);
                            tokio::time::sleep(refresh).await;
                        }
                        Err(e) => {
                            tracing::warn!(idp = %self.idp.id, error = %e, retry_in_s = delay.as_secs(), "SAML metadata not loaded");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(60));
                        }
                    }
                }
            }
        }
    }

    /// Builds the SP-initiated AuthnRequest (HTTP-Redirect binding) with rolegate's own
    /// 128-bit request id; returns the IdP URL to redirect to.
    pub fn start(&self, request_id: &str, relay_state: &str) -> Result<Url, SamlError> {
        let loaded = self.current()?;
        let sp = loaded.sps.first().ok_or(SamlError::Unavailable)?;
        let mut request = sp
            .make_authentication_request(&loaded.sso_url)
            .map_err(|e| SamlError::Unreadable(e.to_string()))?;
        request.id = request_id.to_owned();
        let url = match &sp.key {
            // Signed AuthnRequest (HTTP-Redirect binding: SigAlg + Signature parameters).
            Some(key) => request.signed_redirect(relay_state, key),
            None => request.redirect(relay_state),
        };
        url.map_err(|e| SamlError::Unreadable(e.to_string()))?
            .ok_or(SamlError::Unavailable)
    }

    /// The SP metadata an IdP administrator imports.
    pub fn sp_metadata(&self) -> Result<String, SamlError> {
        let loaded = self.current()?;
        use samael::traits::ToXml;
        // samael insists on an SLO URL; rolegate has no SLO endpoint, so build with a
        // placeholder and advertise none.
        let mut sp = (**loaded.sps.first().ok_or(SamlError::Unavailable)?).clone();
        sp.slo_url = Some(format!("{}#no-slo", self.sp_entity_id));
        let mut md = sp
            .metadata()
            .map_err(|e| SamlError::Unreadable(e.to_string()))?;
        for d in md.sp_sso_descriptors.iter_mut().flatten() {
            d.single_logout_services = None;
        }
        md.to_string()
            .map_err(|e| SamlError::Unreadable(format!("{e:?}")))
    }

    /// Verifies a posted response for the pending request (or an unsolicited one when
    /// allowed and `pending` is None). `now` is injected so tests need no sleeping.
    pub async fn verify(
        &self,
        saml_response: &str,
        pending: Option<&PendingRequest>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Assertion, prefilter::Shape), SamlError> {
        if saml_response.len() > MAX_RESPONSE_B64 {
            return Err(SamlError::TooLarge);
        }
        // IdPs may wrap the base64 in lines; most send it in one piece, which is decoded
        // without a copy. (Byte-wise is char-wise here: UTF-8 never puts an ASCII byte
        // inside a multi-byte character.)
        let b64 = base64::engine::general_purpose::STANDARD;
        let bytes = if saml_response.bytes().any(|b| b.is_ascii_whitespace()) {
            let compact: Vec<u8> = saml_response
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            b64.decode(compact)
        } else {
            b64.decode(saml_response)
        }
        .map_err(|_| SamlError::NotBase64)?;
        let xml = String::from_utf8(bytes).map_err(|_| SamlError::NotUtf8)?;
        let shape = prefilter::check(&xml, &self.allowed_uris, self.settings.sp_key.is_some())?;
        match (pending, &shape.in_response_to) {
            (None, Some(_)) => return Err(SamlError::UnknownRequest),
            (None, None) if !self.settings.allow_idp_initiated => {
                return Err(SamlError::Unsolicited);
            }
            _ => {}
        }
        let loaded = self.current()?;
        let sps = loaded.sps.clone();
        let plain_sp = loaded.plain_sp.clone();
        let encrypted = shape.encrypted;
        let request_id = pending.map(|p| p.request_id.clone());
        let permit = tokio::time::timeout(VERIFY_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| SamlError::VerifyTimeout)?
            .map_err(|_| SamlError::VerifierFailed)?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let ids: Vec<&str> = request_id.iter().map(String::as_str).collect();
            let ids = request_id.as_ref().map(|_| ids.as_slice());
            // Each pinned key on its own: a signature that does not verify with one key
            // is tried with the next; any other outcome (success, or a refusal after the
            // signature verified) is final.
            if encrypted {
                return verify_encrypted(&xml, &sps, &plain_sp, ids);
            }
            let mut result = Err(SamlError::SignatureInvalid);
            for sp in &sps {
                result = sp.parse_xml_response(&xml, ids).map_err(from_samael);
                if !matches!(result, Err(SamlError::SignatureInvalid)) {
                    break;
                }
            }
            result
        });
        let assertion = match tokio::time::timeout(VERIFY_TIMEOUT, task).await {
            Err(_) => return Err(SamlError::VerifyTimeout),
            // A panic inside samael/xmlsec surfaces here as a JoinError.
            Ok(Err(_)) => return Err(SamlError::VerifierFailed),
            Ok(Ok(r)) => r?,
        };
        self.post_checks(&assertion, &shape, &loaded.idp_entity_id, pending, now)?;
        Ok((assertion, shape))
    }

    /// What samael leaves out (SECURITY-BAR §2.5.3).
    fn post_checks(
        &self,
        a: &Assertion,
        shape: &prefilter::Shape,
        idp_entity_id: &str,
        pending: Option<&PendingRequest>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), SamlError> {
        let skew = chrono::Duration::from_std(self.settings.clock_skew).unwrap_or_default();
        if a.issue_instant > now + skew {
            return Err(SamlError::FutureIssueInstant);
        }
        if let Some(ii) = &shape.response_issue_instant {
            let t = chrono::DateTime::parse_from_rfc3339(ii)
                .map_err(|_| SamlError::Unreadable("IssueInstant".into()))?;
            if t > now + skew {
                return Err(SamlError::FutureIssueInstant);
            }
        }
        if a.issuer.value.as_deref() != Some(idp_entity_id) {
            return Err(SamlError::WrongIssuer);
        }
        // SAML Bindings §3.5.5.2: a signed Response must say where it was sent, and that
        // must be this ACS (samael compares it only when present).
        if shape.response_signed && shape.destination.as_deref() != Some(self.acs_url.as_str()) {
            return Err(SamlError::WrongDestination);
        }
        let restrictions: Vec<&samael::schema::AudienceRestriction> = a
            .conditions
            .iter()
            .flat_map(|c| c.audience_restrictions.iter().flatten())
            .collect();
        if restrictions.is_empty() {
            return Err(SamlError::AudienceMissing);
        }
        if !restrictions
            .iter()
            .all(|r| r.audience.iter().any(|aud| aud == &self.sp_entity_id))
        {
            return Err(SamlError::WrongAudience);
        }
        let bearer = a
            .subject
            .iter()
            .flat_map(|s| s.subject_confirmations.iter().flatten())
            .find(|c| c.method.as_deref() == Some("urn:oasis:names:tc:SAML:2.0:cm:bearer"))
            .ok_or(SamlError::NoBearerConfirmation)?;
        let data = bearer
            .subject_confirmation_data
            .as_ref()
            .ok_or(SamlError::NoBearerConfirmation)?;
        match (pending, &data.in_response_to) {
            (Some(p), Some(irt)) if irt == &p.request_id => {}
            (None, None) => {}
            _ => return Err(SamlError::InResponseTo),
        }
        if let (Some(p), Some(irt)) = (pending, &shape.in_response_to)
            && irt != &p.request_id
        {
            return Err(SamlError::InResponseTo);
        }
        Ok(())
    }

    /// How long the replay-cache entry for this assertion must live: until it can no
    /// longer be accepted (its latest NotOnOrAfter plus the tolerated clock skew), and a
    /// minute more.
    pub fn replay_ttl(&self, a: &Assertion, now: chrono::DateTime<chrono::Utc>) -> Duration {
        replay_ttl(a, now, self.settings.clock_skew)
    }

    /// The identity: NameID exactly as sent (no trimming or case folding), attributes as
    /// claims keyed by their Name (and FriendlyName), groups and user name per config.
    pub fn identity(&self, a: &Assertion) -> Result<VerifiedIdentity, SamlError> {
        let name_id = a
            .subject
            .as_ref()
            .and_then(|s| s.name_id.as_ref())
            .ok_or(SamlError::NoNameId)?;
        let mut claims = serde_json::Map::new();
        for attr in a
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| s.attributes.iter())
        {
            let values: Vec<Json> = attr
                .values
                .iter()
                .filter_map(|v| v.value.clone())
                .map(Json::String)
                .collect();
            for key in [attr.name.as_ref(), attr.friendly_name.as_ref()]
                .into_iter()
                .flatten()
            {
                claims
                    .entry(key.clone())
                    .or_insert_with(|| Json::Array(values.clone()));
            }
        }
        let email = [
            "mail",
            "email",
            "urn:oid:0.9.2342.19200300.100.1.3",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        ]
        .iter()
        .find_map(|k| {
            claims
                .get(*k)
                .and_then(|v| v.get(0))
                .and_then(Json::as_str)
                .map(str::to_owned)
        });
        // A single-valued user-name attribute becomes a string, so the shared extraction reads it.
        let username = match self.idp.username_claim.as_str() {
            "NameID" | "sub" => None,
            attr => Some(
                claims
                    .get(attr)
                    .and_then(|v| v.get(0))
                    .and_then(Json::as_str)
                    .ok_or_else(|| ClaimsError::MissingUsername(attr.to_owned()))?
                    .to_owned(),
            ),
        };
        let mut claims = Json::Object(claims);
        claims["sub"] = json!(name_id.value);
        claims["name_id_format"] = json!(name_id.format);
        if let Some(e) = email {
            claims["email"] = json!(e);
        }
        // Attributes are multi-valued: the user name (taken above) is not read from claims.
        let mut config = self.idp.clone();
        config.username_claim = "sub".into();
        let mut identity = identity_from_claims(&config, claims)?;
        if let Some(u) = username {
            identity.username = u;
        }
        Ok(VerifiedIdentity::verified(identity))
    }
}

/// See [`SamlProvider::replay_ttl`].
pub fn replay_ttl(a: &Assertion, now: chrono::DateTime<chrono::Utc>, skew: Duration) -> Duration {
    let until = a
        .subject
        .iter()
        .flat_map(|s| s.subject_confirmations.iter().flatten())
        .filter_map(|c| c.subject_confirmation_data.as_ref()?.not_on_or_after)
        .chain(a.conditions.iter().filter_map(|c| c.not_on_or_after))
        .max();
    until
        .and_then(|u| (u - now).to_std().ok())
        .map(|d| d + skew + Duration::from_secs(60))
        .unwrap_or(MAX_REPLAY_TTL)
        .clamp(Duration::from_secs(60), MAX_REPLAY_TTL)
}

/// An encrypted response (always signed: the pre-filter requires it, with its one
/// Reference covering the whole Response and so the ciphertext): the signature is
/// verified with each pinned key as for a plain response; then rolegate decrypts the
/// assertion (see `decrypt`) in the verified document, and samael checks the result
/// (status, destination, InResponseTo, issuer, time, audience, subject confirmation)
/// without a signature to verify, since the signature covered it already.
fn verify_encrypted(
    xml: &str,
    sps: &[Arc<ServiceProvider>],
    plain_sp: &ServiceProvider,
    ids: Option<&[&str]>,
) -> Result<Assertion, SamlError> {
    use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
    let mut verified = None;
    for sp in sps {
        let Ok(Some(certs)) = sp.idp_signing_certs() else {
            continue;
        };
        if let Ok(doc) = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &certs,
            ReduceMode::ValidateAndMarkNoAncestors,
            sp.allowed_signature_algorithms.as_deref(),
        ) {
            verified = Some(doc);
            break;
        }
    }
    let verified = verified.ok_or(SamlError::SignatureInvalid)?;
    let key = plain_sp
        .key
        .as_ref()
        .ok_or(SamlError::Decryption("no SP key is configured".into()))?;
    let decrypted =
        decrypt::decrypt(&verified, key).map_err(|e| SamlError::Decryption(e.to_string()))?;
    plain_sp
        .parse_xml_response(&decrypted, ids)
        .map_err(from_samael)
}
