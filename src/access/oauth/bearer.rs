//! A presented access token, turned back into the identity it was issued for: the one
//! entry for every API that takes a broker token (the JSON API with `Authorization:
//! Bearer`/`DPoP`, the SSO portal with `x-amz-sso_bearer_token`).
//!
//! The binding rule is here, once (RFC 9449 §7): a token bound to a DPoP key is good only
//! with `Authorization: DPoP` and a valid proof of that key for this request naming this
//! token (`ath`); so it is refused wherever a proof cannot be sent (the SSO portal). An
//! unbound token is good only as `Bearer`. Then the per-person request limit.

use std::time::Duration;

use super::OAuthError;
use super::dpop::DpopProof;
use super::tokens::BearerGrant;
use crate::access::Access;
use crate::store::{Allowance, Window};

/// How the token arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCarrier {
    /// `Authorization: Bearer …` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP …` (RFC 9449).
    Dpop,
    /// The SSO portal's `x-amz-sso_bearer_token` header (no proof possible).
    SsoHeader,
}

/// A token as a request presents it, with the request's DPoP headers.
pub struct PresentedToken<'a> {
    pub carrier: TokenCarrier,
    /// Empty when the request sent none.
    pub token: &'a str,
    pub dpop: DpopProof<'a>,
}

/// Why a presented token was not accepted; `web` turns each into a 401 with the right
/// challenge (RFC 6750 §3, RFC 9449 §7.1), a 429 or a 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No token at all: a challenge without an `error` (RFC 6750 §3.1).
    Missing,
    /// The token is not valid (unknown, expired, revoked, or sent the wrong way).
    /// `dpop`: answer with a `DPoP` challenge (the token is DPoP-bound, or was sent so).
    Invalid { description: String, dpop: bool },
    /// The DPoP proof is missing or wrong for a bound token.
    InvalidProof(String),
    /// Too many requests for this person this minute.
    RateLimited {
        description: String,
        retry_after: u64,
    },
    /// Access is locked (see `locks`).
    Locked(String),
    /// The store cannot be reached: nobody gets in.
    Unavailable,
}

impl From<OAuthError> for BearerError {
    fn from(e: OAuthError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable
        } else {
            Self::InvalidProof(e.description)
        }
    }
}

impl Access {
    /// The identity behind a presented token, if the token is valid, unexpired, its
    /// login has not ended, and it was presented as its binding requires.
    pub async fn authenticate(
        &self,
        p: &PresentedToken<'_>,
        ctx: &crate::access::RequestContext,
    ) -> Result<BearerGrant, BearerError> {
        if p.token.is_empty() {
            return Err(BearerError::Missing);
        }
        let invalid = |description: &str, dpop: bool| BearerError::Invalid {
            description: description.to_owned(),
            dpop,
        };
        let found = self.access_token(p.token).await.map_err(|e| {
            if e.is_unavailable() {
                BearerError::Unavailable
            } else {
                invalid(&e.description, false)
            }
        })?;
        let Some((_, _, family, jkt)) = found else {
            return Err(invalid(
                "the access token is invalid, expired or revoked; refresh it or run `rolegate login`",
                p.carrier == TokenCarrier::Dpop,
            ));
        };
        match (&jkt, p.carrier) {
            (Some(bound), TokenCarrier::Dpop) => {
                let proved = self.verify_dpop(&p.dpop, Some(p.token)).await?;
                if &proved != bound {
                    return Err(BearerError::InvalidProof(
                        "the DPoP proof is signed by another key than the token is bound to".into(),
                    ));
                }
            }
            (Some(_), _) => {
                return Err(invalid(
                    "this token is DPoP-bound: send it as Authorization: DPoP with a proof",
                    true,
                ));
            }
            (None, TokenCarrier::Dpop) => {
                return Err(invalid(
                    "this token is not DPoP-bound: send it as Authorization: Bearer",
                    true,
                ));
            }
            (None, _) => {}
        }
        let identity = family
            .approval
            .identity
            .clone()
            .into_identity()
            .map_err(|_| BearerError::Unavailable)?;
        let identity = match self.admit(identity).await {
            Ok(p) => p,
            Err(crate::access::locks::AdmitError::Store(_)) => {
                return Err(BearerError::Unavailable);
            }
            Err(crate::access::locks::AdmitError::Locked(l)) => {
                self.audit_locked(family.approval.identity.person(), "api", &l, ctx);
                return Err(BearerError::Locked(l.to_string()));
            }
        };
        // Per person (all their logins), per minute: a cap for a stolen token in a loop
        // or a runaway script, far above what tools refreshing credentials need.
        let c = identity.claims();
        let person = format!("{}\n{}", c.idp, c.subject);
        let limit = self.config.cli.requests_per_minute;
        let window = Window {
            name: "bearer",
            subject: &person,
            limit,
            period: Duration::from_secs(60),
        };
        match self.store.hit(&window).await {
            Err(_) => return Err(BearerError::Unavailable),
            Ok(Allowance::Exceeded { retry_after }) => {
                return Err(BearerError::RateLimited {
                    description: format!(
                        "more than {limit} requests this minute for this person; try again in {retry_after} s"
                    ),
                    retry_after,
                });
            }
            Ok(Allowance::Allowed) => {}
        }
        let requester = self.requester_for(&family.approval.client_id);
        Ok(BearerGrant {
            identity,
            client_id: family.approval.client_id,
            device_name: family.approval.device_name,
            session_expires: family.expires,
            jkt,
            requester,
        })
    }
}
