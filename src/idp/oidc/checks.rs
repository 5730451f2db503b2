//! The ID-token checks `openidconnect` leaves to the caller, as pure functions over the
//! token text and claims: the expiry message with the real time, malformed-token
//! descriptions, `at_hash`, and merging userinfo claims (with `sub` equality).

use std::time::Duration;

use base64::Engine as _;
use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm};
use serde_json::Value as Json;

use super::{OidcError, algorithm};

pub(super) fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The error for an expired ID token, with the real current time (the verifier's clock is
/// shifted by the leeway).
pub(super) fn expired(token: &CoreIdToken, leeway: Duration) -> OidcError {
    let exp = decode_payload(&token.to_string())
        .ok()
        .and_then(|c| c.get("exp").and_then(Json::as_i64))
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "an unreadable time".into());
    OidcError::InvalidIdToken(format!(
        "expired at {exp} (exp); it is now {} (leeway {})",
        chrono_now().to_rfc3339(),
        humantime::format_duration(leeway)
    ))
}

/// Turns a failed token request into what it is: the IdP's refusal, a transport
/// failure, or a response (usually its ID token) that does not parse — the last says
/// which field is wrong.
pub(super) fn token_error<RE>(
    e: openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> OidcError
where
    RE: std::error::Error + 'static,
{
    use openidconnect::RequestTokenError as E;
    match e {
        E::ServerResponse(r) => OidcError::TokenExchange(r.to_string()),
        E::Request(r) => OidcError::TokenEndpointUnreachable(crate::telemetry::error_chain(&r)),
        E::Parse(p, body) => OidcError::MalformedTokenResponse(
            describe_malformed_id_token(&body)
                .unwrap_or_else(|| format!("{} at {}", p.inner(), p.path())),
        ),
        E::Other(o) => OidcError::MalformedTokenResponse(o),
    }
}

/// Names what is wrong with the ID token of a token response that did not parse (the
/// crate's own message is about serde, not about claims): a missing or mistyped required
/// claim, or an `alg` the JOSE registry does not spell that way.
fn describe_malformed_id_token(body: &[u8]) -> Option<String> {
    let response: Json = serde_json::from_slice(body).ok()?;
    let jwt = response.get("id_token")?.as_str()?;
    let mut parts = jwt.split('.');
    let decode = |p: Option<&str>| -> Option<Json> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = decode(parts.next())?;
    match header.get("alg").and_then(Json::as_str) {
        None => return Some("the ID token's header has no alg".into()),
        Some(a) if algorithm(a).is_none() && a != "none" && a != "HS256" => {
            return Some(format!(
                "the ID token's alg {a:?} is not a JOSE algorithm name (they are case-sensitive)"
            ));
        }
        Some(_) => {}
    }
    let claims = decode(parts.next())?;
    for name in ["iss", "sub", "aud", "exp", "iat"] {
        match claims.get(name) {
            None | Some(Json::Null) => return Some(format!("the ID token has no {name} claim")),
            Some(Json::Number(_)) if matches!(name, "exp" | "iat") => {}
            Some(_) if matches!(name, "exp" | "iat") => {
                return Some(format!("the ID token's {name} is not a number of seconds"));
            }
            Some(Json::String(_)) => {}
            Some(Json::Array(_)) if name == "aud" => {}
            Some(_) => return Some(format!("the ID token's {name} is not a string")),
        }
    }
    None
}

/// OIDC Core 3.1.3.8: when the ID token has `at_hash`, it must be the left half of the
/// hash of the access token (with the ID token's algorithm), or the access token was
/// swapped and must not be used at the UserInfo endpoint.
pub(super) fn check_at_hash(
    id_token: &CoreIdToken,
    claims: &Json,
    access_token: &openidconnect::AccessToken,
) -> Result<(), OidcError> {
    let Some(at_hash) = claims.get("at_hash") else {
        return Ok(());
    };
    let Some(at_hash) = at_hash.as_str() else {
        return Err(OidcError::InvalidIdToken("at_hash is not a string".into()));
    };
    let alg = id_token
        .signing_alg()
        .map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
    let digest = match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
        | CoreJwsSigningAlgorithm::RsaSsaPssSha256
        | CoreJwsSigningAlgorithm::EcdsaP256Sha256 => &aws_lc_rs::digest::SHA256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384
        | CoreJwsSigningAlgorithm::RsaSsaPssSha384
        | CoreJwsSigningAlgorithm::EcdsaP384Sha384 => &aws_lc_rs::digest::SHA384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512
        | CoreJwsSigningAlgorithm::RsaSsaPssSha512
        | CoreJwsSigningAlgorithm::EdDsa => &aws_lc_rs::digest::SHA512,
        _ => {
            return Err(OidcError::InvalidIdToken(
                "at_hash with an algorithm that has no hash".into(),
            ));
        }
    };
    let hash = aws_lc_rs::digest::digest(digest, access_token.secret().as_bytes());
    let half = &hash.as_ref()[..hash.as_ref().len() / 2];
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(half);
    if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), at_hash.as_bytes())
        .is_err()
    {
        return Err(OidcError::InvalidIdToken(
            "at_hash does not match the access token".into(),
        ));
    }
    Ok(())
}

