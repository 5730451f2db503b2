//! The AWS SSO OIDC API's authorization-code grant (RegisterClient with a loopback
//! redirect, `/sso-oidc/authorize` in real Chromium, CreateToken with PKCE) and the rate
//! limit on bearer-token requests, with boto3 and raw HTTP as the clients.

use std::time::Duration;

use serde_json::Value as Json;

use crate::cli_login::{api, logged_in_as};
use crate::helpers::{SetupOptions, spawn_with};
use crate::sso::{Machine, approve_in_chromium, issuances, roles_of, sso_broker, sso_config};

/// One HTTP request on a loopback port (the SDK's redirect listener): its request line.
fn one_redirect(listener: std::net::TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        let body = "Logged in";
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        line
    })
}

#[tokio::test]
async fn the_authorization_code_grant_with_pkce_and_a_registered_loopback_redirect() {
    let s = sso_broker("10m", "1h").await;
    let roles = roles_of(&s, "alice").await;
    let (verifier, challenge) = crate::cli_login::pkce();
    let broker = s.app.address.clone();
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = s2;
        let m = Machine::configured(&broker, &roles);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let redirect = format!(
            "http://127.0.0.1:{}/oauth/callback",
            listener.local_addr().unwrap().port()
        );
        // Registration refuses a redirect that is not loopback.
        let refused = m
            .command(&["register-code", &broker, "https://evil.example/cb"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("InvalidRedirectUriException"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let reg: Json = serde_json::from_str(&m.run(&["register-code", &broker, &redirect])).unwrap();
        assert_eq!(reg["authorizationEndpoint"], format!("{broker}/sso-oidc/authorize"));
        let reg_file = m.home.path().join("reg.json");
        std::fs::write(&reg_file, reg.to_string()).unwrap();
        let client_id = reg["clientId"].as_str().unwrap();
        let authorize = |redirect: &str| {
            format!(
                "{broker}/sso-oidc/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=st4te&code_challenge_method=S256&code_challenge={challenge}&scopes=sso%3Aaccount%3Aaccess",
                url_encode(redirect)
            )
        };
        // Another loopback port than the registered one: refused before any sign-in.
        let other = reqwest::blocking::get(authorize("http://127.0.0.1:1/oauth/callback")).unwrap();
        assert_eq!(other.status(), 400);
        assert!(other.text().unwrap().contains("not one the client registered"));

        let got = one_redirect(listener);
        let report = approve_in_chromium(&authorize(&redirect), "sso-code-approval", Some(&redirect));
        assert!(report["approval_text"].as_str().unwrap().contains("aws-cli-like"), "{report:#}");
        let line = got.join().unwrap();
        let query = line.split_whitespace().nth(1).unwrap().split_once('?').unwrap().1.to_owned();
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k} in {query}"))
                .to_owned()
        };
        assert_eq!(param("state"), "st4te");
        let code = param("code");
        let token = |verifier: &str| -> Json {
            serde_json::from_str(&m.run(&[
                "code-token",
                &broker,
                reg_file.to_str().unwrap(),
                &code,
                &redirect,
                verifier,
            ]))
            .unwrap()
        };
        let t = token(&verifier);
        let access = t["accessToken"].as_str().unwrap_or_else(|| panic!("{t}"));
        assert_eq!(
            m.run(&["call", "credentials", &broker, access, "prod-admin", "111122223333"]),
            "ok"
        );
        assert_eq!(token(&verifier)["error"], "InvalidGrantException", "a code is single-use");
        assert_eq!(issuances(&s).len(), 1);
    })
    .await
    .unwrap();
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bearer_requests_are_rate_limited_per_person_with_the_services_error() {
    let s = spawn_with(SetupOptions {
        extra: format!("{}requests_per_minute = 4\n", sso_config("10m", "1h")),
        ..SetupOptions::default()
    })
    .await;
    let bob = logged_in_as(&s, "bob", "bob-pw").await;
    let token = bob["access_token"].as_str().unwrap();
    let list = || async {
        reqwest::Client::new()
            .get(format!("{}/sso-portal/assignment/accounts", s.app.address))
            .header("x-amz-sso_bearer_token", token)
            .send()
            .await
            .unwrap()
    };
    // Stay inside one minute window: the limit counts per calendar minute.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 50 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    for _ in 0..4 {
        assert_eq!(list().await.status(), 200);
    }
    let res = list().await;
    assert_eq!(res.status(), 429);
    assert_eq!(
        res.headers()["x-amzn-ErrorType"],
        "TooManyRequestsException"
    );
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // The same person through the CLI's API (another token, same person): also limited.
    let again = logged_in_as(&s, "bob", "bob-pw").await;
    let res = api(
        &s,
        again["access_token"].as_str().unwrap(),
        "GET",
        "/api/v1/me",
    )
    .await;
    assert_eq!(res.status(), 429);
    // Another person is not.
    let alice = logged_in_as(&s, "alice", "alice-pw").await;
    let res = api(
        &s,
        alice["access_token"].as_str().unwrap(),
        "GET",
        "/api/v1/me",
    )
    .await;
    assert_eq!(res.status(), 200);
}
