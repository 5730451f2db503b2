//! Token exchange (RFC 8693) for mobile and single-page apps: the app signs the person in
//! at the company IdP itself and exchanges the IdP's token here for AWS credentials of a
//! role the rules grant (or for a broker access token to use with the JSON API).
//!
//! Order of checks, each refusal audited and counted, none reaching STS: the app is
//! registered (and authenticated when confidential); its DPoP proof when required; the
//! app's rate limit; the subject token type is one the app may present; the subject token
//! verifies (`idp::subject`); the person's rate limit; the token's replay limit; then the
//! target role through the access core (rules evaluated now; a role the rules do not grant
//! is `invalid_target`, naming none of the person's roles).

use std::time::Duration;

use serde_json::json;

use super::dpop::DpopProof;
use super::{Approval, OAuthError, token_hash};
use crate::access::issuer::IssueFailure;
use crate::access::session::{IdentityRecord, tokens_match};
use crate::access::{Access, ClientPath, IssuedCredentials, RequestContext};
use crate::idp::subject::{SubjectKind, verify_subject_token};
use crate::metrics::AppLabels;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// rolegate's token type for AWS credentials (the response carries `aws_credentials`).
pub const AWS_CREDENTIALS: &str = "urn:rolegate:params:oauth:token-type:aws-credentials";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The exchange request's parameters.
pub struct ExchangeRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
    pub subject_token: &'a str,
    pub subject_token_type: &'a str,
    pub requested_token_type: Option<&'a str>,
    /// `audience` or `resource`: the role (id or ARN).
    pub target: Option<&'a str>,
    pub dpop: Option<DpopProof<'a>>,
}

/// What an exchange yields.
pub enum Exchanged {
    Credentials {
        issued: IssuedCredentials,
        role: String,
        expires_in: u64,
    },
    AccessToken {
        token: String,
        expires_in: u64,
        /// `DPoP` when bound to the proof's key, else `Bearer`.
        token_type: &'static str,
    },
}

fn minute_window() -> u64 {
    crate::access::session::now_unix() / 60
}

impl Access {
    /// The token-exchange grant. See the module doc for the order of checks.
    pub async fn exchange_token(
        &self,
        r: ExchangeRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<Exchanged, OAuthError> {
        let app_id: String = r.client_id.chars().take(64).collect();
        let result = self.exchange_inner(&r, ctx).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.code,
        };
        let known_app = self.config.app(&app_id).is_some();
        self.metrics
            .token_exchanges
            .get_or_create(&AppLabels {
                // Unregistered ids come from the request: no label value for them.
                app: if known_app {
                    app_id.clone()
                } else {
                    "unknown".into()
                },
                outcome: outcome.into(),
            })
            .inc();
        if let Err(e) = &result {
            tracing::warn!(app = %app_id, error = %e, "token exchange refused");
            let idp = self
                .config
                .app(&app_id)
                .map(|a| a.idp.to_string())
                .unwrap_or_default();
            let record = json!({
                "event": "token_exchange",
                "client_path": ClientPath::Mobile.as_str(),
                "app": app_id,
                "idp": idp,
                "outcome": "refused",
                "reason": format!("{}: {}", e.code, e.description),
            });
            if let Err(err) = self.audit.record(ctx, record) {
                tracing::error!(error = %err, "audit write failed for a refused exchange");
            }
        }
        result
    }

