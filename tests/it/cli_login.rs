//! The broker side of the CLI login, driven over HTTP as a CLI and a browser would:
//! the loopback flow (code + PKCE), the device flow, refresh rotation with reuse
//! detection, revocation and the bearer API — and the hostile cases, each with a precise
//! error that changes nothing.

use base64::Engine as _;
use reqwest::{Client, Response};
use serde_json::{Value as Json, json};

use crate::helpers::{OidcSetup, SetupOptions, spawn_with};
use crate::oidc::{browser, location, signed_in_as};

pub const CLI_CONFIG: &str = "\n[cli]\nclient_ids = [\"rolegate-cli\", \"other-cli\"]\nrefresh_reuse_interval = \"2s\"\ndevice_code_lifetime = \"8s\"\ndevice_poll_interval = \"1s\"\n";

/// A CLI login for `user` (loopback flow): the token response.
pub async fn logged_in_as(s: &OidcSetup, user: &str, pw: &str) -> Json {
    let (browser, _) = signed_in_as(s, user, pw).await;
    let (verifier, challenge) = pkce();
    let code = approve_loopback_as(s, &browser, &challenge, &format!("{user}@example.com")).await;
    exchange(s, &code, &verifier).await.json().await.unwrap()
}

pub async fn broker() -> OidcSetup {
    spawn_with(SetupOptions {
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await
}

pub fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    (verifier, challenge)
}

pub fn field<'a>(html: &'a str, name: &str) -> &'a str {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        .split('"')
        .next()
        .unwrap()
}

pub const REDIRECT: &str = "http://127.0.0.1:45678/callback";

pub fn authorize_url(s: &OidcSetup, challenge: &str, redirect: &str, client: &str) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", s.app.address)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-123")
        .append_pair("device_name", "laptop-7");
    u.to_string()
}

/// A signed-in browser approves a loopback login; returns the code from the redirect.
pub async fn approve_loopback(s: &OidcSetup, browser: &Client, challenge: &str) -> String {
    approve_loopback_as(s, browser, challenge, "alice@example.com").await
}

