//! OpenID Connect relying party: authorization code flow with PKCE (S256), `state` and
//! `nonce`, against any number of configured IdPs.
//!
//! Built on `openidconnect` for discovery, the code exchange and ID-token signature (its
//! RSA arithmetic done by aws-lc, see `keys`), issuer, audience, expiry and nonce checks,
//! and adds what the crate leaves out
//! (SECURITY-BAR J6–J18): a per-IdP asymmetric algorithm allow-list, leeway on `exp`,
//! `iat` not in the future, `azp`, the RFC 9207 `iss` parameter, userinfo `sub` equality,
//! and JWKS refetch on an unknown `kid` (at most once per 10 s, single flight, keeping the
//! last good keys when a refetch fails).
//!
//! Discovery runs in the background with backoff, so the broker starts and serves while an
//! IdP is down; until it succeeds that IdP's sign-in answers "temporarily unavailable".

use std::sync::{Arc, RwLock};
use std::time::Duration;

use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, SignatureVerificationError, TokenResponse, reqwest,
};
use secrecy::ExposeSecret;
use serde_json::Value as Json;
use url::Url;

use crate::config::{IdpConfig, OidcSettings};

mod checks;
mod keys;
mod refresh;
use checks::{check_at_hash, chrono_now, decode_payload, expired, merge_userinfo, token_error};
pub use refresh::RefreshError;

/// How often an unknown `kid` may trigger a JWKS refetch, per IdP.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is not available yet (discovery has not succeeded)")]
    Unavailable,
    #[error("the callback's iss parameter {got:?} is not this IdP's issuer")]
    IssuerMismatch { got: String },
    #[error("the callback has no iss parameter, which this IdP always sends (RFC 9207)")]
    IssuerMissing,
    #[error("the identity provider refused the code exchange: {0}")]
    TokenExchange(String),
    #[error("the identity provider could not be reached for the code exchange: {0}")]
    TokenEndpointUnreachable(String),
    #[error("the token response holds no ID token")]
    NoIdToken,
    #[error("the token response is malformed: {0}")]
    MalformedTokenResponse(String),
    #[error("the ID token is invalid: {0}")]
    InvalidIdToken(String),
    #[error("the ID token is signed with a key the IdP does not publish")]
    UnknownSigningKey,
    #[error("userinfo failed: {0}")]
    Userinfo(String),
    #[error("userinfo is about another subject than the ID token")]
    UserinfoSubjectMismatch,
}

impl OidcError {
    /// A short machine-readable reason for metrics and logs: verification failures are
    /// kept apart from transport failures.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable => "idp_unavailable",
            Self::IssuerMismatch { .. } => "iss_mismatch",
            Self::IssuerMissing => "iss_missing",
            Self::TokenExchange(_) => "token_exchange_refused",
            Self::TokenEndpointUnreachable(_) => "token_endpoint_unreachable",
            Self::NoIdToken => "no_id_token",
            Self::MalformedTokenResponse(_) => "malformed_token_response",
            Self::InvalidIdToken(_) => "invalid_id_token",
            Self::UnknownSigningKey => "unknown_signing_key",
            Self::Userinfo(_) => "userinfo_failed",
            Self::UserinfoSubjectMismatch => "userinfo_subject_mismatch",
        }
    }
}

/// The client for this broker's own logins: built once per discovered (or refetched) key
/// set, not per login (it holds a copy of the whole provider metadata).
type LoginClient = keys::Client<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

struct Discovered {
    metadata: keys::ProviderMetadata,
    client: LoginClient,
    /// From the raw discovery document (the typed metadata has no field for it).
    end_session_endpoint: Option<Url>,
    /// RFC 9207: the IdP says it always sends `iss` in authorization responses.
    iss_parameter_supported: bool,
    /// The same JWKS as `jsonwebtoken` keys, built once per fetched key set (token
    /// exchange verifies with these, see `idp::subject`).
    jwt_keys: std::sync::OnceLock<Arc<Vec<JwtKey>>>,
}