    async fn exchange_inner(
        &self,
        r: &ExchangeRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<Exchanged, OAuthError> {
        let app = self
            .config
            .app(r.client_id)
            .ok_or_else(|| OAuthError::invalid_client("not an app registered for token exchange"))?
            .clone();
        match (&app.client_secret, r.client_secret) {
            (Some(secret), Some(given)) => {
                use secrecy::ExposeSecret;
                if !tokens_match(secret.expose_secret(), given) {
                    return Err(OAuthError::invalid_client("the client secret is wrong"));
                }
            }
            (Some(_), None) => {
                return Err(OAuthError::invalid_client("the client secret is missing"));
            }
            (None, _) => {}
        }
        let jkt = match &r.dpop {
            Some(proof) => Some(self.verify_dpop(proof, None).await?),
            None if app.dpop_required => {
                return Err(OAuthError::new(
                    "invalid_dpop_proof",
                    "this app must send a DPoP proof",
                ));
            }
            None => None,
        };
        let window = minute_window();
        let app_count = self
            .store
            .incr(
                &format!("ratelimit:app:{}:{window}", app.id),
                Duration::from_secs(61),
            )
            .await?;
        if app_count > app.rate_limit_per_minute {
            return Err(OAuthError::rate_limited(
                "this app",
                60 - crate::access::session::now_unix() % 60,
            ));
        }
        let kind = match r.subject_token_type {
            ID_TOKEN if app.accept_id_tokens => SubjectKind::IdToken,
            ACCESS_TOKEN | JWT if app.accept_access_tokens => SubjectKind::AccessToken,
            ID_TOKEN | ACCESS_TOKEN | JWT => {
                return Err(OAuthError::invalid_request(format!(
                    "this app may not present subject tokens of type {}",
                    r.subject_token_type
                )));
            }
            _ => {
                return Err(OAuthError::invalid_request(
                    "subject_token_type must be …:id_token, …:access_token or …:jwt",
                ));
            }
        };
        let provider = self
            .oidc
            .iter()
            .find(|p| p.idp.id == app.idp)
            .ok_or_else(OAuthError::unavailable)?;
        let (identity, claims) = verify_subject_token(
            provider,
            r.subject_token,
            kind,
            &app.audience,
            app.max_token_age,
        )
        .await
        .map_err(|e| match e {
            crate::idp::subject::SubjectError::Unavailable => OAuthError::unavailable(),
            other => OAuthError::invalid_grant(other.to_string()),
        })?;
        let subject = identity.claims().subject.clone();
        let subject_count = self
            .store
            .incr(
                &format!(
                    "ratelimit:subject:{}:{}:{window}",
                    app.id,
                    token_hash(&subject)
                ),
                Duration::from_secs(61),
            )
            .await?;
        if subject_count > app.subject_rate_limit_per_minute {
            return Err(OAuthError::rate_limited(
                "this person",
                60 - crate::access::session::now_unix() % 60,
            ));
        }
        // Replay limit: per jti (or the token's hash), until the token expires.
        let now = crate::access::session::now_unix();
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(now);
        let id = claims
            .get("jti")
            .and_then(serde_json::Value::as_str)
            .map(|j| format!("jti:{}", token_hash(j)))
            .unwrap_or_else(|| format!("tok:{}", token_hash(r.subject_token)));
        let uses = self
            .store
            .incr(
                &format!("exchange:used:{}:{id}", app.id),
                Duration::from_secs(exp.saturating_sub(now) + 60),
            )
            .await?;
        if uses > app.max_exchanges_per_token {
            return Err(OAuthError::invalid_grant(format!(
                "this subject token was already exchanged (at most {} time(s))",
                app.max_exchanges_per_token
            )));
        }

        match r.requested_token_type.unwrap_or(AWS_CREDENTIALS) {
            AWS_CREDENTIALS => {
                let role = self.exchange_target(&identity, r.target)?;
                let issued = self
                    .issue_credentials(&identity, &role, None, ClientPath::Mobile, ctx)
                    .await
                    .map_err(|e| match e {
                        IssueFailure::Refused(_) => OAuthError::new(
                            "invalid_target",
                            "the requested role is not available to this person",
                        ),
                        IssueFailure::AuditUnavailable => OAuthError::unavailable(),
                        other => OAuthError::new("temporarily_unavailable", other.to_string()),
                    })?;
                let expires_in = issued
                    .credentials
                    .expiration
                    .duration_since(std::time::SystemTime::now())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(Exchanged::Credentials {
                    issued,
                    role,
                    expires_in,
                })
            }
            ACCESS_TOKEN => {
                let approval = Approval {
                    identity: IdentityRecord::from_identity(&identity),
                    client_id: app.id.clone(),
                    device_name: format!("app {}", app.id),
                };
                let bound = jkt.is_some();
                let (token, expires_in) = self
                    .issue_app_access_token(approval, app.access_token_lifetime, jkt)
                    .await?;
                let _ = self.audit.record(
                    ctx,
                    json!({
                        "event": "token_exchange", "client_path": ClientPath::Mobile.as_str(),
                        "app": app.id, "idp": app.idp.as_str(), "subject": subject,
                        "outcome": "success", "issued_token_type": ACCESS_TOKEN, "dpop_bound": bound,
                    }),
                );
                Ok(Exchanged::AccessToken {
                    token,
                    expires_in,
                    token_type: if bound { "DPoP" } else { "Bearer" },
                })
            }
            other => Err(OAuthError::invalid_request(format!(
                "requested_token_type {other:?} is not supported (use {AWS_CREDENTIALS} or {ACCESS_TOKEN})"
            ))),
        }
    }

    /// The role an exchange is for: named by `audience`/`resource` (id or ARN), or the
    /// only role the rules grant. Never lists the person's roles in an error.
    fn exchange_target(
        &self,
        identity: &crate::idp::VerifiedIdentity,
        target: Option<&str>,
    ) -> Result<String, OAuthError> {
        let unavailable = || {
            OAuthError::new(
                "invalid_target",
                "the requested role is not available to this person",
            )
        };
        match target {
            Some(t) if t.starts_with("arn:") => self
                .config
                .roles
                .iter()
                .find(|r| r.arn.as_str() == t)
                .map(|r| r.id.to_string())
                .ok_or_else(unavailable),
            Some(t) => Ok(t.to_owned()),
            None => {
                let menu = self.role_menu(identity);
                let mut roles = menu.roles();
                match (roles.next(), roles.next()) {
                    (Some((_, only)), None) => Ok(only.id.to_string()),
                    _ => Err(OAuthError::new(
                        "invalid_target",
                        "name the role with audience (its id or ARN)",
                    )),
                }
            }
        }
    }
}
