//! The OAuth endpoints as an RFC-following client and an attacker meet them at their
//! edges: requests that cannot be read (RFC 6749 §3.2, §5.2), authorization errors that go
//! back to the client (§4.1.2.1, RFC 7636 §4.4.1, RFC 9207), a replayed code revoking what
//! it started (§4.1.2), token exchange refusals that issue nothing and use nothing up, the
//! audit of apps, and the store holding no identifier a client could use.

use reqwest::Client;
use serde_json::Value as Json;

use crate::cli_login::{
    CLI_CONFIG, REDIRECT, api, approve_loopback, authorize_url, error_of, exchange as redeem, pkce,
    token,
};
use crate::exchange::{ACCESS, APPS, form};
use crate::helpers::{OidcSetup, SetupOptions, shared_redis, spawn_with, unique_prefix};
use crate::oidc::{location, signed_in_as};
use crate::presented_tokens::app_id_token;

async fn broker() -> OidcSetup {
    spawn_with(SetupOptions {
        extra: format!("{CLI_CONFIG}{APPS}"),
        ..SetupOptions::default()
    })
    .await
}

fn refusals(s: &OidcSetup) -> Vec<Json> {
    s.audit_records()
        .into_iter()
        .filter(|r| r["event"] == "oauth_request_refused")
        .collect()
}