/// One of the IdP's keys, ready for `jsonwebtoken`.
pub struct JwtKey {
    pub kid: Option<String>,
    /// The `alg` the JWK names, if any (e.g. "RS256").
    pub alg: Option<String>,
    pub key: jsonwebtoken::DecodingKey,
}

/// What the raw discovery document says beyond `CoreProviderMetadata`.
#[derive(Default)]
struct DiscoveryExtras {
    end_session_endpoint: Option<Url>,
    iss_parameter_supported: bool,
}

/// One configured OIDC IdP: its settings, discovered metadata and cached keys.
pub struct OidcProvider {
    pub idp: IdpConfig,
    settings: OidcSettings,
    redirect_url: RedirectUrl,
    http: reqwest::Client,
    /// For JWKS refetches while a person waits at the callback: a tighter deadline than
    /// background fetches, so a hanging `jwks_uri` cannot hold a login for long.
    login_http: reqwest::Client,
    discovered: RwLock<Option<Arc<Discovered>>>,
    /// When the JWKS was last (re)fetched; the lock also makes refetches single-flight.
    last_jwks_fetch: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

fn algorithm(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    Some(match name {
        "RS256" => A::RsaSsaPkcs1V15Sha256,
        "RS384" => A::RsaSsaPkcs1V15Sha384,
        "RS512" => A::RsaSsaPkcs1V15Sha512,
        "PS256" => A::RsaSsaPssSha256,
        "PS384" => A::RsaSsaPssSha384,
        "PS512" => A::RsaSsaPssSha512,
        "ES256" => A::EcdsaP256Sha256,
        "ES384" => A::EcdsaP384Sha384,
        "EdDSA" => A::EdDsa,
        _ => return None,
    })
}

/// The HTTP client toward IdPs: no redirects (SSRF, J17) and bounded timeouts.
pub fn idp_http_client() -> reqwest::Client {
    idp_http_client_with(Duration::from_secs(10))
}

fn idp_http_client_with(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .build()
        .expect("a reqwest client with static settings builds")
}

/// How long a key refetch may take while a person waits at the callback.
const LOGIN_JWKS_TIMEOUT: Duration = Duration::from_secs(3);

/// What a started login keeps server-side, under its `state`.
pub struct LoginStart {
    pub authorize_url: Url,
    pub pkce_verifier: String,
}

impl OidcProvider {
    pub fn new(idp: IdpConfig, settings: OidcSettings, public_url: &Url) -> Self {
        let redirect = public_url
            .join(&settings.redirect_path)
            .expect("redirect_path is validated as an absolute path");
        Self {
            idp,
            redirect_url: RedirectUrl::from_url(redirect),
            settings,
            http: idp_http_client(),
            login_http: idp_http_client_with(LOGIN_JWKS_TIMEOUT),
            discovered: RwLock::new(None),
            last_jwks_fetch: tokio::sync::Mutex::new(None),
        }
    }

    pub fn redirect_path(&self) -> &str {
        &self.settings.redirect_path
    }

    pub fn issuer(&self) -> &Url {
        &self.settings.issuer
    }

    pub fn is_ready(&self) -> bool {
        self.discovered.read().map(|d| d.is_some()).unwrap_or(false)
    }

    fn current(&self) -> Result<Arc<Discovered>, OidcError> {
        self.discovered
            .read()
            .ok()
            .and_then(|d| d.clone())
            .ok_or(OidcError::Unavailable)
    }

    /// Discovers the IdP (metadata + JWKS). The crate rejects metadata whose `issuer`
    /// differs from the configured one (J17).
    pub async fn discover(&self) -> Result<(), String> {
        let issuer = IssuerUrl::new(self.settings.issuer_id.clone()).map_err(|e| e.to_string())?;
        let metadata = keys::ProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| format!("{e}"))?;
        *self.last_jwks_fetch.lock().await = Some(tokio::time::Instant::now());
        let extras = self.discovery_extras().await;
        if let Ok(mut d) = self.discovered.write() {
            *d = Some(Arc::new(Discovered {
                client: self.login_client(&metadata),
                metadata,
                end_session_endpoint: extras.end_session_endpoint,
                iss_parameter_supported: extras.iss_parameter_supported,
                jwt_keys: std::sync::OnceLock::new(),
            }));
        }
        Ok(())
    }

