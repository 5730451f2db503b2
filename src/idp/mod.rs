//! Identity providers: turning what an IdP says about a person into the claims the
//! mapping engine reads.
//!
//! **Invariant:** the protocol modules (OIDC, SAML) are the only code that builds an
//! identity from a real login or a presented token, and only after full verification
//! (signature with configured keys, issuer, audience, time, nonce or InResponseTo).
//! Single use of login state and the SAML replay cache are the access core's part. This module holds the
//! part every protocol shares: picking the subject, user name, e-mail and groups out of a
//! claim set according to the IdP's config. `rolegate explain` uses the same function on
//! a claims file, so "what if" answers match what a real login would get.

pub mod oidc;
pub mod saml;
pub mod subject;

use serde_json::Value as Json;

use crate::config::IdpConfig;
use crate::domain::GroupName;
use crate::mapping::{ClaimPath, IdentityClaims};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the claims must be a JSON object")]
    NotAnObject,
    #[error("claim \"sub\" is missing or not a non-empty string")]
    MissingSubject,
    #[error("claim {0:?} (which names the user) is missing or not a string")]
    MissingUsername(String),
    #[error("groups claim {claim:?} is not a string or an array of strings")]
    BadGroupsClaim { claim: String },
    #[error("groups claim {claim:?} holds an unusable group name: {reason}")]
    BadGroupName { claim: String, reason: String },
}

/// Extracts the mapping input from a claim set, as configured for `idp`.
///
/// The subject is `sub` (for SAML, the NameID is put there verbatim). The user name
/// comes from `username_claim` (`"NameID"` and `"sub"` mean the subject). Groups come
/// from `groups_claim`: a string or an array of strings; absent means no groups.
pub fn identity_from_claims(
    idp: &IdpConfig,
    mut claims: Json,
) -> Result<IdentityClaims, ClaimsError> {
    let Some(map) = claims.as_object_mut() else {
        return Err(ClaimsError::NotAnObject);
    };
    // The ID token's single-use and timing claims were checked by the protocol module and
    // say nothing about the person: they are not kept, so rules and templates never see
    // them and every session record (renewed on each request) is that much smaller.
    for transport in TRANSPORT_CLAIMS {
        map.remove(*transport);
    }
    let subject = claims
        .get("sub")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(ClaimsError::MissingSubject)?
        .to_owned();
    let username = match idp.username_claim.as_str() {
        "sub" | "NameID" => subject.clone(),
        claim => lookup(&claims, claim)
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ClaimsError::MissingUsername(claim.to_owned()))?
            .to_owned(),
    };
    let email = claims
        .get("email")
        .and_then(Json::as_str)
        .map(str::to_owned);
    let groups = match lookup(&claims, &idp.groups_claim) {
        None => Vec::new(),
        Some(v) => {
            let names: Vec<&str> = match v {
                Json::String(s) => vec![s.as_str()],
                Json::Array(items) => items
                    .iter()
                    .map(|i| i.as_str())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| ClaimsError::BadGroupsClaim {
                        claim: idp.groups_claim.clone(),
                    })?,
                _ => {
                    return Err(ClaimsError::BadGroupsClaim {
                        claim: idp.groups_claim.clone(),
                    });
                }
            };
            let mut groups = names
                .into_iter()
                .map(|n| {
                    GroupName::parse(n).map_err(|e| ClaimsError::BadGroupName {
                        claim: idp.groups_claim.clone(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            groups.sort();
            groups.dedup();
            groups
        }
    };
    Ok(IdentityClaims {
        idp: idp.id.clone(),
        subject,
        username,
        email,
        groups,
        claims,
    })
}

/// Claims about one token, not about the person (OIDC Core §2, §3.1.3.6).
const TRANSPORT_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "iat", "exp", "nbf", "jti"];

fn lookup<'a>(claims: &'a Json, path: &str) -> Option<&'a Json> {
    ClaimPath::parse(path).ok()?.lookup(claims)
}

/// An identity that an IdP vouched for and rolegate verified. Only `idp` makes one from a
/// login or a presented token (`verified`); the access core re-creates one from its own
/// server-side records (`from_session`), which it writes only after such a verification.
/// No other code can build one, so a handler cannot put unverified claims in a session.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedIdentity(IdentityClaims);

impl VerifiedIdentity {
    pub(crate) fn verified(claims: IdentityClaims) -> Self {
        Self(claims)
    }

    /// Re-creates an identity from rolegate's own server-side session record, which only
    /// rolegate writes, after a verified login.
    pub(crate) fn from_session(claims: IdentityClaims) -> Self {
        Self(claims)
    }

