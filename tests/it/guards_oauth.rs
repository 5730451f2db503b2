//! One test per check of the OAuth server, the device flow, registered clients and
//! subject tokens that a "remove the check" edit once survived: each fails when its check
//! is removed (the case the check refuses is paired with the same request made right,
//! which is accepted).

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::{
    CLI_CONFIG, REDIRECT, api, approve_device, authorize_url, error_of, field, logged_in_cli, pkce,
    token,
};
use crate::exchange::{exchange, form};
use crate::helpers::{OidcSetup, SetupOptions, shared_redis, spawn_with, unique_prefix};
use crate::oidc::{signed_in_as, tamper};
use crate::presented_tokens::app_id_token;

async fn redis_broker(prefix: &str, extra: &str) -> OidcSetup {
    spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            shared_redis()
        ),
        extra: format!("{CLI_CONFIG}{extra}"),
        ..SetupOptions::default()
    })
    .await
}

fn redis(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", shared_redis()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn refresh_form<'a>(rt: &'a str, client: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "refresh_token"),
        ("client_id", client),
        ("refresh_token", rt),
    ]
}

/// A refresh token works only for its client; a login ends at its absolute lifetime even
/// if its record were still there; the family record lives exactly that long.
#[tokio::test]
async fn a_login_is_its_clients_and_ends_at_its_lifetime() {
    let prefix = unique_prefix("family");
    let s = redis_broker(&prefix, "session_lifetime = \"20m\"\n").await;
    let tokens = logged_in_cli(&s).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let (status, err) = error_of(token(&s, &refresh_form(rt, "other-cli")).await).await;
    assert_eq!(
        (status, err.as_str()),
        (400, "invalid_grant"),
        "another client"
    );
    // The family: its TTL is the login's lifetime (not ten times it).
    let tag = rolegate::store::PersonTag::of("corp", "alice");
    let families = redis(&[
        "--scan",
        "--pattern",
        &format!("{prefix}{{{tag}}}:oauth:family:*"),
    ]);
    let family = families.lines().next().expect("a family record").to_owned();
    let ttl: i64 = redis(&["ttl", &family]).parse().unwrap();
    assert!((1190..=1200).contains(&ttl), "family TTL {ttl}");
    let me: Json = api(
        &s,
        tokens["access_token"].as_str().unwrap(),
        "GET",
        "/api/v1/me",
    )
    .await
    .json()
    .await
    .unwrap();
    let ends = humantime::parse_rfc3339(me["session_expires_at"].as_str().unwrap()).unwrap();
    let left = ends
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((1190..=1200).contains(&left), "login ends in {left} s");
    // The record says the login ended (its store TTL not yet): refused all the same.
    let mut record: Json = serde_json::from_str(&redis(&["get", &family])).unwrap();
    record["expires"] = json!(1);
    redis(&["set", &family, &record.to_string(), "keepttl"]);
    let (_, err) = error_of(token(&s, &refresh_form(rt, "rolegate-cli")).await).await;
    assert_eq!(err, "invalid_grant", "a login past its end");
    assert_eq!(
        api(
            &s,
            tokens["access_token"].as_str().unwrap(),
            "GET",
            "/api/v1/me"
        )
        .await
        .status(),
        401
    );
}

