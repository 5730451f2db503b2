//! Signing a person in: starting a login at an IdP and finishing it.
//!
//! Login state (the IdP, nonce, PKCE verifier or SAML request id, and a browser-binding
//! value) is saved as typed single-use flow state under a random key (`state`, or an
//! opaque RelayState) and consumed atomically when the IdP sends the person back: single
//! use, the IdP always taken from the stored state (never from the request), and a store
//! failure means nobody gets in. Every failure is audited with its reason.
//!
//! SAML's ACS POST arrives cross-site, so the browser's SameSite=Lax login cookie may not
//! come with it: the ACS verifies the response and saves the verified identity as a
//! single-use hand-off; the same-site finish step checks the browser binding and ends with
//! the shared sign-in tail ([`Access::complete_sign_in`]), as the OIDC callback does.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::session::{IdentityRecord, is_token_shaped, random_token, tokens_match};
use super::{Access, Audited, RequestContext, Session};
use crate::audit::Person;
use crate::idp::saml::{PendingRequest, SamlError};
use crate::idp::{self, LoginError};
use crate::metrics::ReasonLabels;
use crate::store::{FirstUse, FlowState};

/// How long a started login may take at the IdP.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// How long a verified SAML login waits for its finish step.
const HANDOFF_TTL: Duration = Duration::from_secs(120);

#[derive(Serialize, Deserialize)]
struct PendingOidcLogin {
    idp: String,
    nonce: String,
    pkce_verifier: String,
    /// Equals the login cookie of the browser that started the login.
    binding: String,
    /// Where the browser goes after the sign-in (a checked local path), if not `/`.
    #[serde(default)]
    return_to: Option<String>,
}

impl FlowState for PendingOidcLogin {
    const KIND: &'static str = "oidc:state";
    const TTL: Duration = LOGIN_TTL;
}

impl FlowState for PendingRequest {
    const KIND: &'static str = "saml:relay";
    const TTL: Duration = LOGIN_TTL;
}

/// A verified SAML login on its way to the finish step.
#[derive(Serialize, Deserialize)]
struct SamlHandoff {
    identity: IdentityRecord,
    /// The browser binding of the SP-initiated login (None: IdP-initiated).
    binding: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

impl FlowState for SamlHandoff {
    const KIND: &'static str = "saml:handoff";
    const TTL: Duration = HANDOFF_TTL;
}

/// Where a sign-in may send the browser afterwards besides `/`: the CLI's pages and the
/// console shortcut links (which only show a confirmation), which need a signed-in browser. Only local paths with these prefixes, so a crafted link can
/// never turn the sign-in into an open redirect.
pub fn safe_return_to(raw: &str) -> Option<String> {
    let ok = (raw.starts_with("/oauth/authorize?")
        || raw == "/device"
        || raw.starts_with("/device?")
        || raw.starts_with("/console/"))
        && raw.len() <= 2048
        && !raw.contains('\\')
        && !raw.contains("//")
        && raw.chars().all(|c| c.is_ascii_graphic());
    ok.then(|| raw.to_owned())
}

/// A finished sign-in: the new session, and where the browser goes next (`/` if `None`).
pub struct SignedIn {
    pub session: Session,
    pub return_to: Option<String>,
}

/// Where to send the browser to sign in, and the binding value to set as its login
/// cookie (compared, in constant time, when the IdP sends it back).
pub struct LoginRedirect {
    pub url: Url,
    pub binding: String,
}

/// Why a sign-in did not complete. `web` turns each into one page.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("there is no such sign-in option")]
    UnknownIdp,
    #[error("{idp_name} cannot be reached right now")]
    IdpUnavailable { idp_name: String },
    #[error("the state store is unavailable")]
    StoreUnavailable,
    #[error("the audit log cannot be written")]
    AuditUnavailable,
    /// A lock applies, or the IdP's directory has the person deactivated.
    #[error("{0}")]
    Locked(super::locks::Locked),
    #[error("missing state")]
    MissingState,
    #[error("unknown or replayed state")]
    UnknownState,
    #[error("browser binding mismatch")]
    BindingMismatch,
    #[error("IdP no longer configured")]
    IdpGone,
    #[error("callback path is not this IdP's")]
    WrongCallbackPath,
    #[error("IdP returned error {code}")]
    IdpError { idp_name: String, code: String },
    #[error("missing code")]
    MissingCode,
    #[error(transparent)]
    Oidc(LoginError),
    #[error("saml {}: {}", .0.reason(), .0)]
    Saml(SamlError),
}