pub(super) fn decode_payload(jwt: &str) -> Result<Json, OidcError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::InvalidIdToken("not a JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| OidcError::InvalidIdToken("payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| OidcError::InvalidIdToken("payload is not JSON".into()))
}

/// Adds userinfo claims to the ID-token claims. The userinfo `sub` must be the ID token's
/// (J18); ID-token claims win on conflict, since they are signed.
pub(super) fn merge_userinfo(mut claims: Json, userinfo: Json) -> Result<Json, OidcError> {
    if userinfo.get("sub") != claims.get("sub") {
        return Err(OidcError::UserinfoSubjectMismatch);
    }
    if let (Some(c), Some(u)) = (claims.as_object_mut(), userinfo.as_object()) {
        for (k, v) in u {
            c.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(claims: Json) -> Vec<u8> {
        let b64 = |v: Json| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let jwt = format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({"alg": "RS256"})),
            b64(claims)
        );
        serde_json::json!({ "id_token": jwt })
            .to_string()
            .into_bytes()
    }

    fn with(name: &str, value: Json) -> Option<String> {
        let mut claims = serde_json::json!({
            "iss": "https://idp.example.com", "sub": "alice", "aud": "broker", "exp": 2, "iat": 1,
        });
        claims[name] = value;
        describe_malformed_id_token(&body(claims))
    }

    fn at_hash_of(digest: &'static aws_lc_rs::digest::Algorithm, token: &str) -> String {
        let hash = aws_lc_rs::digest::digest(digest, token.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(&hash.as_ref()[..hash.as_ref().len() / 2])
    }

    fn id_token(alg: &str) -> CoreIdToken {
        let b64 = |v: Json| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = serde_json::json!({
            "iss": "https://idp.example.com", "sub": "alice", "aud": "broker", "exp": 2, "iat": 1,
        });
        format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({ "alg": alg })),
            b64(claims)
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_access_tokens_hash_with_the_tokens_algorithm() {
        use aws_lc_rs::digest::{SHA256, SHA384, SHA512};
        let access = openidconnect::AccessToken::new("access-token-123".into());
        for (alg, right, wrong) in [
            ("RS256", &SHA256, &SHA384),
            ("PS384", &SHA384, &SHA256),
            ("ES384", &SHA384, &SHA512),
            ("RS512", &SHA512, &SHA256),
        ] {
            let token = id_token(alg);
            let claims = |h: String| serde_json::json!({ "at_hash": h });
            let good = at_hash_of(right, access.secret());
            assert!(
                check_at_hash(&token, &claims(good), &access).is_ok(),
                "{alg}"
            );
            let other = at_hash_of(wrong, access.secret());
            assert!(
                check_at_hash(&token, &claims(other), &access).is_err(),
                "{alg}"
            );
            let swapped = at_hash_of(right, "another-access-token");
            assert!(
                check_at_hash(&token, &claims(swapped), &access).is_err(),
                "{alg}"
            );
        }
        // No at_hash: nothing to compare.
        assert!(check_at_hash(&id_token("RS256"), &serde_json::json!({}), &access).is_ok());
    }

    #[test]
    fn a_well_formed_token_is_not_described_as_malformed() {
        assert_eq!(with("aud", serde_json::json!("broker")), None);
        assert_eq!(with("aud", serde_json::json!(["broker", "other"])), None);
    }

    #[test]
    fn each_malformed_claim_is_named_with_what_is_wrong() {
        let says = |name: &str, value: Json| with(name, value).unwrap_or_default();
        assert_eq!(says("sub", Json::Null), "the ID token has no sub claim");
        assert_eq!(
            says("exp", serde_json::json!("2")),
            "the ID token's exp is not a number of seconds"
        );
        assert_eq!(
            says("iat", serde_json::json!([1])),
            "the ID token's iat is not a number of seconds"
        );
        assert_eq!(
            says("sub", serde_json::json!(7)),
            "the ID token's sub is not a string"
        );
        assert_eq!(
            says("sub", serde_json::json!(["alice"])),
            "the ID token's sub is not a string"
        );
        assert_eq!(
            says("aud", serde_json::json!(7)),
            "the ID token's aud is not a string"
        );
    }
}
