//! The token endpoint's one dispatch: which grant a request is, its parameters checked
//! once, and the grant's use case called. `/oauth/token` (form) and the SSO OIDC API's
//! `CreateToken` (JSON, camelCase) both translate their request into [`OAuthParams`] and
//! call [`Access::token_grant`], so the two cannot drift.
//!
//! Parameters are read per RFC 6749 §3.2: each at most once. A request that cannot even
//! be read (a repeated parameter, another content type, a body too large) is refused with
//! [`Access::refuse_request`], which audits it.

use std::collections::BTreeMap;

use super::dpop::DpopProof;
use super::exchange::{ExchangeRequest, Exchanged, GRANT_TYPE as EXCHANGE};
use super::{OAuthError, TokenResponse};
use crate::access::{Access, Audited, RequestContext};
use crate::audit::{Event, Outcome};

pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Which endpoint a grant arrived at: the SSO OIDC API has no token exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    OAuth,
    SsoOidc,
}

/// The parameters of an OAuth request, each given at most once.
#[derive(Debug, Default)]
pub struct OAuthParams(BTreeMap<String, String>);

impl OAuthParams {
    /// Reads form pairs; a parameter given twice is `invalid_request` (RFC 6749 §3.2).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.contains_key(&k) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {:?} is given more than once",
                    k.chars().take(40).collect::<String>()
                )));
            }
            map.insert(k, v);
        }
        Ok(Self(map))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn require(&self, k: &str) -> Result<&str, OAuthError> {
        self.get(k)
            .ok_or_else(|| OAuthError::invalid_request(format!("{k} is missing")))
    }
}

/// What a grant yields.
pub enum Granted {
    Tokens(TokenResponse),
    Exchanged(Exchanged),
}

impl Access {
    /// A token request: the grant named by `grant_type`, with its parameters.
    pub async fn token_grant(
        &self,
        endpoint: TokenEndpoint,
        params: &OAuthParams,
        dpop: DpopProof<'_>,
        ctx: &RequestContext,
    ) -> Result<Audited<Granted>, OAuthError> {
        let grant_type = params.require("grant_type")?;
        if grant_type == EXCHANGE && endpoint == TokenEndpoint::OAuth {
            let (Some(client_id), Some(token), Some(kind)) = (
                params.get("client_id"),
                params.get("subject_token"),
                params.get("subject_token_type"),
            ) else {
                return Err(OAuthError::invalid_request(
                    "client_id, subject_token and subject_token_type are required",
                ));
            };
            let request = ExchangeRequest {
                client_id,
                client_secret: params.get("client_secret"),
                subject_token: token,
                subject_token_type: kind,
                requested_token_type: params.get("requested_token_type"),
                target: params.get("audience").or(params.get("resource")),
                dpop: (!dpop.headers.is_empty()).then_some(dpop),
            };
            let done = self.exchange_token(request, ctx).await?;
            return Ok(done.map(Granted::Exchanged));
        }
        let client_id = params.require("client_id")?;
        self.check_client(client_id, params.get("client_secret"))
            .await?;
        let tokens = match grant_type {
            "authorization_code" => {
                self.exchange_code(
                    params.require("code")?,
                    client_id,
                    params.require("redirect_uri")?,
                    params.require("code_verifier")?,
                    ctx,
                )
                .await?
            }
            DEVICE_CODE => {
                self.poll_device(params.require("device_code")?, client_id, ctx)
                    .await?
            }
            "refresh_token" => {
                self.refresh(params.require("refresh_token")?, client_id, ctx)
                    .await?
            }
            _ => {
                return Err(OAuthError::new(
                    "unsupported_grant_type",
                    match endpoint {
                        TokenEndpoint::OAuth => format!(
                            "grant_type must be authorization_code, {DEVICE_CODE}, refresh_token or {EXCHANGE}"
                        ),
                        TokenEndpoint::SsoOidc => format!(
                            "grantType must be authorization_code, {DEVICE_CODE} or refresh_token"
                        ),
                    },
                ));
            }
        };
        Ok(tokens.map(Granted::Tokens))
    }

    /// A request to an OAuth endpoint that could not be read at all: audited as a
    /// refusal, answered `invalid_request`.
    pub fn refuse_request(&self, endpoint: &str, reason: &str, ctx: &RequestContext) -> OAuthError {
        let endpoint: String = endpoint.chars().take(64).collect();
        tracing::info!(%endpoint, reason, "OAuth request refused: unreadable");
        let event = Event::OauthRequestRefused {
            endpoint,
            outcome: Outcome::Refused,
            reason: reason.to_owned(),
        };
        if let Err(e) = self.record(ctx, &event) {
            tracing::error!(error = %e, "audit write failed for a refused request");
        }
        OAuthError::invalid_request(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        let e = OAuthParams::from_pairs(pairs(&[("grant_type", "a"), ("grant_type", "b")]))
            .unwrap_err();
        assert_eq!(e.code, "invalid_request");
        assert!(e.description.contains("grant_type"));
        let ok = OAuthParams::from_pairs(pairs(&[("grant_type", "a"), ("code", "")])).unwrap();
        assert_eq!(ok.get("grant_type"), Some("a"));
        assert_eq!(ok.get("code"), None, "an empty value is a missing one");
    }
}