/// What kind of SAML refusal a [`SamlError`] is, for choosing the page a person sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamlRefusal {
    StoreUnavailable,
    IdpUnavailable,
    TooLarge,
    UnknownRequest,
    Replay,
    /// Not a readable SAML response at all.
    Malformed,
    /// A readable response that failed verification.
    NotVerified,
}

impl SamlRefusal {
    pub fn of(e: &SamlError) -> Self {
        match e {
            SamlError::StoreUnavailable => Self::StoreUnavailable,
            SamlError::Unavailable => Self::IdpUnavailable,
            SamlError::TooLarge => Self::TooLarge,
            SamlError::UnknownRequest | SamlError::BadRelayState => Self::UnknownRequest,
            SamlError::Replay => Self::Replay,
            SamlError::NotBase64
            | SamlError::NotUtf8
            | SamlError::Unreadable(_)
            | SamlError::Prefilter(_) => Self::Malformed,
            _ => Self::NotVerified,
        }
    }
}

/// What the IdP sent to an OIDC callback.
pub struct OidcCallback<'a> {
    pub path: &'a str,
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub iss: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl Access {
    /// Starts a sign-in at `idp` (OIDC or SAML): the pending login is saved as single-use
    /// flow state and the IdP URL returned with the browser binding.
    pub async fn start_login(
        &self,
        idp: &str,
        return_to: Option<&str>,
    ) -> Result<LoginRedirect, SignInError> {
        let binding = random_token();
        let return_to = return_to.and_then(safe_return_to);
        if let Some(p) = self.saml.iter().find(|p| p.idp.id.as_str() == idp) {
            let request_id = format!("_{:032x}", rand::random::<u128>());
            let relay = random_token();
            let url = p
                .start(&request_id, &relay)
                .map_err(|e| self.idp_unavailable(&p.idp.display_name, &e))?;
            let pending = PendingRequest {
                idp: p.idp.id.to_string(),
                request_id,
                binding: binding.clone(),
                return_to,
            };
            self.store
                .save_flow(&relay, &pending)
                .await
                .map_err(|_| SignInError::StoreUnavailable)?;
            return Ok(LoginRedirect { url, binding });
        }
        let Some(provider) = self.oidc.iter().find(|p| p.idp.id.as_str() == idp) else {
            return Err(SignInError::UnknownIdp);
        };
        let state = random_token();
        let nonce = random_token();
        let started = provider
            .start(&state, &nonce)
            .map_err(|e| self.idp_unavailable(&provider.idp.display_name, &e))?;
        let pending = PendingOidcLogin {
            idp: provider.idp.id.to_string(),
            nonce,
            pkce_verifier: started.pkce_verifier,
            binding: binding.clone(),
            return_to,
        };
        self.store
            .save_flow(&state, &pending)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        Ok(LoginRedirect {
            url: started.authorize_url,
            binding,
        })
    }

    fn idp_unavailable(&self, display_name: &str, e: &dyn std::fmt::Display) -> SignInError {
        tracing::warn!(idp = display_name, error = %e, "sign-in started while the IdP is unavailable");
        SignInError::IdpUnavailable {
            idp_name: display_name.to_owned(),
        }
    }

    /// Audits a failed sign-in (a failed write is logged: nothing is granted anyway).
    fn sign_in_failed(&self, ctx: &RequestContext, idp: &str, e: SignInError) -> SignInError {
        self.audit_login_failure(
            ctx,
            Person {
                idp: idp.to_owned(),
                subject: String::new(),
            },
            &e.to_string(),
        );
        e
    }

    /// Finishes an OIDC login at its callback: the pending login is consumed, the browser
    /// binding and callback path checked, the code exchanged and the ID token verified,
    /// then the sign-in tail.
    pub async fn finish_oidc_login(
        &self,
        cb: &OidcCallback<'_>,
        binding_cookie: Option<&str>,
        previous_session: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Audited<SignedIn>, SignInError> {
        let Some(state) = cb.state.filter(|s| !s.is_empty() && s.len() <= 128) else {
            return Err(self.sign_in_failed(ctx, "", SignInError::MissingState));
        };
        let pending = self
            .store
            .consume_flow::<PendingOidcLogin>(state)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        let Some(pending) = pending else {
            return Err(self.sign_in_failed(ctx, "", SignInError::UnknownState));
        };
        let idp = pending.idp.as_str();
        let fail = |e| self.sign_in_failed(ctx, idp, e);
        if !tokens_match(binding_cookie.unwrap_or_default(), &pending.binding) {
            return Err(fail(SignInError::BindingMismatch));
        }
        let Some(provider) = self.oidc.iter().find(|p| p.idp.id.as_str() == idp) else {
            return Err(fail(SignInError::IdpGone));
        };
        if cb.path != provider.redirect_path() {
            return Err(fail(SignInError::WrongCallbackPath));
        }
        if let Some(error) = cb.error {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(fail(SignInError::IdpError {
                idp_name: provider.idp.display_name.clone(),
                code,
            }));
        }
        let Some(code) = cb.code else {
            return Err(fail(SignInError::MissingCode));
        };
        let (identity, upstream) = idp::finish_oidc_login(
            provider,
            code,
            &pending.pkce_verifier,
            &pending.nonce,
            cb.iss,
        )
        .await
        .map_err(|e| {
            self.metrics
                .oidc_rejections
                .get_or_create(&ReasonLabels {
                    idp: idp.to_owned(),
                    reason: e.kind().to_owned(),
                })
                .inc();
            if e.is_upstream_failure() || e.is_unavailable() {
                tracing::warn!(idp, reason = e.kind(), error = %e, "OIDC login failed at the IdP");
            } else {
                tracing::warn!(idp, reason = e.kind(), error = %e, "OIDC login rejected: verification failed");
            }
            fail(SignInError::Oidc(e))
        })?;
        let session = self
            .complete_sign_in(identity, upstream, previous_session, ctx)
            .await?;
        Ok(session.map(|session| SignedIn {
            session,
            return_to: pending.return_to,
        }))
    }

    /// The SAML assertion consumer: the pending request is consumed by its RelayState
    /// (the IdP must be the one it was sent to), the response verified (see `idp::saml`),
    /// its assertion and response ids recorded in the replay cache, and the identity
    /// saved for the finish step. Returns the hand-off key.
    pub async fn saml_acs(
        &self,
        idp: &str,
        saml_response: Option<&str>,
        relay_state: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<String, SignInError> {
        let Some(p) = self.saml.iter().find(|p| p.idp.id.as_str() == idp) else {
            return Err(SignInError::UnknownIdp);
        };
        let fail = |e: SamlError| self.saml_rejected(ctx, idp, e);
        let Some(response) = saml_response else {
            return Err(fail(SamlError::Unreadable("no SAMLResponse".into())));
        };
        if response.len() > crate::idp::saml::MAX_RESPONSE_B64 {
            return Err(fail(SamlError::TooLarge));
        }
        // RelayState is only an opaque key into server-side state, never a URL.
        let pending = match relay_state.filter(|r| !r.is_empty()) {
            None => None,
            Some(r)
                if r.len() > 80
                    || !r
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                return Err(fail(SamlError::BadRelayState));
            }
            Some(r) => match self.store.consume_flow::<PendingRequest>(r).await {
                Err(_) => return Err(fail(SamlError::StoreUnavailable)),
                Ok(None) => return Err(fail(SamlError::UnknownRequest)),
                // A response for IdP A posted to IdP B's ACS is refused.
                Ok(Some(pending)) if pending.idp != idp => {
                    return Err(fail(SamlError::UnknownRequest));
                }
                Ok(Some(pending)) => Some(pending),
            },
        };
        let now = chrono::Utc::now();
        let (assertion, shape) = p
            .verify(response, pending.as_ref(), now)
            .await
            .map_err(fail)?;
        // Replay cache: the first use of an assertion (and response) id wins, until it expires.
        let ttl = p.replay_ttl(&assertion, now);
        let mut ids = vec![format!("{idp}:a:{}", assertion.id)];
        if let Some(rid) = &shape.response_id {
            ids.push(format!("{idp}:r:{rid}"));
        }
        for id in ids {
            match self.store.first_use("saml:seen", &id, ttl).await {
                Ok(FirstUse::First) => {}
                Ok(FirstUse::Replay) => return Err(fail(SamlError::Replay)),
                Err(_) => return Err(fail(SamlError::StoreUnavailable)),
            }
        }
        let identity = p.identity(&assertion).map_err(fail)?;
        let (binding, return_to) = match pending {
            Some(p) => (Some(p.binding), p.return_to),
            None => (None, None),
        };
        let handoff = SamlHandoff {
            identity: IdentityRecord::from_identity(&identity),
            binding,
            return_to,
        };
        let key = random_token();
        self.store
            .save_flow(&key, &handoff)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        Ok(key)
    }

    /// A SAML response refused before it reached the core (the HTTP layer's body limit):
    /// audited and counted like any other refusal. Unknown IdPs are ignored (the path is
    /// the client's, and must not create metric labels).
    pub fn saml_body_too_large(&self, idp: &str, ctx: &RequestContext) {
        if self.is_saml_idp(idp) {
            let _ = self.saml_rejected(ctx, idp, SamlError::TooLarge);
        }
    }

    fn saml_rejected(&self, ctx: &RequestContext, idp: &str, e: SamlError) -> SignInError {
        self.metrics
            .saml_rejections
            .get_or_create(&ReasonLabels {
                idp: idp.to_owned(),
                reason: e.reason().to_owned(),
            })
            .inc();
        tracing::warn!(idp, reason = e.reason(), error = %e, "SAML response rejected");
        self.sign_in_failed(ctx, idp, SignInError::Saml(e))
    }

    /// The SAML finish step (a same-site GET): consumes the hand-off, checks the browser
    /// binding, then the sign-in tail.
    pub async fn finish_saml_login(
        &self,
        idp: &str,
        handoff_key: Option<&str>,
        binding_cookie: Option<&str>,
        previous_session: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Audited<SignedIn>, SignInError> {
        if !self.is_saml_idp(idp) {
            return Err(SignInError::UnknownIdp);
        }
        let Some(key) = handoff_key.filter(|k| is_token_shaped(k)) else {
            return Err(SignInError::UnknownState);
        };
        let handoff = self
            .store
            .consume_flow::<SamlHandoff>(key)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?
            .ok_or(SignInError::UnknownState)?;
        let identity = handoff
            .identity
            .into_identity()
            .map_err(|_| SignInError::StoreUnavailable)?;
        if identity.claims().idp.as_str() != idp {
            return Err(SignInError::UnknownState);
        }
        if let Some(binding) = &handoff.binding
            && !tokens_match(binding_cookie.unwrap_or_default(), binding)
        {
            self.audit_login_failure(
                ctx,
                super::session::person_of(&identity),
                "saml: browser binding mismatch",
            );
            return Err(SignInError::BindingMismatch);
        }
        let session = self
            .complete_sign_in(identity, None, previous_session, ctx)
            .await?;
        Ok(session.map(|session| SignedIn {
            session,
            return_to: handoff.return_to,
        }))
    }
}
