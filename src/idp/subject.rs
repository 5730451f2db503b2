//! Tokens an app presents for exchange (RFC 8693 subject tokens): an ID token, or an
//! access token that is a JWT (RFC 9068), issued by one of the configured OIDC IdPs to
//! that app. Verified with `jsonwebtoken` against the same cached, rotating JWKS the
//! browser logins use.
//!
//! What is checked (SECURITY-BAR J1–J18): the header names an algorithm from the IdP's
//! asymmetric allow-list; no `jku`, `x5u`, `x5c` or embedded `jwk` (keys come only from the
//! IdP's JWKS) and no `crit` (rolegate understands no extension); `typ` fits the token type
//! (an access token is never accepted as an ID token, nor the reverse); the signature; `iss`
//! exactly the IdP's; `aud` the app's client id at the IdP (with several audiences, `azp`
//! must name it); `azp`, when present, the app; `exp` and `nbf` with the IdP's leeway; `iat`
//! present, not in the future, and not older than the app's maximum age; `sub` present.

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value as Json;

use super::oidc::OidcProvider;
use super::{VerifiedIdentity, identity_from_claims};

/// Which kind of token the app says it presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    IdToken,
    /// A JWT access token (RFC 9068, `typ: at+jwt`).
    AccessToken,
}

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("the subject token is not a JWT")]
    NotAJwt,
    #[error("the subject token's header {0}")]
    Header(String),
    #[error("the subject token is signed with a key the IdP does not publish")]
    UnknownKey,
    #[error("the subject token's signature does not verify")]
    Signature,
    #[error("the subject token is invalid: {0}")]
    Claims(String),
    #[error("the IdP is not available yet")]
    Unavailable,
}

fn b64_json(part: &str) -> Option<Json> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies `token` as a `kind` token of `provider`'s IdP issued to `audience`; returns
/// the verified identity and the token's claims (for `jti` and `exp`).
pub async fn verify_subject_token(
    provider: &OidcProvider,
    token: &str,
    kind: SubjectKind,
    audience: &str,
    max_age: Duration,
) -> Result<(VerifiedIdentity, Json), SubjectError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SubjectError::NotAJwt);
    };
    let header = b64_json(h).ok_or(SubjectError::NotAJwt)?;
    for forbidden in ["jku", "x5u", "x5c", "jwk"] {
        if header.get(forbidden).is_some() {
            return Err(SubjectError::Header(format!(
                "carries {forbidden:?}: keys come only from the IdP's published JWKS"
            )));
        }
    }
    if header.get("crit").is_some() {
        return Err(SubjectError::Header(
            "has crit: rolegate understands no JWS extension".into(),
        ));
    }
    let typ = header
        .get("typ")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_access = typ == "at+jwt" || typ == "application/at+jwt";
    match kind {
        SubjectKind::IdToken if is_access => {
            return Err(SubjectError::Header(
                "says at+jwt: an access token was presented where an ID token is required".into(),
            ));
        }
        SubjectKind::AccessToken if !is_access => {
            return Err(SubjectError::Header(format!(
                "has typ {typ:?}: an access token must be typ at+jwt (RFC 9068)"
            )));
        }
        _ => {}
    }
    let settings = provider.settings();
    let alg_name = header.get("alg").and_then(Json::as_str).unwrap_or("");
    if !settings.allowed_algorithms.iter().any(|a| a == alg_name) {
        return Err(SubjectError::Header(format!(
            "names algorithm {alg_name:?}, which is not allowed for this IdP"
        )));
    }
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| SubjectError::Header(format!("names an unknown algorithm {alg_name:?}")))?;
    let kid = header.get("kid").and_then(Json::as_str).map(str::to_owned);

    let key = match find_key(provider, kid.as_deref(), alg)? {
        Some(k) => k,
        // Key rotation: one (rate-limited) refetch on an unknown kid.
        None if provider.refetch_keys().await => {
            find_key(provider, kid.as_deref(), alg)?.ok_or(SubjectError::UnknownKey)?
        }
        None => return Err(SubjectError::UnknownKey),
    };

    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.set_issuer(&[settings.issuer_id.as_str()]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = settings.leeway.as_secs();
    v.validate_nbf = true;
    let data = jsonwebtoken::decode::<Json>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => SubjectError::Signature,
            K::ExpiredSignature => SubjectError::Claims("expired (exp)".into()),
            K::ImmatureSignature => SubjectError::Claims("not valid yet (nbf)".into()),
            K::InvalidIssuer => SubjectError::Claims("issued by another issuer (iss)".into()),
            K::InvalidAudience => SubjectError::Claims(format!(
                "issued to another client (aud is not {audience:?})"
            )),
            K::MissingRequiredClaim(c) => SubjectError::Claims(format!("has no {c}")),
            other => SubjectError::Claims(format!("{other:?}")),
        }
    })?;
    let claims = data.claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let leeway = settings.leeway.as_secs() as i64;
    let iat = claims
        .get("iat")
        .and_then(Json::as_i64)
        .ok_or_else(|| SubjectError::Claims("has no iat".into()))?;
    if iat > now + leeway {
        return Err(SubjectError::Claims("iat is in the future".into()));
    }
    if iat + max_age.as_secs() as i64 + leeway < now {
        return Err(SubjectError::Claims(format!(
            "issued more than {} ago (iat)",
            humantime::format_duration(max_age)
        )));
    }
    let several_audiences = claims
        .get("aud")
        .and_then(Json::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Json::as_str) {
        Some(azp) if azp != audience => {
            return Err(SubjectError::Claims(format!(
                "was issued for another party (azp {azp:?})"
            )));
        }
        None if several_audiences => {
            return Err(SubjectError::Claims(
                "has several audiences but no azp".into(),
            ));
        }
        _ => {}
    }
    let identity = identity_from_claims(&provider.idp, claims.clone())
        .map_err(|e| SubjectError::Claims(e.to_string()))?;
    Ok((VerifiedIdentity::verified(identity), claims))
}

fn find_key(
    provider: &OidcProvider,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<DecodingKey>, SubjectError> {
    let keys = provider.jwt_keys().map_err(|_| SubjectError::Unavailable)?;
    let alg_name = format!("{alg:?}");
    let candidates: Vec<_> = keys
        .iter()
        .filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => true,
        })
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg_name))
        .collect();
    // Without a kid, only an unambiguous single key is used.
    if kid.is_none() && candidates.len() != 1 {
        return Ok(None);
    }
    Ok(candidates.first().map(|k| k.key.clone()))
}