/// As [`approve_loopback`], for the person named `who` on the approval page.
pub async fn approve_loopback_as(
    s: &OidcSetup,
    browser: &Client,
    challenge: &str,
    who: &str,
) -> String {
    let res = browser
        .get(authorize_url(s, challenge, REDIRECT, "rolegate-cli"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("laptop-7") && html.contains("rolegate-cli") && html.contains(who),
        "the approval page names the machine, client and person: {html}"
    );
    assert!(html.contains("Only approve if you started a login just now"));
    let res = browser
        .post(format!("{}/oauth/authorize", s.app.address))
        .form(&[
            ("csrf", field(&html, "csrf")),
            ("request", field(&html, "request")),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = url::Url::parse(&location(&res)).unwrap();
    assert!(to.as_str().starts_with(REDIRECT), "{to}");
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st-123");
    q["code"].clone()
}

pub async fn token(s: &OidcSetup, form: &[(&str, &str)]) -> Response {
    Client::new()
        .post(format!("{}/oauth/token", s.app.address))
        .form(form)
        .send()
        .await
        .unwrap()
}

pub async fn exchange(s: &OidcSetup, code: &str, verifier: &str) -> Response {
    token(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "rolegate-cli"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn error_of(res: Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Json = res.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

pub async fn api(s: &OidcSetup, token: &str, method: &str, path: &str) -> Response {
    let c = Client::new();
    let url = format!("{}{path}", s.app.address);
    let req = if method == "GET" {
        c.get(url)
    } else {
        c.post(url)
    };
    req.bearer_auth(token).send().await.unwrap()
}

/// Signs alice in and completes a loopback login: the token response.
pub async fn logged_in_cli(s: &OidcSetup) -> Json {
    logged_in_as(s, "alice", "alice-pw").await
}

#[tokio::test]
async fn a_loopback_login_gives_tokens_that_reach_the_api() {
    let s = broker().await;
    let md: Json = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        s.app.address
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(md["code_challenge_methods_supported"], json!(["S256"]));
    assert!(
        md["device_authorization_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/device_authorization")
    );

    // Not signed in yet: the browser signs in first and comes back to the approval.
    let b = browser();
    let (verifier, challenge) = pkce();
    let res = b
        .get(authorize_url(&s, &challenge, REDIRECT, "rolegate-cli"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    assert!(
        login.starts_with("/login/corp?return_to=%2Foauth%2Fauthorize"),
        "{login}"
    );
    let cb = crate::oidc::sign_in_from(&s, &b, &login, "alice", "alice-pw").await;
    let res = b.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        location(&res).starts_with("/oauth/authorize?"),
        "back to the approval"
    );
    let code = approve_loopback(&s, &b, &challenge).await;
    let tokens: Json = exchange(&s, &code, &verifier).await.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    let at = tokens["access_token"].as_str().unwrap();
    assert!(
        tokens["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("rgr_")
    );

    let me: Json = api(&s, at, "GET", "/api/v1/me").await.json().await.unwrap();
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["device_name"], "laptop-7");
    let roles: Json = api(&s, at, "GET", "/api/v1/roles")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = roles["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            a["roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(ids, ["dev-admin", "prod-admin", "prod-readonly"]);
    let res = api(&s, at, "POST", "/api/v1/roles/prod-admin/credentials").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let creds: Json = res.json().await.unwrap();
    assert_eq!(creds["Version"], 1);
    assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(
        creds["AssumedRoleArn"],
        "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"
    );
    let issued = s
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "issuance")
        .unwrap();
    assert_eq!(issued["client_path"], "cli");
    // The login record names who signed in, as the issuance does.
    let login = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "cli_login")
        .expect("a cli_login record");
    assert!(issued["subject"].as_str().is_some_and(|x| !x.is_empty()));
    assert_eq!(login["subject"], issued["subject"]);
    assert_eq!(login["idp"], issued["idp"]);
}

#[tokio::test]
async fn hostile_loopback_requests_get_precise_errors() {
    let s = broker().await;
    let (b, csrf) = signed_in_as(&s, "alice", "alice-pw").await;
    let (verifier, challenge) = pkce();

    // Requests that are refused before anything is shown, never redirected.
    for (what, url) in [
        (
            "a non-loopback redirect",
            authorize_url(&s, &challenge, "http://evil.example.com/cb", "rolegate-cli"),
        ),
        (
            "localhost (a name, not a loopback IP)",
            authorize_url(&s, &challenge, "http://localhost:4000/cb", "rolegate-cli"),
        ),
        (
            "an unregistered client",
            authorize_url(&s, &challenge, REDIRECT, "nobody"),
        ),
    ] {
        let res = b.get(url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{what}");
        assert!(
            res.headers().get("location").is_none(),
            "{what}: never redirected"
        );
    }

    // The approval POST needs the session's CSRF token.
    let res = b
        .get(authorize_url(&s, &challenge, REDIRECT, "rolegate-cli"))
        .send()
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    let request = field(&html, "request").to_owned();
    for bad in [None, Some("wrong-token-of-the-right-length-xxxxxxxxxxxx")] {
        let mut form = vec![("request", request.as_str()), ("decision", "approve")];
        if let Some(c) = bad {
            form.push(("csrf", c));
        }
        let res = b
            .post(format!("{}/oauth/authorize", s.app.address))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "csrf {bad:?}");
    }
    // ... and it is still pending: the right CSRF token approves it.
    let res = b
        .post(format!("{}/oauth/authorize", s.app.address))
        .form(&[
            ("csrf", csrf.as_str()),
            ("request", &request),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = url::Url::parse(&location(&res)).unwrap();
    let code = to
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    // Wrong or missing verifier, wrong redirect, another client: refused; each consumes
    // the code (single use), so use fresh codes.
    let (status, err) = error_of(exchange(&s, &code, &"x".repeat(43)).await).await;
    assert_eq!((status, err.as_str()), (400, "invalid_grant"));
    let (status, err) = error_of(exchange(&s, &code, &verifier).await).await;
    assert_eq!(
        (status, err.as_str()),
        (400, "invalid_grant"),
        "replayed code"
    );
    let code = approve_loopback(&s, &b, &challenge).await;
    let (status, err) = error_of(
        token(
            &s,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "rolegate-cli"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, err.as_str()),
        (400, "invalid_request"),
        "missing verifier"
    );
    let code = approve_loopback(&s, &b, &challenge).await;
    let (_, err) = error_of(
        token(
            &s,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "other-cli"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(err, "invalid_grant", "another client's code");
    let (status, err) = error_of(
        token(
            &s,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "nobody"),
                ("code", "x"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await,
    )
    .await;
    assert_eq!((status, err.as_str()), (401, "invalid_client"));
    let (_, err) = error_of(
        token(
            &s,
            &[("grant_type", "password"), ("client_id", "rolegate-cli")],
        )
        .await,
    )
    .await;
    assert_eq!(err, "unsupported_grant_type");

    // Deny: back to the CLI with access_denied, no code.
    let res = b
        .get(authorize_url(&s, &challenge, REDIRECT, "rolegate-cli"))
        .send()
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    let res = b
        .post(format!("{}/oauth/authorize", s.app.address))
        .form(&[
            ("csrf", field(&html, "csrf")),
            ("request", field(&html, "request")),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    let to = location(&res);
    assert!(
        to.contains("error=access_denied") && !to.contains("code="),
        "{to}"
    );
}

async fn device_start(s: &OidcSetup, client: &str) -> Json {
    let res = Client::new()
        .post(format!("{}/oauth/device_authorization", s.app.address))
        .form(&[("client_id", client), ("device_name", "build-box")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn device_poll(s: &OidcSetup, device_code: &str, client: &str) -> Response {
    token(
        s,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", client),
        ],
    )
    .await
}

/// The person enters `code` at /device and clicks Approve (or Deny).
pub async fn approve_device(s: &OidcSetup, b: &Client, code: &str, decision: &str) -> Response {
    approve_device_at(&s.app.address, b, code, decision).await
}

/// As [`approve_device`], at the broker instance at `base` (several instances).
pub async fn approve_device_at(base: &str, b: &Client, code: &str, decision: &str) -> Response {
    let html = crate::helpers::page(b, format!("{base}/device?user_code={code}")).await;
    assert!(
        html.contains(&format!("value=\"{code}\"")),
        "pre-filled: {html}"
    );
    let res = b
        .post(format!("{base}/device"))
        .form(&[("csrf", field(&html, "csrf")), ("user_code", code)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("build-box") && html.contains("Only approve if you started"),
        "{html}"
    );
    b.post(format!("{base}/device/approve"))
        .form(&[
            ("csrf", field(&html, "csrf")),
            ("user_code", code),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_device_login_polls_politely_and_is_approved_by_a_click() {
    // The code must outlive the test's waits (1 s interval + 5 s slow_down, twice) with room
    // for a loaded machine: CLI_CONFIG's 8 s is for the expiry test.
    let s = spawn_with(SetupOptions {
        extra: CLI_CONFIG.replace(
            "device_code_lifetime = \"8s\"",
            "device_code_lifetime = \"60s\"",
        ),
        ..SetupOptions::default()
    })
    .await;
    let d = device_start(&s, "rolegate-cli").await;
    let code = d["user_code"].as_str().unwrap();
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    assert!(
        code.chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(d["device_code"].as_str().unwrap().len(), 43, "256 bits");
    assert!(
        d["verification_uri_complete"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/device?user_code={code}"))
    );
    let dc = d["device_code"].as_str().unwrap();

    let (_, err) = error_of(device_poll(&s, dc, "rolegate-cli").await).await;
    assert_eq!(err, "authorization_pending");
    let (_, err) = error_of(device_poll(&s, dc, "rolegate-cli").await).await;
    assert_eq!(err, "slow_down", "polled again at once");
    let (_, err) = error_of(device_poll(&s, dc, "other-cli").await).await;
    assert_eq!(err, "invalid_grant", "another client's device_code");

    let (b, _) = signed_in_as(&s, "alice", "alice-pw").await;
    // The lowercase code without its dash is the same code.
    let typed = code.replace('-', "").to_lowercase();
    let res = approve_device(&s, &b, &typed, "approve").await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(std::time::Duration::from_secs(7)).await; // 1 s interval + 5 s slow_down
    let res = device_poll(&s, dc, "rolegate-cli").await;
    assert_eq!(res.status(), 200);
    let tokens: Json = res.json().await.unwrap();
    let me = api(
        &s,
        tokens["access_token"].as_str().unwrap(),
        "GET",
        "/api/v1/me",
    )
    .await;
    assert_eq!(me.status(), 200);
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let (_, err) = error_of(device_poll(&s, dc, "rolegate-cli").await).await;
    assert_eq!(err, "invalid_grant", "a device_code is redeemed once");
}

#[tokio::test]
async fn device_codes_expire_and_wrong_codes_lock_the_entry_out() {
    let s = broker().await;
    let d = device_start(&s, "rolegate-cli").await;
    let dc = d["device_code"].as_str().unwrap().to_owned();
    let (b, csrf) = signed_in_as(&s, "alice", "alice-pw").await;
    // Five wrong codes from this IP, then even the right one is refused for the window.
    for i in 0..5 {
        let res = b
            .post(format!("{}/device", s.app.address))
            .form(&[("csrf", csrf.as_str()), ("user_code", "BBBB-BBBB")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "wrong code {i}");
    }
    let res = b
        .post(format!("{}/device", s.app.address))
        .form(&[
            ("csrf", csrf.as_str()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // Nobody approved it: after its lifetime (8 s here) the CLI hears expired_token.
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    let (_, err) = error_of(device_poll(&s, &dc, "rolegate-cli").await).await;
    assert_eq!(err, "expired_token");
}

async fn refresh(s: &OidcSetup, rt: &str) -> Response {
    token(
        s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", "rolegate-cli"),
        ],
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_rotate_tolerate_honest_races_and_revoke_on_reuse() {
    let s = broker().await;
    let first = logged_in_cli(&s).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();

    // Eight processes refresh the same token at once: all get the same successor.
    let results = futures_util::future::join_all((0..8).map(|_| refresh(&s, &rt1))).await;
    let mut pairs = Vec::new();
    for r in results {
        assert_eq!(r.status(), 200);
        let j: Json = r.json().await.unwrap();
        pairs.push((j["access_token"].clone(), j["refresh_token"].clone()));
    }
    assert!(
        pairs.windows(2).all(|w| w[0] == w[1]),
        "one successor for all"
    );
    let rt2 = pairs[0].1.as_str().unwrap().to_owned();
    assert_ne!(rt2, rt1);
    let at2 = pairs[0].0.as_str().unwrap().to_owned();
    assert_eq!(api(&s, &at2, "GET", "/api/v1/me").await.status(), 200);

    // After the reuse interval (2 s here), the old token is reuse: the whole login is
    // revoked, so the legitimate holder's newer tokens stop working too.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (_, err) = error_of(refresh(&s, &rt1).await).await;
    assert_eq!(err, "invalid_grant");
    let (_, err) = error_of(refresh(&s, &rt2).await).await;
    assert_eq!(err, "invalid_grant", "the family is revoked");
    assert_eq!(api(&s, &at2, "GET", "/api/v1/me").await.status(), 401);
    let revoked = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "cli_logout" && r["reason"] == "refresh token reused")
        .expect("the revocation is audited");
    let login = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "cli_login")
        .unwrap();
    assert!(login["subject"].as_str().is_some_and(|x| !x.is_empty()));
    assert_eq!(
        revoked["subject"], login["subject"],
        "it names whose login went"
    );
    assert_eq!(revoked["idp"], login["idp"]);
}

#[tokio::test]
async fn revoked_or_unknown_tokens_and_ungranted_roles_are_refused_at_the_api() {
    let s = broker().await;
    let t = logged_in_cli(&s).await;
    let at = t["access_token"].as_str().unwrap();
    let res = api(&s, "rga_not-a-token", "GET", "/api/v1/me").await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let res = Client::new()
        .get(format!("{}/api/v1/me", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no token");

    // A role the rules do not grant: 403, audited, nothing issued.
    let res = api(&s, at, "POST", "/api/v1/roles/no-such-role/credentials").await;
    assert_eq!(res.status(), 403);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");
    assert!(
        s.audit_records()
            .iter()
            .any(|r| r["outcome"] == "refused" && r["client_path"] == "cli")
    );
    // A duration over the grant.
    let res = Client::new()
        .post(format!(
            "{}/api/v1/roles/prod-admin/credentials",
            s.app.address
        ))
        .bearer_auth(at)
        .json(&json!({ "duration": "9h" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Logout: revoking the refresh token ends the login; the access token dies with it.
    let res = Client::new()
        .post(format!("{}/oauth/revoke", s.app.address))
        .form(&[
            ("token", t["refresh_token"].as_str().unwrap()),
            ("client_id", "rolegate-cli"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(api(&s, at, "GET", "/api/v1/me").await.status(), 401);
    let (_, err) = error_of(refresh(&s, t["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(err, "invalid_grant");
}

#[tokio::test]
async fn an_expired_access_token_and_a_role_not_granted_are_refused_at_the_api() {
    let s = spawn_with(SetupOptions {
        extra: format!("{CLI_CONFIG}access_token_lifetime = \"5s\"\n"),
        ..SetupOptions::default()
    })
    .await;
    // bob is a developer: dev-admin only. The rules are evaluated at each request.
    let t = logged_in_as(&s, "bob", "bob-pw").await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(t["expires_in"], 5);
    let res = api(&s, at, "POST", "/api/v1/roles/prod-admin/credentials").await;
    assert_eq!(res.status(), 403);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["error_description"], "you may not use this role");
    let refused = s
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["outcome"] == "refused")
        .unwrap();
    assert_eq!(refused["role"], "prod-admin");
    assert_eq!(refused["subject"], "bob");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("not_granted"),
        "{refused}"
    );
    assert_eq!(api(&s, at, "GET", "/api/v1/me").await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(
        api(&s, at, "GET", "/api/v1/me").await.status(),
        401,
        "expired"
    );
    // The refresh token still works and gives a fresh access token.
    let fresh: Json = refresh(&s, t["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        api(
            &s,
            fresh["access_token"].as_str().unwrap(),
            "GET",
            "/api/v1/me"
        )
        .await
        .status(),
        200
    );
}
