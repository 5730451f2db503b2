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

use super::dpop::DpopProof;
use super::{Approval, OAuthError};
use crate::access::issuer::IssueFailure;
use crate::access::session::{IdentityRecord, person_of, tokens_match};
use crate::access::{Access, Audited, IssuedCredentials, RequestContext};
use crate::audit::{Event, Outcome, Person};
use crate::idp::subject::{SubjectError, SubjectKind, verify_subject_token};
use crate::metrics::AppLabels;
use crate::store::{Allowance, Window};

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

fn per_minute<'a>(name: &'static str, subject: &'a str, limit: u64) -> Window<'a> {
    Window {
        name,
        subject,
        limit,
        period: Duration::from_secs(60),
    }
}

/// The replay-cache namespace of subject tokens.
const EXCHANGED: &str = "exchange:used";

impl Access {
    /// The token-exchange grant. See the module doc for the order of checks.
    pub(in crate::access) async fn exchange_token(
        &self,
        r: ExchangeRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<Audited<Exchanged>, OAuthError> {
        let app_id: String = r.client_id.chars().take(64).collect();
        let result = self.exchange_inner(&r, ctx).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err((e, _)) => e.code,
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
        result.map_err(|(e, person)| {
            tracing::warn!(app = %app_id, error = %e, "token exchange refused");
            let idp = self
                .config
                .app(&app_id)
                .map(|a| a.idp.to_string())
                .unwrap_or_default();
            let event = Event::TokenExchange {
                person: person.unwrap_or(Person {
                    idp,
                    subject: String::new(),
                }),
                client: crate::access::Requester {
                    path: crate::access::ClientPath::Mobile,
                    client_id: Some(app_id.clone()),
                    app: Some(app_id.clone()),
                }
                .audit(),
                outcome: Outcome::Refused,
                reason: format!("{}: {}", e.code, e.description),
                issued_token_type: None,
                dpop_bound: None,
            };
            if let Err(err) = self.record(ctx, &event) {
                tracing::error!(error = %err, "audit write failed for a refused exchange");
            }
            e
        })
    }

    async fn exchange_inner(
        &self,
        r: &ExchangeRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<Audited<Exchanged>, (OAuthError, Option<Person>)> {
        let anonymous = |e: OAuthError| (e, None);
        let app = self
            .config
            .app(r.client_id)
            .ok_or_else(|| OAuthError::invalid_client("not an app registered for token exchange"))
            .map_err(anonymous)?
            .clone();
        match (&app.client_secret, r.client_secret) {
            (Some(secret), Some(given)) => {
                use secrecy::ExposeSecret;
                if !tokens_match(secret.expose_secret(), given) {
                    return Err(anonymous(OAuthError::invalid_client(
                        "the client secret is wrong",
                    )));
                }
            }
            (Some(_), None) => {
                return Err(anonymous(OAuthError::invalid_client(
                    "the client secret is missing",
                )));
            }
            (None, _) => {}
        }
        let jkt = match &r.dpop {
            Some(proof) => Some(self.verify_dpop(proof, None).await.map_err(anonymous)?),
            None if app.dpop_required => {
                return Err(anonymous(OAuthError::new(
                    "invalid_dpop_proof",
                    "this app must send a DPoP proof",
                )));
            }
            None => None,
        };
        let limit = per_minute("app", &app.id, app.rate_limit_per_minute);
        if let Allowance::Exceeded { retry_after } = self
            .store
            .hit(&limit)
            .await
            .map_err(|e| anonymous(e.into()))?
        {
            return Err(anonymous(OAuthError::rate_limited("this app", retry_after)));
        }
        let kind = match r.subject_token_type {
            ID_TOKEN if app.accept_id_tokens => SubjectKind::IdToken,
            ACCESS_TOKEN | JWT if app.accept_access_tokens => SubjectKind::AccessToken,
            ID_TOKEN | ACCESS_TOKEN | JWT => {
                return Err(anonymous(OAuthError::invalid_request(format!(
                    "this app may not present subject tokens of type {}",
                    r.subject_token_type
                ))));
            }
            _ => {
                return Err(anonymous(OAuthError::invalid_request(
                    "subject_token_type must be …:id_token, …:access_token or …:jwt",
                )));
            }
        };
        let idp_unavailable = || {
            OAuthError::new(
                "temporarily_unavailable",
                format!(
                    "the identity provider {} cannot be reached right now; try again in a minute",
                    app.idp
                ),
            )
        };
        let provider = self
            .oidc
            .iter()
            .find(|p| p.idp.id == app.idp)
            .ok_or_else(idp_unavailable)
            .map_err(anonymous)?;
        let (identity, claims) = verify_subject_token(
            provider,
            r.subject_token,
            kind,
            &app.audience,
            app.max_token_age,
        )
        .await
        .map_err(|e| {
            anonymous(match e {
                SubjectError::Unavailable => idp_unavailable(),
                // RFC 8693 §2.2.2: an invalid subject token is `invalid_request`.
                other => OAuthError::invalid_request(other.to_string()),
            })
        })?;
        let person = person_of(&identity);
        let with_person = |e: OAuthError| (e, Some(person.clone()));
        // A subject token issued before the person's access was revoked is refused (a
        // fresh sign-in at the IdP gives a new one).
        let tag = crate::access::session::tag_of(&identity);
        if let Some(revoked) = self
            .revoked_since(&tag)
            .await
            .map_err(|e| with_person(e.into()))?
        {
            let iat = claims
                .get("iat")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if iat <= revoked {
                return Err(with_person(OAuthError::new(
                    "access_denied",
                    "this person's access was revoked after the subject token was issued; sign in again",
                )));
            }
        }
        let identity = match self.admit(identity).await {
            Ok(p) => p,
            Err(crate::access::locks::AdmitError::Store(e)) => return Err(with_person(e.into())),
            Err(crate::access::locks::AdmitError::Locked(l)) => {
                self.audit_locked(person.clone(), "exchange", &l, ctx);
                return Err(with_person(OAuthError::new("access_denied", l.to_string())));
            }
        };
        let who = format!("{}\n{}\n{}", app.id, person.idp, person.subject);
        let limit = per_minute("subject", &who, app.subject_rate_limit_per_minute);
        if let Allowance::Exceeded { retry_after } = self
            .store
            .hit(&limit)
            .await
            .map_err(|e| with_person(e.into()))?
        {
            return Err(with_person(OAuthError::rate_limited(
                "this person",
                retry_after,
            )));
        }
        // The replay allowance: per jti (or the token's hash), until the token expires.
        // It is counted only once the request could issue something, and given back if
        // nothing was issued.
        let now = crate::store::now_unix();
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(now);
        let use_id = match claims.get("jti").and_then(serde_json::Value::as_str) {
            Some(jti) => format!("{}\njti\n{jti}", app.id),
            None => format!("{}\ntok\n{}", app.id, r.subject_token),
        };
        let use_ttl = Duration::from_secs(exp.saturating_sub(now) + 60);
        let count_use = || async {
            let uses = self
                .store
                .count_use(EXCHANGED, &use_id, use_ttl)
                .await
                .map_err(|e| with_person(e.into()))?;
            if uses > app.max_exchanges_per_token {
                return Err(with_person(OAuthError::invalid_grant(format!(
                    "this subject token was already exchanged (at most {} time(s))",
                    app.max_exchanges_per_token
                ))));
            }
            Ok(())
        };
        let refund = || async {
            if let Err(e) = self.store.refund_use(EXCHANGED, &use_id).await {
                tracing::warn!(error = %e, "could not give back an exchange's replay allowance");
            }
        };
        let requester = self.requester_for(&app.id);
        match r.requested_token_type.unwrap_or(AWS_CREDENTIALS) {
            AWS_CREDENTIALS => {
                let role = self
                    .exchange_target(&identity, r.target)
                    .map_err(with_person)?;
                count_use().await?;
                let issued = match self
                    .issue_credentials(&identity, &role, None, &requester, ctx)
                    .await
                {
                    Ok(issued) => issued,
                    Err(e) => {
                        refund().await;
                        return Err(with_person(match e {
                            IssueFailure::Refused(_) => OAuthError::new(
                                "invalid_target",
                                "the requested role is not available to this person",
                            ),
                            IssueFailure::AuditUnavailable | IssueFailure::StoreUnavailable => {
                                OAuthError::unavailable()
                            }
                            other => OAuthError::new("temporarily_unavailable", other.to_string()),
                        }));
                    }
                };
                Ok(issued.map(|issued| {
                    let expires_in = issued
                        .credentials
                        .expiration
                        .duration_since(std::time::SystemTime::now())
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    Exchanged::Credentials {
                        issued,
                        role,
                        expires_in,
                    }
                }))
            }
            ACCESS_TOKEN => {
                count_use().await?;
                let approval = Approval {
                    identity: IdentityRecord::from_identity(identity.identity()),
                    client_id: app.id.clone(),
                    device_name: format!("app {}", app.id),
                    approved_at: crate::store::now_unix(),
                };
                let bound = jkt.is_some();
                let (token, expires_in) = match self
                    .store_app_access_token(approval, app.access_token_lifetime, jkt, ctx)
                    .await
                {
                    Ok(t) => t,
                    Err(e) => {
                        refund().await;
                        return Err(with_person(e));
                    }
                };
                let event = Event::TokenExchange {
                    person: person.clone(),
                    client: requester.audit(),
                    outcome: Outcome::Success,
                    reason: String::new(),
                    issued_token_type: Some(ACCESS_TOKEN),
                    dpop_bound: Some(bound),
                };
                self.release(
                    ctx,
                    &event,
                    Exchanged::AccessToken {
                        token,
                        expires_in,
                        token_type: if bound { "DPoP" } else { "Bearer" },
                    },
                )
                .map_err(|e| with_person(e.into()))
            }
            other => Err(with_person(OAuthError::invalid_request(format!(
                "requested_token_type {:?} is not supported (use {AWS_CREDENTIALS} or {ACCESS_TOKEN})",
                other.chars().take(100).collect::<String>()
            )))),
        }
    }

    /// The role an exchange is for: named by `audience`/`resource` (id or ARN), or the
    /// only role the rules grant. Never lists the person's roles in an error.
    fn exchange_target(
        &self,
        identity: &crate::access::Principal,
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