/// A request no OAuth endpoint can read gets RFC 6749 §5.2 JSON (`invalid_request`, 413
/// for an oversized body), `no-store`, and an audit record; browsers' pages stay pages.
#[tokio::test]
async fn unreadable_requests_to_oauth_endpoints_get_json_errors_and_are_audited() {
    let s = broker().await;
    let c = Client::new();
    let big = "x".repeat(70_000);
    for path in [
        "/oauth/token",
        "/oauth/device_authorization",
        "/oauth/revoke",
    ] {
        let url = format!("{}{path}", s.app.address);
        let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
            (
                "a repeated parameter",
                c.post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("client_id=rolegate-cli&client_id=other-cli&grant_type=refresh_token&token=x"),
                400,
            ),
            ("no content type", c.post(&url).body("client_id=rolegate-cli"), 400),
            (
                "text/plain",
                c.post(&url)
                    .header("content-type", "text/plain")
                    .body("client_id=rolegate-cli"),
                400,
            ),
            (
                "a JSON body",
                c.post(&url).json(&serde_json::json!({"client_id": "rolegate-cli"})),
                400,
            ),
            (
                "a body over the limit",
                c.post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("client_id=rolegate-cli&pad={big}")),
                413,
            ),
        ];
        for (what, req, status) in cases {
            let before = refusals(&s).len();
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), status, "{path}: {what}");
            assert_eq!(res.headers()["cache-control"], "no-store", "{path}: {what}");
            assert!(
                res.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{path}: {what}"
            );
            let body: Json = res.json().await.unwrap();
            assert_eq!(body["error"], "invalid_request", "{path}: {what}: {body}");
            let after = refusals(&s);
            assert_eq!(after.len(), before + 1, "{path}: {what}: audited once");
            assert_eq!(after.last().unwrap()["endpoint"], path);
        }
    }
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Once the client and its redirect URI are verified, an authorization error goes back to
/// the client (with `state` and `iss`), so the CLI hears it at once.
#[tokio::test]
async fn authorization_errors_after_the_client_is_verified_go_back_to_it() {
    let s = broker().await;
    let (b, _) = signed_in_as(&s, "alice", "alice-pw").await;
    let (_, challenge) = pkce();
    let good = authorize_url(&s, &challenge, REDIRECT, "rolegate-cli");
    let issuer: Json = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        s.app.address
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        issuer["authorization_response_iss_parameter_supported"],
        true
    );
    for (what, url, error) in [
        (
            "response_type token",
            good.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            "plain PKCE",
            good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            "no PKCE",
            good.replace("code_challenge_method=S256&", ""),
            "invalid_request",
        ),
        (
            "a repeated parameter",
            format!("{good}&response_type=code"),
            "invalid_request",
        ),
    ] {
        let res = b.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 303, "{what}");
        let to = location(&res);
        assert!(to.starts_with(REDIRECT), "{what}: {to}");
        let q = query_of(&to);
        assert_eq!(q["error"], error, "{what}");
        assert!(!q["error_description"].is_empty(), "{what}");
        assert_eq!(q["state"], "st-123", "{what}");
        assert_eq!(q["iss"], issuer["issuer"].as_str().unwrap(), "{what}");
        assert!(!q.contains_key("code"), "{what}");
    }
    // Before the client is verified: a page, never a redirect.
    let res = b
        .get(good.replace("client_id=rolegate-cli", "client_id=nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // A code carries iss too.
    let code_redirect_has_iss = {
        let code = approve_loopback(&s, &b, &challenge).await;
        !code.is_empty()
    };
    assert!(code_redirect_has_iss);
}

/// A code redeemed twice: the second use is refused and the tokens of the first are
/// revoked (RFC 6749 §4.1.2), audited.
#[tokio::test]
async fn a_replayed_code_revokes_the_login_it_started() {
    let s = broker().await;
    let (b, _) = signed_in_as(&s, "alice", "alice-pw").await;
    let (verifier, challenge) = pkce();
    let code = approve_loopback(&s, &b, &challenge).await;
    let tokens: Json = redeem(&s, &code, &verifier).await.json().await.unwrap();
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(api(&s, at, "GET", "/api/v1/me").await.status(), 200);
    let (status, err) = error_of(redeem(&s, &code, &verifier).await).await;
    assert_eq!((status, err.as_str()), (400, "invalid_grant"));
    assert_eq!(
        api(&s, at, "GET", "/api/v1/me").await.status(),
        401,
        "the first use's access token is revoked"
    );
    let (_, err) = error_of(
        token(
            &s,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "rolegate-cli"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(err, "invalid_grant", "and its refresh token");
    assert!(s.audit_records().iter().any(|r| r["event"] == "cli_logout"
        && r["reason"] == "authorization code replayed"
        && r["subject"] == "alice"));
}

/// An exchange refused for `invalid_target` (or refused by the rules) uses none of the
/// subject token's replay allowance; the one that issues does.
#[tokio::test]
async fn a_refused_exchange_uses_none_of_the_tokens_allowance() {
    let s = broker().await;
    let subject = app_id_token(&s.op, "bob", "bob-pw").await;
    let send = |extra: Vec<(&'static str, &'static str)>| {
        let s = &s;
        let subject = subject.clone();
        async move {
            let f = form("mobile", &subject, &extra);
            crate::exchange::exchange(s, &f, None).await
        }
    };
    // "mobile" allows one exchange per token.
    let (_, err, _) = crate::exchange::error_of(
        send(vec![("audience", "arn:aws:iam::111122223333:role/Nope")]).await,
    )
    .await;
    assert_eq!(err, "invalid_target");
    let (_, err, _) = crate::exchange::error_of(send(vec![("audience", "prod-admin")]).await).await;
    assert_eq!(err, "invalid_target", "bob is not granted prod-admin");
    let res = send(vec![("audience", "dev-admin")]).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let (_, err, desc) =
        crate::exchange::error_of(send(vec![("audience", "dev-admin")]).await).await;
    assert_eq!(err, "invalid_grant", "{desc}");
    assert!(desc.contains("already exchanged"), "{desc}");
}

/// The app's records name the app: its exchange's issuance, and credentials it fetches
/// with its broker token through the JSON API (client path `mobile`, not `cli`).
#[tokio::test]
async fn an_apps_credentials_are_audited_with_the_app() {
    let s = broker().await;
    let subject = app_id_token(&s.op, "alice", "alice-pw").await;
    let res = crate::exchange::exchange(
        &s,
        &form("mobile", &subject, &[("audience", "prod-admin")]),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let subject = app_id_token(&s.op, "alice", "alice-pw").await;
    let at: Json = crate::exchange::exchange(
        &s,
        &form("mobile", &subject, &[("requested_token_type", ACCESS)]),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let at = at["access_token"].as_str().unwrap();
    let res = api(&s, at, "POST", "/api/v1/roles/prod-readonly/credentials").await;
    assert_eq!(res.status(), 200);
    let issued: Vec<Json> = s
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] == "success")
        .collect();
    assert_eq!(issued.len(), 2);
    for r in &issued {
        assert_eq!(r["client_path"], "mobile", "{r}");
        assert_eq!(r["app"], "mobile", "{r}");
    }
    let exchange_record = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "token_exchange" && r["outcome"] == "success")
        .expect("the access token's release is audited");
    assert_eq!(exchange_record["app"], "mobile");
    assert_eq!(exchange_record["subject"], "alice");
}

/// No credential and no app token when the audit log cannot be written: the exchange
/// path keeps the invariant too.
#[tokio::test]
async fn an_exchange_issues_nothing_without_its_audit_record() {
    let s = spawn_with(SetupOptions {
        extra: APPS.into(),
        audit_file: Some("/dev/full".into()),
        ..SetupOptions::default()
    })
    .await;
    for extra in [
        vec![("audience", "prod-admin")],
        vec![("requested_token_type", ACCESS)],
    ] {
        let subject = app_id_token(&s.op, "alice", "alice-pw").await;
        let res = crate::exchange::exchange(&s, &form("mobile", &subject, &extra), None).await;
        assert_eq!(res.status(), 503, "{extra:?}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("ASIA") && !body.contains("rga_"),
            "{extra:?}: {body}"
        );
    }
}

/// An IdP whose discovery failed is reported as the IdP being unavailable (not the store),
/// and a 429 to an allowed origin lets browser code read `Retry-After`.
#[tokio::test]
async fn exchange_reports_an_unavailable_idp_and_exposes_retry_after_to_browsers() {
    let s = spawn_with(SetupOptions {
        extra_idps: "[[idp]]\nid = \"down\"\nkind = \"oidc\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"x\"\n".into(),
        extra: format!(
            "{APPS}\n[[app]]\nid = \"on-down\"\nidp = \"down\"\naudience = \"app\"\n\n[[app]]\nid = \"web\"\nidp = \"corp\"\naudience = \"app\"\nallowed_origins = [\"http://127.0.0.1:1234\"]\nrate_limit_per_minute = 1\n"
        ),
        ..SetupOptions::default()
    })
    .await;
    let subject = app_id_token(&s.op, "alice", "alice-pw").await;
    let (status, err, desc) = crate::exchange::error_of(
        crate::exchange::exchange(&s, &form("on-down", &subject, &[]), None).await,
    )
    .await;
    assert_eq!((status, err.as_str()), (503, "temporarily_unavailable"));
    assert!(desc.contains("identity provider down"), "{desc}");
    assert!(!desc.contains("state store"), "{desc}");

    let post = || {
        Client::new()
            .post(format!("{}/oauth/token", s.app.address))
            .header("origin", "http://127.0.0.1:1234")
            .form(&form("web", &subject, &[]))
            .send()
    };
    let _ = post().await.unwrap();
    let res = post().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}

/// The store holds no identifier a client could present: session ids, access, refresh
/// and device codes, user codes and authorization codes appear in no key and no value.
#[tokio::test]
async fn the_store_holds_no_identifier_a_client_could_use() {
    let prefix = unique_prefix("hashed");
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            shared_redis()
        ),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    let b = crate::oidc::browser();
    let cb = crate::oidc::login_until_callback(&s, &b, "alice", "alice-pw").await;
    let res = b.get(&cb).send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|c| {
            c.to_str()
                .ok()?
                .strip_prefix("rolegate_session=")
                .map(|v| v.split(';').next().unwrap().to_owned())
        })
        .expect("a session cookie");
    let (verifier, challenge) = pkce();
    let code = approve_loopback(&s, &b, &challenge).await;
    // A second code, left unredeemed (it stays in the store for its minute).
    let (_, challenge2) = pkce();
    let pending_code = approve_loopback(&s, &b, &challenge2).await;
    let tokens: Json = redeem(&s, &code, &verifier).await.json().await.unwrap();
    let device: Json = Client::new()
        .post(format!("{}/oauth/device_authorization", s.app.address))
        .form(&[("client_id", "rolegate-cli")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut secrets: Vec<String> = vec![
        pending_code.split_once('.').unwrap().1.to_owned(),
        tokens["access_token"].as_str().unwrap()[21..].to_owned(),
        tokens["refresh_token"].as_str().unwrap()[21..].to_owned(),
        device["device_code"].as_str().unwrap().to_owned(),
        device["user_code"].as_str().unwrap().replace('-', ""),
    ];
    // The session cookie's secret part.
    secrets.push(cookie.split_once('.').unwrap().1.to_owned());
    let port = shared_redis()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut dump = String::new();
    for key in cli(&["--scan", "--pattern", &format!("{prefix}*")]).lines() {
        dump.push_str(key);
        dump.push('\n');
        let kind = cli(&["type", key]);
        let value = match kind.trim() {
            "string" => cli(&["get", key]),
            "hash" => cli(&["hgetall", key]),
            "list" => cli(&["lrange", key, "0", "-1"]),
            _ => String::new(),
        };
        dump.push_str(&value);
    }
    assert!(dump.len() > 500, "the store holds the state: {dump}");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "{secret} is in the store");
    }
}