    pub fn claims(&self) -> &IdentityClaims {
        &self.0
    }

    /// The identity with its groups as the IdP's provisioned directory (SCIM) has them
    /// now: written by the IdP with its own credential, read by rolegate at the request.
    pub(crate) fn with_groups(mut self, groups: Vec<crate::domain::GroupName>) -> Self {
        self.0.groups = groups;
        self
    }
}

/// Verifies a finished OIDC login and builds the identity. The claim set comes from a
/// signature-checked ID token (and matching userinfo), see `oidc::OidcProvider::finish`.
/// The IdP's refresh token comes along when it issued one (for re-validation).
pub async fn finish_oidc_login(
    provider: &oidc::OidcProvider,
    code: &str,
    pkce_verifier: &str,
    nonce: &str,
    iss_param: Option<&str>,
) -> Result<(VerifiedIdentity, Option<secrecy::SecretString>), LoginError> {
    let (claims, refresh_token) = provider
        .finish(code, pkce_verifier, nonce, iss_param)
        .await?;
    let identity = identity_from_claims(&provider.idp, claims)?;
    Ok((
        VerifiedIdentity::verified(identity),
        refresh_token.map(secrecy::SecretString::from),
    ))
}

/// Asks the IdP who the person of `identity` is now, with the refresh token it issued:
/// the identity as the IdP states it today (the same subject), a new refresh token when it
/// rotated, or why not (see `oidc::RefreshError`).
pub async fn revalidate(
    provider: &oidc::OidcProvider,
    identity: &VerifiedIdentity,
    refresh_token: &secrecy::SecretString,
) -> Result<(VerifiedIdentity, Option<secrecy::SecretString>), oidc::RefreshError> {
    use secrecy::ExposeSecret;
    let (claims, rotated) = provider.refresh(refresh_token.expose_secret()).await?;
    let fresh = identity_from_claims(&provider.idp, claims)
        .map_err(|e| oidc::RefreshError::Unconfirmed(e.to_string()))?;
    if fresh.subject != identity.claims().subject {
        return Err(oidc::RefreshError::Unconfirmed(
            "the refreshed identity names another subject".into(),
        ));
    }
    Ok((
        VerifiedIdentity::verified(fresh),
        rotated.map(secrecy::SecretString::from),
    ))
}

/// Verifies an ID token that a client presents (token exchange: the app signed the
/// person in itself) as issued by this IdP to `audience`, and builds the identity. The
/// same checks as a login's ID token, without the nonce (see
/// `oidc::OidcProvider::verify_presented_id_token`).
pub async fn verify_id_token(
    provider: &oidc::OidcProvider,
    token: &str,
    audience: &str,
) -> Result<VerifiedIdentity, LoginError> {
    let claims = provider.verify_presented_id_token(token, audience).await?;
    let identity = identity_from_claims(&provider.idp, claims)?;
    Ok(VerifiedIdentity::verified(identity))
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
    #[error(transparent)]
    Claims(#[from] ClaimsError),
}

impl LoginError {
    /// The IdP could not be used at all (discovery not done): a 503, not a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Oidc(oidc::OidcError::Unavailable))
    }

    /// The IdP failed to complete its part (its token or userinfo endpoint refused or
    /// could not be reached): a 502. Everything else is a verification failure (403).
    pub fn is_upstream_failure(&self) -> bool {
        use oidc::OidcError as E;
        matches!(
            self,
            Self::Oidc(E::TokenExchange(_))
                | Self::Oidc(E::TokenEndpointUnreachable(_))
                | Self::Oidc(E::Userinfo(_))
        )
    }

    /// A short machine-readable reason for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Oidc(e) => e.kind(),
            Self::Claims(_) => "claims",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_claims_are_not_kept_in_the_identity() {
        let text = "[[idp]]\nid = \"corp\"\nkind = \"oidc\"\nissuer = \"https://idp.example.com\"\nclient_id = \"broker\"\n[[account]]\nid = \"a\"\nnumber = \"111122223333\"\n";
        let config =
            crate::config::from_str(text, std::path::Path::new("t.toml"), Vec::new()).unwrap();
        let claims = serde_json::json!({
            "sub": "alice", "email": "alice@example.com", "department": "platform",
            "nonce": "n", "at_hash": "h", "c_hash": "h", "iat": 1, "exp": 2, "nbf": 1, "jti": "j",
        });
        let identity = identity_from_claims(config.idp("corp").unwrap(), claims).unwrap();
        let kept: Vec<&String> = identity.claims.as_object().unwrap().keys().collect();
        assert_eq!(kept, ["department", "email", "sub"]);
    }
}
