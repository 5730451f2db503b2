//! ID-token checks beyond `openidconnect`'s defaults, each proven against the real
//! OpenID Provider serving a token tampered in one way: `nbf`, a maximum age on `iat`,
//! `at_hash`, malformed tokens (named, not "refused the code exchange"), the RFC 9207
//! `iss` parameter when the IdP advertises it, and expiry messages with the real time.

use serde_json::{Value as Json, json};

use crate::helpers::{OidcSetup, spawn_with_oidc};
use crate::oidc::{browser, is_signed_in, login_until_callback, tamper};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn last_login_failure(s: &OidcSetup) -> Json {
    s.audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "login" && r["outcome"] == "failure")
        .expect("a failed login record")
}

/// Signs alice in with the next ID token tampered by `t`; returns status, page, and the
/// audit reason.
async fn tampered_login(s: &OidcSetup, t: Json) -> (u16, String, String) {
    let client = browser();
    let cb = login_until_callback(s, &client, "alice", "alice-pw").await;
    tamper(s, t).await;
    let res = client.get(&cb).send().await.unwrap();
    let status = res.status().as_u16();
    let page = res.text().await.unwrap();
    assert!(!is_signed_in(s, &client).await, "no session");
    let reason = last_login_failure(s)["reason"].as_str().unwrap().to_owned();
    (status, page, reason)
}

#[tokio::test]
async fn tokens_not_yet_valid_too_old_or_bound_to_another_access_token_are_refused() {
    let s = spawn_with_oidc().await;
    let n = now();
    let cases = [
        (
            "nbf in the future",
            json!({ "claims": { "nbf": n + 3600 } }),
            "not valid before",
        ),
        (
            "nbf not a number",
            json!({ "claims": { "nbf": "later" } }),
            "nbf is not a number",
        ),
        (
            "issued 2h ago (max age 10m)",
            json!({ "claims": { "iat": n - 7200, "exp": n + 600 } }),
            "more than 10m ago",
        ),
        (
            "at_hash of another access token",
            json!({ "claims": { "at_hash": "AAAAAAAAAAAAAAAAAAAAAA" } }),
            "at_hash does not match the access token",
        ),
    ];
    for (what, t, expected) in cases {
        let (status, page, reason) = tampered_login(&s, t).await;
        assert_eq!(status, 403, "{what}: {page}");
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(
            page.contains(expected),
            "{what}: the page says what is wrong"
        );
    }
    // Just inside the limits still signs in: nbf a little in the future (within the
    // leeway) and a token issued 5 minutes ago.
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    tamper(
        &s,
        json!({ "claims": { "nbf": now() + 30, "iat": now() - 300 } }),
    )
    .await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains(r#"rolegate_oidc_rejections_total{idp="corp",reason="invalid_id_token"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_id_token_is_named_as_such_not_as_a_refused_exchange() {
    let s = spawn_with_oidc().await;
    let cases = [
        ("no sub", json!({ "claims": { "sub": null } }), "sub"),
        ("no exp", json!({ "claims": { "exp": null } }), "exp"),
        ("no iat", json!({ "claims": { "iat": null } }), "iat"),
        (
            "exp as a string",
            json!({ "claims": { "exp": "tomorrow" } }),
            "exp",
        ),
        (
            "alg in odd case",
            json!({ "raw_header": { "alg": "rs256" } }),
            "alg \"rs256\"",
        ),
    ];
    for (what, t, field) in cases {
        let (status, page, reason) = tampered_login(&s, t).await;
        assert_eq!(
            status, 403,
            "{what}: a verification failure, not 502: {page}"
        );
        assert!(
            reason.contains("the token response is malformed") && reason.contains(field),
            "{what}: {reason}"
        );
        assert!(
            !reason.contains("refused the code exchange"),
            "{what}: {reason}"
        );
    }
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"rolegate_oidc_rejections_total{idp="corp",reason="malformed_token_response"} 5"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_expired_token_is_reported_with_the_real_time() {
    let s = spawn_with_oidc().await;
    let n = now();
    let (status, _, reason) = tampered_login(
        &s,
        json!({ "claims": { "exp": n - 3600, "iat": n - 4000 } }),
    )
    .await;
    assert_eq!(status, 403);
    // "expired at …; it is now 2026-…T…" with today's date and time, not now - leeway.
    let printed = reason
        .split("it is now ")
        .nth(1)
        .unwrap_or_else(|| panic!("{reason}"))
        .split(' ')
        .next()
        .unwrap();
    let printed = chrono::DateTime::parse_from_rfc3339(printed)
        .unwrap()
        .timestamp();
    assert!(
        (printed - now()).abs() <= 5,
        "printed now {printed} vs real {}: {reason}",
        now()
    );
}

#[tokio::test]
async fn a_callback_without_iss_is_refused_when_the_idp_advertises_it() {
    let s = spawn_with_oidc().await;
    let discovery: Json = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        s.op.issuer()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"], true,
        "the test OP advertises RFC 9207"
    );
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    let mut url = url::Url::parse(&cb).unwrap();
    assert!(url.query_pairs().any(|(k, _)| k == "iss"), "{cb}");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let res = client.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(!is_signed_in(&s, &client).await);
    assert!(
        last_login_failure(&s)["reason"]
            .as_str()
            .unwrap()
            .contains("no iss parameter"),
    );
}
