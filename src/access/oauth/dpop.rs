//! DPoP (RFC 9449): proof-of-possession for tokens issued to apps configured with
//! `dpop = "required"`. The app signs a fresh proof JWT for each request with a key it
//! keeps; the token is bound to that key's thumbprint, so a stolen token without the key
//! is useless.
//!
//! RFC 9449 §4.3, item by item: exactly one `DPoP` header; a JWT; `typ: dpop+jwt`; an
//! `alg` from [`DPOP_ALGS`] (asymmetric); a `jwk` in the header that is a public key (the
//! raw header is checked, before any JWK type could drop a private member); the signature
//! verifies with that key; `htm` and `htu` equal to this request's method and URL (no query
//! or fragment); `iat` within a minute either way; a `jti` not seen before (kept in the
//! store, so replay fails on every instance); and, at the API, `ath`, the hash of the
//! access token it accompanies, and the key the token is bound to (`bearer`).

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value as Json;

use super::OAuthError;
use crate::access::Access;
use crate::store::FirstUse;

/// How far a proof's `iat` may be from now.
const IAT_WINDOW: i64 = 60;

/// The proof algorithms accepted (RFC 9449 `dpop_signing_alg_values_supported`, and the
/// `algs` of a `DPoP` challenge).
pub const DPOP_ALGS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The `DPoP` headers of a request and the request they came with.
pub struct DpopProof<'a> {
    /// Every `DPoP` header value sent (more than one is refused).
    pub headers: Vec<&'a str>,
    pub method: &'a str,
    /// The request's URL at the broker's public address, without query or fragment.
    pub url: &'a str,
}

/// The header of a JWT as sent, before any typed parsing.
fn raw_header(jwt: &str) -> Option<Json> {
    let part = jwt.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn invalid(why: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_dpop_proof", why)
}

/// The base64url SHA-256 of an access token (the proof's `ath`).
pub fn access_token_hash(token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

impl Access {
    /// Verifies a DPoP proof; returns the JWK thumbprint (`jkt`) of its key. With
    /// `access_token`, the proof must carry its hash (`ath`).
    pub async fn verify_dpop(
        &self,
        proof: &DpopProof<'_>,
        access_token: Option<&str>,
    ) -> Result<String, OAuthError> {
        let jwt = match proof.headers.as_slice() {
            [one] => *one,
            [] => return Err(invalid("a DPoP proof is required")),
            _ => return Err(invalid("send exactly one DPoP header")),
        };
        if jwt.len() > 8192 {
            return Err(invalid("the DPoP proof is too large"));
        }
        let raw = raw_header(jwt).ok_or_else(|| invalid("the DPoP proof is not a JWT"))?;
        if let Some(jwk) = raw.get("jwk")
            && PRIVATE_JWK_MEMBERS.iter().any(|m| jwk.get(m).is_some())
        {
            return Err(invalid("the DPoP proof's jwk must be a public key"));
        }
        let header =
            jsonwebtoken::decode_header(jwt).map_err(|_| invalid("the DPoP proof is not a JWT"))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
        }
        let alg = header.alg;
        if !DPOP_ALGS.contains(&format!("{alg:?}").as_str())
            || matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        {
            return Err(invalid(format!(
                "the DPoP proof must use one of {} (asymmetric)",
                DPOP_ALGS.join(", ")
            )));
        }
        let jwk: Jwk = header
            .jwk
            .ok_or_else(|| invalid("the DPoP proof has no jwk header"))?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|_| invalid("the DPoP proof's jwk is not a usable key"))?;
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.set_required_spec_claims::<&str>(&[]);
        v.validate_exp = false;
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<Json>(jwt, &key, &v)
            .map_err(|_| invalid("the DPoP proof's signature does not verify"))?
            .claims;
        let s = |k: &str| claims.get(k).and_then(Json::as_str);
        if s("htm") != Some(proof.method) {
            return Err(invalid("the DPoP proof is for another method (htm)"));
        }
        let htu = s("htu").unwrap_or("");
        let htu = htu.split(['?', '#']).next().unwrap_or("");
        if htu != proof.url {
            return Err(invalid("the DPoP proof is for another URL (htu)"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let iat = claims
            .get("iat")
            .and_then(Json::as_i64)
            .ok_or_else(|| invalid("the DPoP proof has no iat"))?;
        if (iat - now).abs() > IAT_WINDOW {
            return Err(invalid("the DPoP proof is not fresh (iat)"));
        }
        if let Some(token) = access_token
            && s("ath") != Some(access_token_hash(token).as_str())
        {
            return Err(invalid("the DPoP proof is for another access token (ath)"));
        }
        let jti = s("jti")
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .ok_or_else(|| invalid("the DPoP proof has no jti"))?;
        let seen = self
            .store
            .first_use(
                "dpop:jti",
                jti,
                Duration::from_secs((2 * IAT_WINDOW) as u64),
            )
            .await?;
        if seen == FirstUse::Replay {
            return Err(invalid("the DPoP proof was already used (jti)"));
        }
        jwk.thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| invalid("the DPoP proof's jwk has no thumbprint"))
    }
}