/// A device login denied at /device: the CLI hears `access_denied`, gets no tokens, and
/// the denial is audited; a decision cannot be made twice.
#[tokio::test]
async fn a_device_login_can_be_denied_and_decided_only_once() {
    let s = spawn_with(SetupOptions {
        extra: CLI_CONFIG.replace(
            "device_code_lifetime = \"8s\"",
            "device_code_lifetime = \"60s\"",
        ),
        ..SetupOptions::default()
    })
    .await;
    let (b, _) = signed_in_as(&s, "alice", "alice-pw").await;
    let start = |s: &OidcSetup| {
        let base = s.app.address.clone();
        async move {
            Client::new()
                .post(format!("{base}/oauth/device_authorization"))
                .form(&[("client_id", "rolegate-cli"), ("device_name", "build-box")])
                .send()
                .await
                .unwrap()
                .json::<Json>()
                .await
                .unwrap()
        }
    };
    let poll = |dc: String| {
        let s = &s;
        async move {
            token(
                s,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &dc),
                    ("client_id", "rolegate-cli"),
                ],
            )
            .await
        }
    };
    let d = start(&s).await;
    let code = d["user_code"].as_str().unwrap();
    assert_eq!(approve_device(&s, &b, code, "deny").await.status(), 200);
    let (status, err) = error_of(poll(d["device_code"].as_str().unwrap().into()).await).await;
    assert_eq!((status, err.as_str()), (400, "access_denied"));
    assert!(
        s.audit_records().iter().any(|r| r["event"] == "cli_login"
            && r["outcome"] == "denied"
            && r["subject"] == "alice")
    );
    // Approved once; the same code approved again is refused (it is no longer pending).
    let d = start(&s).await;
    let code = d["user_code"].as_str().unwrap().to_owned();
    let html = crate::helpers::page(&b, format!("{}/device?user_code={code}", s.app.address)).await;
    let csrf = field(&html, "csrf").to_owned();
    assert_eq!(approve_device(&s, &b, &code, "approve").await.status(), 200);
    let again = b
        .post(format!("{}/device/approve", s.app.address))
        .form(&[
            ("csrf", csrf.as_str()),
            ("user_code", code.as_str()),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "a decision is final");
    let res = poll(d["device_code"].as_str().unwrap().into()).await;
    assert_eq!(res.status(), 200, "the first decision stands");
}