    /// The fields of the discovery document `CoreProviderMetadata` does not carry.
    async fn discovery_extras(&self) -> DiscoveryExtras {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer_id.trim_end_matches('/')
        );
        let doc: Option<Json> = async {
            let body = self.http.get(url).send().await.ok()?.bytes().await.ok()?;
            serde_json::from_slice(&body).ok()
        }
        .await;
        let Some(doc) = doc else {
            return DiscoveryExtras::default();
        };
        DiscoveryExtras {
            end_session_endpoint: doc
                .get("end_session_endpoint")
                .and_then(Json::as_str)
                .and_then(|s| Url::parse(s).ok()),
            iss_parameter_supported: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        }
    }

    /// Retries discovery with exponential backoff (1 s to 60 s) until it succeeds.
    pub async fn discover_until_ready(self: Arc<Self>) {
        let mut delay = Duration::from_secs(1);
        loop {
            match self.discover().await {
                Ok(()) => {
                    tracing::info!(idp = %self.idp.id, issuer = %self.settings.issuer, "OIDC discovery succeeded");
                    return;
                }
                Err(e) => {
                    tracing::warn!(idp = %self.idp.id, error = %e, retry_in_s = delay.as_secs(), "OIDC discovery failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Refetches the JWKS after an unknown `kid`, at most once per interval. A failed
    /// fetch keeps the last good keys. Returns whether new keys were installed.
    async fn refetch_jwks(&self) -> bool {
        let mut last = self.last_jwks_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(tokio::time::Instant::now());
        let Ok(current) = self.current() else {
            return false;
        };
        let uri = current.metadata.jwks_uri().clone();
        match keys::IdpKeySet::fetch_async(&uri, &self.login_http).await {
            Ok(jwks) => {
                let metadata = current.metadata.clone().set_jwks(jwks);
                if let Ok(mut d) = self.discovered.write() {
                    *d = Some(Arc::new(Discovered {
                        client: self.login_client(&metadata),
                        metadata,
                        end_session_endpoint: current.end_session_endpoint.clone(),
                        iss_parameter_supported: current.iss_parameter_supported,
                        jwt_keys: std::sync::OnceLock::new(),
                    }));
                }
                tracing::info!(idp = %self.idp.id, "JWKS refetched after an unknown key id");
                true
            }
            Err(e) => {
                tracing::warn!(
                    idp = %self.idp.id,
                    jwks_uri = %uri.url(),
                    error = %crate::telemetry::error_chain(&e),
                    "JWKS refetch failed; keeping the last good keys"
                );
                false
            }
        }
    }

    fn login_client(&self, metadata: &keys::ProviderMetadata) -> LoginClient {
        keys::Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    /// Builds the authorization URL for a login whose `state` and `nonce` the caller
    /// generated and stores. PKCE is always S256.
    pub fn start(&self, state: &str, nonce: &str) -> Result<LoginStart, OidcError> {
        let d = self.current()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let client = &d.client;
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for s in &self.settings.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, _, _) = req.url();
        Ok(LoginStart {
            authorize_url: url,
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a login: exchanges the code, verifies the ID token fully, reads userinfo
    /// when configured, and returns the verified claim set, and the IdP's refresh token
    /// when it issued one (kept for re-validation).
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        iss_param: Option<&str>,
    ) -> Result<(Json, Option<String>), OidcError> {
        // RFC 9207: when the IdP names itself in the callback, it must be the IdP this
        // login was started at (mix-up defence; the IdP itself came from stored state).
        if let Some(iss) = iss_param
            && iss != self.settings.issuer_id
        {
            return Err(OidcError::IssuerMismatch {
                got: iss.to_owned(),
            });
        }
        let d = self.current()?;
        // An IdP that advertises the parameter always sends it: a callback without it
        // did not come from that IdP's authorization endpoint as-is.
        if iss_param.is_none() && d.iss_parameter_supported {
            return Err(OidcError::IssuerMissing);
        }
        let token = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::TokenExchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = token.id_token().ok_or(OidcError::NoIdToken)?.clone();
        let client_id = self.settings.client_id.as_str();
        let claims = match self.verify(&d, &id_token, client_id, Some(nonce)) {
            // Key rotation: an unknown `kid` triggers one (rate-limited) JWKS refetch.
            Err(OidcError::UnknownSigningKey) if self.refetch_jwks().await => {
                self.verify(&*self.current()?, &id_token, client_id, Some(nonce))?
            }
            other => other?,
        };
        check_at_hash(&id_token, &claims, token.access_token())?;
        let refresh_token = token.refresh_token().map(|r| r.secret().clone());
        if self.settings.use_userinfo {
            let userinfo = self.userinfo(&d, token.access_token().secret()).await?;
            return Ok((merge_userinfo(claims, userinfo)?, refresh_token));
        }
        Ok((claims, refresh_token))
    }

    /// Verifies an ID token that a client presents (not one from this broker's own code
    /// exchange) as issued by this IdP to `audience`: signature with this IdP's keys (one
    /// JWKS refetch on an unknown `kid`), algorithm allow-list, `iss`, `aud`, `azp`,
    /// `exp` and `iat`. There is no nonce: the presenting client kept it.
    pub async fn verify_presented_id_token(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<Json, OidcError> {
        let id_token: CoreIdToken = token
            .parse()
            .map_err(|e| OidcError::InvalidIdToken(format!("not a JWT: {e}")))?;
        let d = self.current()?;
        match self.verify(&d, &id_token, audience, None) {
            Err(OidcError::UnknownSigningKey) if self.refetch_jwks().await => {
                self.verify(&*self.current()?, &id_token, audience, None)
            }
            other => other,
        }
    }

    /// The ID-token checks shared by the code exchange and presented tokens: `client_id`
    /// is the audience (and `azp`) required; `nonce`, when given, must match.
    fn verify(
        &self,
        d: &Discovered,
        token: &CoreIdToken,
        client_id: &str,
        nonce: Option<&str>,
    ) -> Result<Json, OidcError> {
        let leeway = self.settings.leeway;
        let algs: Vec<CoreJwsSigningAlgorithm> = self
            .settings
            .allowed_algorithms
            .iter()
            .filter_map(|a| algorithm(a))
            .collect();
        let issuer = IssuerUrl::new(self.settings.issuer_id.clone())
            .map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
        // The client secret is given to the verifier only for this broker's own client:
        // the allow-list is asymmetric-only anyway, so it never verifies an HS256 token.
        let verifier = match &self.settings.client_secret {
            Some(secret) if client_id == self.settings.client_id => {
                keys::IdTokenVerifier::new_confidential_client(
                    ClientId::new(client_id.to_owned()),
                    ClientSecret::new(secret.expose_secret().to_owned()),
                    issuer,
                    d.metadata.jwks().clone(),
                )
            }
            _ => keys::IdTokenVerifier::new_public_client(
                ClientId::new(client_id.to_owned()),
                issuer,
                d.metadata.jwks().clone(),
            ),
        }
        .set_allowed_algs(algs)
        // The crate checks `exp` with zero leeway; shifting its clock back by the leeway
        // tolerates that much skew. (Its message would then print the shifted time: an
        // expiry is reported by `expired` below with the real one.)
        .set_time_fn(move || chrono_now() - chrono::Duration::from_std(leeway).unwrap_or_default());
        let to_error = |e: ClaimsVerificationError| match e {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => OidcError::UnknownSigningKey,
            ClaimsVerificationError::Expired(_) => expired(token, leeway),
            other => OidcError::InvalidIdToken(crate::telemetry::error_chain(&other)),
        };
        let verified = match nonce {
            Some(n) => token.claims(&verifier, &Nonce::new(n.to_owned())),
            None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(to_error)?;

        let now = chrono_now();
        let max_age = self.settings.max_token_age;
        let leeway = chrono::Duration::from_std(leeway).unwrap_or_default();
        if verified.issue_time() > now + leeway {
            return Err(OidcError::InvalidIdToken("iat is in the future".into()));
        }
        if verified.issue_time() + chrono::Duration::from_std(max_age).unwrap_or_default() + leeway
            < now
        {
            return Err(OidcError::InvalidIdToken(format!(
                "issued at {} (iat), more than {} ago",
                verified.issue_time().to_rfc3339(),
                humantime::format_duration(max_age)
            )));
        }
        // `azp`, when present, must be this client. (OIDC Core also asks for `azp` when
        // there are several audiences; that case never reaches here: the verifier
        // refuses any audience besides `client_id`, as `openidconnect` does by default,
        // so a check for it would be dead code.)
        if let Some(azp) = verified.authorized_party()
            && azp.as_str() != client_id
        {
            return Err(OidcError::InvalidIdToken(format!(
                "azp {:?} is not this client",
                azp.as_str()
            )));
        }
        // The signature covered these exact bytes: read every claim (groups and any
        // custom claim the rules use) from them.
        let claims = decode_payload(&token.to_string())?;
        // `nbf` is optional in ID tokens and the crate ignores it; when present it counts.
        match claims.get("nbf") {
            None | Some(Json::Null) => {}
            Some(Json::Number(n)) => {
                let nbf = n.as_i64().ok_or_else(|| {
                    OidcError::InvalidIdToken("nbf is not a whole number of seconds".into())
                })?;
                if nbf > (now + leeway).timestamp() {
                    return Err(OidcError::InvalidIdToken(format!(
                        "not valid before {} (nbf); it is now {}",
                        chrono::DateTime::from_timestamp(nbf, 0)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| nbf.to_string()),
                        now.to_rfc3339()
                    )));
                }
            }
            Some(_) => {
                return Err(OidcError::InvalidIdToken("nbf is not a number".into()));
            }
        }
        Ok(claims)
    }

    async fn userinfo(&self, d: &Discovered, access_token: &str) -> Result<Json, OidcError> {
        let Some(endpoint) = d.metadata.userinfo_endpoint() else {
            return Err(OidcError::Userinfo(
                "the IdP publishes no userinfo endpoint".into(),
            ));
        };
        let res = self
            .http
            .get(endpoint.url().clone())
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| OidcError::Userinfo(e.to_string()))?;
        if !res.status().is_success() {
            return Err(OidcError::Userinfo(format!("status {}", res.status())));
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| OidcError::Userinfo(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| OidcError::Userinfo(format!("not JSON: {e}")))
    }

    /// The IdP's signing keys (the cached, rotating set the logins use) as
    /// `jsonwebtoken` keys, for verifying tokens an app presents (`idp::subject`). Built
    /// once per fetched key set; keys `jsonwebtoken` cannot use are left out.
    pub fn jwt_keys(&self) -> Result<Arc<Vec<JwtKey>>, OidcError> {
        let d = self.current()?;
        Ok(d.jwt_keys
            .get_or_init(|| {
                let set: Option<jsonwebtoken::jwk::JwkSet> =
                    serde_json::to_value(d.metadata.jwks())
                        .ok()
                        .and_then(|v| serde_json::from_value(v).ok());
                Arc::new(
                    set.map(|s| s.keys)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|k| {
                            Some(JwtKey {
                                kid: k.common.key_id.clone(),
                                alg: k.common.key_algorithm.map(|a| a.to_string()),
                                key: jsonwebtoken::DecodingKey::from_jwk(k).ok()?,
                            })
                        })
                        .collect(),
                )
            })
            .clone())
    }

    /// Refetches the JWKS after an unknown `kid` (rate limited, single flight; see
    /// `refetch_jwks`). Whether new keys were installed.
    pub async fn refetch_keys(&self) -> bool {
        self.refetch_jwks().await
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The IdP's end-session endpoint, when it publishes one.
    pub fn end_session_url(&self) -> Option<Url> {
        self.current().ok()?.end_session_endpoint.clone()
    }
}