/// An approval page's decision counts only from the browser session that saw the page.
#[tokio::test]
async fn an_approval_is_decided_only_by_the_session_that_saw_it() {
    let s = crate::cli_login::broker().await;
    let (a, _) = signed_in_as(&s, "alice", "alice-pw").await;
    let (b, b_csrf) = signed_in_as(&s, "alice", "alice-pw").await;
    let (_, challenge) = pkce();
    let html = a
        .get(authorize_url(&s, &challenge, REDIRECT, "rolegate-cli"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let request = field(&html, "request").to_owned();
    let res = b
        .post(format!("{}/oauth/authorize", s.app.address))
        .form(&[
            ("csrf", b_csrf.as_str()),
            ("request", request.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        res.headers().get("location").is_none(),
        "no code for the other session"
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("another browser session")
    );
}

/// Clients registered through the SSO OIDC API and confidential apps must present their
/// secret: missing or wrong is `invalid_client`; right works.
#[tokio::test]
async fn registered_clients_and_confidential_apps_need_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("app-secret");
    std::fs::write(&secret_file, "the-apps-secret").unwrap();
    let s = spawn_with(SetupOptions {
        extra: format!(
            "{}\n[[app]]\nid = \"backend\"\nidp = \"corp\"\naudience = \"app\"\nclient_secret = {{ file = \"{}\" }}\n",
            crate::sso::sso_config("10m", "1h"),
            secret_file.display()
        ),
        ..SetupOptions::default()
    })
    .await;
    let c = Client::new();
    let reg: Json = c
        .post(format!("{}/sso-oidc/client/register", s.app.address))
        .json(&json!({ "clientName": "sdk", "clientType": "public" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = reg["clientId"].as_str().unwrap();
    let secret = reg["clientSecret"].as_str().unwrap();
    for (what, body, status) in [
        ("no secret", json!({ "clientId": id }), 401),
        (
            "a wrong secret",
            json!({ "clientId": id, "clientSecret": "x" }),
            401,
        ),
        (
            "its secret",
            json!({ "clientId": id, "clientSecret": secret }),
            200,
        ),
    ] {
        let res = c
            .post(format!("{}/sso-oidc/device_authorization", s.app.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{what}");
        if status == 401 {
            assert_eq!(
                res.headers()["x-amzn-ErrorType"],
                "InvalidClientException",
                "{what}"
            );
        }
    }
    for (what, secret, status) in [
        ("no secret", None, 401),
        ("a wrong secret", Some("nope"), 401),
        ("its secret", Some("the-apps-secret"), 200),
    ] {
        let subject = app_id_token(&s.op, "bob", "bob-pw").await;
        let mut f = form("backend", &subject, &[]);
        if let Some(sec) = secret {
            f.push(("client_secret", sec));
        }
        let res = exchange(&s, &f, None).await;
        assert_eq!(res.status(), status, "{what}");
    }
}

/// Subject tokens signed by the real IdP, with one thing wrong each: refused with the
/// reason; the token type an app may present; the per-person exchange limit.
#[tokio::test]
async fn subject_token_checks_each_refuse_their_case() {
    let s = spawn_with(SetupOptions {
        extra: "\n[[app]]\nid = \"strict\"\nidp = \"corp\"\naudience = \"app\"\nmax_exchanges_per_token = 10\n\n[[app]]\nid = \"at-app\"\nidp = \"corp\"\naudience = \"app\"\nsubject_token_types = [\"access_token\"]\nmax_exchanges_per_token = 10\n\n[[app]]\nid = \"per-person\"\nidp = \"corp\"\naudience = \"app\"\nmax_exchanges_per_token = 10\nsubject_rate_limit_per_minute = 2\n".into(),
        ..SetupOptions::default()
    })
    .await;
    const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
    let cases: Vec<(&str, Json, &str, &str)> = vec![
        // Header parameters checked before the signature: put in after signing.
        (
            "crit",
            json!({ "raw_header": { "crit": ["exp"] } }),
            "strict",
            "crit",
        ),
        (
            "x5c",
            json!({ "raw_header": { "x5c": ["MIIBIjAN"] } }),
            "strict",
            "x5c",
        ),
        (
            "an algorithm the IdP may not use",
            json!({ "raw_header": { "alg": "RS384" } }),
            "strict",
            "not allowed",
        ),
        (
            "azp of another party",
            json!({ "claims": { "azp": "someone-else" } }),
            "strict",
            "another party",
        ),
        (
            "several audiences, no azp",
            json!({ "claims": { "aud": ["app", "other"], "azp": null } }),
            "strict",
            "no azp",
        ),
        (
            "an ID token as an access token",
            json!({}),
            "at-app",
            "at+jwt",
        ),
    ];
    for (what, t, app, reason) in cases {
        tamper(&s, t).await;
        let subject = app_id_token(&s.op, "bob", "bob-pw").await;
        let mut f = form(app, &subject, &[]);
        if app == "at-app" {
            f.retain(|(k, _)| *k != "subject_token_type");
            f.push(("subject_token_type", AT));
        }
        let (status, err, desc) = crate::exchange::error_of(exchange(&s, &f, None).await).await;
        assert_eq!(
            (status, err.as_str()),
            (400, "invalid_request"),
            "{what}: {desc}"
        );
        assert!(desc.contains(reason), "{what}: {desc}");
    }
    // The controls: several audiences with azp naming the app; an access token (at+jwt)
    // for the app that accepts them.
    tamper(
        &s,
        json!({ "claims": { "aud": ["app", "other"], "azp": "app" } }),
    )
    .await;
    let subject = app_id_token(&s.op, "bob", "bob-pw").await;
    assert_eq!(
        exchange(&s, &form("strict", &subject, &[]), None)
            .await
            .status(),
        200
    );
    tamper(&s, json!({ "header": { "typ": "at+jwt" } })).await;
    let subject = app_id_token(&s.op, "bob", "bob-pw").await;
    let mut f = form("at-app", &subject, &[]);
    f.retain(|(k, _)| *k != "subject_token_type");
    f.push(("subject_token_type", AT));
    assert_eq!(exchange(&s, &f, None).await.status(), 200);
    // The app's accepted types: "strict" takes ID tokens only.
    let subject = app_id_token(&s.op, "bob", "bob-pw").await;
    let mut f = form("strict", &subject, &[]);
    f.retain(|(k, _)| *k != "subject_token_type");
    f.push(("subject_token_type", AT));
    let (_, err, desc) = crate::exchange::error_of(exchange(&s, &f, None).await).await;
    assert_eq!(err, "invalid_request");
    assert!(desc.contains("may not present"), "{desc}");
    // Two exchanges a minute per person: bob's third is refused, alice's first is not.
    let subject = app_id_token(&s.op, "bob", "bob-pw").await;
    for _ in 0..2 {
        assert_eq!(
            exchange(&s, &form("per-person", &subject, &[]), None)
                .await
                .status(),
            200
        );
    }
    let res = exchange(&s, &form("per-person", &subject, &[]), None).await;
    assert_eq!(res.status(), 429);
    let (_, _, desc) = crate::exchange::error_of(res).await;
    assert!(desc.contains("this person"), "{desc}");
    let alice = app_id_token(&s.op, "carol", "carol-pw").await;
    let res = exchange(&s, &form("per-person", &alice, &[]), None).await;
    assert_ne!(
        res.status(),
        429,
        "another person is not limited by bob's exchanges"
    );
}
