//! Checks that only an attacker's request reaches, each with the test that fails when the
//! check is removed (found by removing them one by one): subject tokens signed with the
//! IdP's own key but carrying what RFC 8725 says to refuse, an oversized DPoP proof, an
//! authorization request without a state or with a parameter twice, a code redeemed at
//! another redirect URI, too many redirect URIs at registration, a confidential app's
//! secret, and device-login decisions made twice at the same moment.

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::{
    CLI_CONFIG, REDIRECT, approve_loopback, authorize_url, error_of, pkce, token,
};
use crate::exchange::{APPS, now};
use crate::helpers::{OidcSetup, SetupOptions, spawn_with};

const MORE_APPS: &str = r#"
[[app]]
id = "at-app"
idp = "corp"
audience = "app"
subject_token_types = ["access_token"]
subject_rate_limit_per_minute = 1000

[[app]]
id = "per-person"
idp = "corp"
audience = "app"
rate_limit_per_minute = 100
subject_rate_limit_per_minute = 2
max_exchanges_per_token = 10

[[app]]
id = "backend"
idp = "corp"
audience = "app"
client_secret = { file = "../testbed/apps/confidential-secret" }
subject_rate_limit_per_minute = 1000
"#;

async fn broker() -> OidcSetup {
    spawn_with(SetupOptions {
        extra: format!("{CLI_CONFIG}{APPS}{MORE_APPS}"),
        ..SetupOptions::default()
    })
    .await
}

/// A token signed with the test OP's own key, with this header and these claims.
fn signed_by_the_idp(s: &OidcSetup, header: Json, claims: Json) -> String {
    let out = std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/testbed/op/sign.mjs"
        ))
        .arg(&s.op.jwks_file)
        .arg(json!({ "header": header, "claims": claims }).to_string())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn id_claims(s: &OidcSetup) -> Json {
    json!({
        "iss": s.op.issuer(), "aud": "app", "sub": "alice", "email": "alice@example.com",
        "groups": ["aws-admins"], "iat": now(), "exp": now() + 300,
    })
}

async fn exchange_as(
    s: &OidcSetup,
    app: &str,
    token: &str,
    token_type: &str,
    extra: &[(&str, &str)],
) -> (u16, Json) {
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("client_id", app),
        ("subject_token", token),
        ("subject_token_type", token_type),
        ("audience", "prod-admin"),
    ];
    form.extend_from_slice(extra);
    let res = Client::new()
        .post(format!("{}/oauth/token", s.app.address))
        .form(&form)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

const ID: &str = "urn:ietf:params:oauth:token-type:id_token";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

/// What RFC 8725 says to refuse, in tokens the IdP's own key signed: only rolegate's
/// checks stand between them and credentials.
#[tokio::test]
async fn tokens_signed_by_the_idp_are_still_refused_for_what_they_carry() {
    let s = broker().await;
    // The signer works: a plain token signed this way is accepted.
    let good = signed_by_the_idp(&s, json!({}), id_claims(&s));
    let (status, body) = exchange_as(&s, "mobile", &good, ID, &[]).await;
    assert_eq!(status, 200, "{body}");

    let mut cases: Vec<(&str, String, &str, &str)> = Vec::new();
    for (name, header) in [
        ("jku", json!({ "jku": "https://attacker.example/jwks" })),
        ("x5u", json!({ "x5u": "https://attacker.example/cert" })),
        ("x5c", json!({ "x5c": ["MIIB"] })),
        (
            "jwk",
            json!({ "jwk": { "kty": "RSA", "n": "AQAB", "e": "AQAB" } }),
        ),
        ("crit", json!({ "crit": ["exp-ext"], "exp-ext": 1 })),
        ("RS512 (not the IdP's algorithm)", json!({ "alg": "RS512" })),
        ("typ at+jwt as an ID token", json!({ "typ": "at+jwt" })),
    ] {
        cases.push((
            name,
            signed_by_the_idp(&s, header, id_claims(&s)),
            "mobile",
            ID,
        ));
    }
    let mut other_party = id_claims(&s);
    other_party["azp"] = json!("someone-else");
    cases.push((
        "azp of another party",
        signed_by_the_idp(&s, json!({}), other_party),
        "mobile",
        ID,
    ));
    let mut audiences = id_claims(&s);
    audiences["aud"] = json!(["app", "another-app"]);
    cases.push((
        "several audiences, no azp",
        signed_by_the_idp(&s, json!({}), audiences),
        "mobile",
        ID,
    ));
    cases.push((
        "a typ JWT as an access token",
        signed_by_the_idp(&s, json!({}), id_claims(&s)),
        "at-app",
        AT,
    ));
    let before = s
        .audit_records()
        .iter()
        .filter(|r| r["event"] == "issuance")
        .count();
    for (name, token, app, kind) in cases {
        let (status, body) = exchange_as(&s, app, &token, kind, &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{name}: {body}"
        );
    }
    let after = s
        .audit_records()
        .iter()
        .filter(|r| r["event"] == "issuance")
        .count();
    assert_eq!(before, after, "nothing was issued");
    // The control for the access-token app: typ at+jwt is what it takes.
    let at = signed_by_the_idp(&s, json!({ "typ": "at+jwt" }), id_claims(&s));
    assert_eq!(exchange_as(&s, "at-app", &at, AT, &[]).await.0, 200);
}

/// The IdP's algorithm allow-list holds even for a key published for the algorithm used:
/// an IdP configured for PS256 only gets its RS256 tokens refused.
#[tokio::test]
async fn an_algorithm_the_idp_is_not_configured_for_is_refused() {
    let s = spawn_with(SetupOptions {
        extra: format!("{CLI_CONFIG}{APPS}{MORE_APPS}"),
        corp_extra: "allowed_algorithms = [\"PS256\"]\n".into(),
        ..SetupOptions::default()
    })
    .await;
    let token = signed_by_the_idp(&s, json!({}), id_claims(&s));
    let (status, body) = exchange_as(&s, "mobile", &token, ID, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or("")
            .contains("not allowed for this IdP"),
        "{body}"
    );
}

/// A confidential app's secret: required, and the right one.
#[tokio::test]
async fn a_confidential_app_is_refused_without_its_secret() {
    let s = broker().await;
    let token = || signed_by_the_idp(&s, json!({}), id_claims(&s));
    let (status, body) = exchange_as(&s, "backend", &token(), ID, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = exchange_as(
        &s,
        "backend",
        &token(),
        ID,
        &[("client_secret", "confidential-app-test-secret-WRONG")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = exchange_as(
        &s,
        "backend",
        &token(),
        ID,
        &[("client_secret", "confidential-app-test-secret-0123456789")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A DPoP proof is refused when larger than 8 KiB, even when valid otherwise.
#[tokio::test]
async fn an_oversized_dpop_proof_is_refused() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let s = broker().await;
    let key = rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Es256).unwrap();
    let url = format!("{}/oauth/token", s.app.address);
    let proof = |pad: usize| {
        let k = rolegate::keys::SigningKey::from_pem(&key).unwrap();
        let mut jwk = k.jwk.clone();
        for drop in ["kid", "alg", "use"] {
            jwk.as_object_mut().unwrap().remove(drop);
        }
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(serde_json::from_value(jwk).unwrap());
        let c = json!({ "jti": format!("{:x}", rand::random::<u128>()), "htm": "POST", "htu": url, "iat": now(), "pad": "x".repeat(pad) });
        jsonwebtoken::encode(&h, &c, &EncodingKey::from_ec_pem(key.as_bytes()).unwrap()).unwrap()
    };
    let post = |p: String| {
        let token = signed_by_the_idp(&s, json!({}), id_claims(&s));
        let url = url.clone();
        async move {
            let res = Client::new()
                .post(url)
                .header("DPoP", p)
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("client_id", "dpop-app"),
                    ("subject_token", token.as_str()),
                    ("subject_token_type", ID),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                ])
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.json::<Json>().await.unwrap_or(Json::Null),
            )
        }
    };
    let (status, body) = post(proof(100)).await;
    assert_eq!(status, 200, "a proof of ordinary size: {body}");
    let (status, body) = post(proof(9000)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("too large"),
        "{body}"
    );
}

/// The loopback authorization request needs a state, and each parameter once; a code is
/// redeemed only at the redirect URI it was issued for.
#[tokio::test]
async fn authorization_requests_and_codes_keep_to_their_parameters() {
    let s = broker().await;
    let browser = crate::lifecycle::signed_in(&s, "alice").await;
    let (_, challenge) = pkce();
    let page = |url: String| {
        let b = browser.clone();
        async move {
            let res = b.get(url).send().await.unwrap();
            (
                res.status().as_u16(),
                res.headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_owned()),
                res.text().await.unwrap_or_default(),
            )
        }
    };
    let base = authorize_url(&s, &challenge, REDIRECT, "rolegate-cli");
    // Each refused, as a page or back at the client with invalid_request.
    for (what, url) in [
        ("no state", base.replace("&state=st-123", "")),
        ("an empty state", base.replace("&state=st-123", "&state=")),
        ("state twice", format!("{base}&state=other")),
        (
            "a parameter twice",
            format!("{base}&code_challenge=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
    ] {
        let (status, location, body) = page(url).await;
        assert!(
            status == 400
                || location
                    .as_deref()
                    .is_some_and(|l| l.contains("error=invalid_request")),
            "{what}: {status} {location:?} {body}"
        );
    }
    // The client or the redirect URI twice: which one is meant is unknown, so nothing goes
    // back to either (RFC 6749 §4.1.2.1): a page.
    for twice in [
        format!("{base}&redirect_uri=http%3A%2F%2F127.0.0.1%3A45679%2Fcallback"),
        format!("{base}&client_id=rolegate-cli"),
    ] {
        let (status, location, body) = page(twice.clone()).await;
        assert_eq!((status, location), (400, None), "{twice}");
        assert!(body.contains("more than once"), "{body}");
    }

    // A code redeemed at another redirect URI than it was issued for.
    let (verifier, challenge) = pkce();
    let code = approve_loopback(&s, &browser, &challenge).await;
    let res = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "rolegate-cli"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:45679/callback"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let (status, error) = error_of(res).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"));
}

/// RegisterClient (the SSO OIDC API) takes at most ten redirect URIs.
#[tokio::test]
async fn a_client_registration_takes_at_most_ten_redirect_uris() {
    let s = broker().await;
    let uris: Vec<String> = (0..11)
        .map(|i| format!("http://127.0.0.1:{}/oauth/callback", 40000 + i))
        .collect();
    let register = |n: usize| {
        Client::new()
            .post(format!("{}/sso-oidc/client/register", s.app.address))
            .json(&json!({
                "clientName": "many", "clientType": "public",
                "grantTypes": ["authorization_code", "refresh_token"],
                "redirectUris": &uris[..n], "issuerUrl": s.app.address,
            }))
            .send()
    };
    assert_eq!(register(10).await.unwrap().status(), 200);
    let res = register(11).await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("redirect"));
}

/// Two decisions on one device login at the same moment (approve and deny from two
/// tabs): exactly one is taken, every time.
#[tokio::test]
async fn a_device_login_is_decided_once_even_at_the_same_moment() {
    let s = broker().await;
    let browser = crate::lifecycle::signed_in(&s, "alice").await;
    for round in 0..6 {
        let start: Json = Client::new()
            .post(format!("{}/oauth/device_authorization", s.app.address))
            .form(&[("client_id", "rolegate-cli")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = start["user_code"].as_str().unwrap().to_owned();
        let html = crate::helpers::page(
            &browser,
            format!("{}/device?user_code={code}", s.app.address),
        )
        .await;
        let res = browser
            .post(format!("{}/device", s.app.address))
            .form(&[
                ("csrf", crate::cli_login::field(&html, "csrf")),
                ("user_code", code.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let html = res.text().await.unwrap();
        let csrf = crate::cli_login::field(&html, "csrf").to_owned();
        let decide = |d: &'static str| {
            browser
                .post(format!("{}/device/approve", s.app.address))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("user_code", code.as_str()),
                    ("decision", d),
                ])
                .send()
        };
        // Eight at once, so several pass the user-code lookup before the first decision
        // removes the code: only the decision marker keeps it to one.
        let decisions = (0..8).map(|i| decide(if i % 2 == 0 { "approve" } else { "deny" }));
        let ok = futures_util::future::join_all(decisions)
            .await
            .into_iter()
            .filter(|r| r.as_ref().unwrap().status().as_u16() == 200)
            .count();
        assert_eq!(ok, 1, "round {round}: one decision");
    }
}

/// An app's exchanges are also limited per person: past it, 429 naming the person's limit
/// (the app's own limit is far from reached).
#[tokio::test]
async fn exchanges_are_limited_per_person_too() {
    let s = broker().await;
    let token = signed_by_the_idp(&s, json!({}), id_claims(&s));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(exchange_as(&s, "per-person", &token, ID, &[]).await);
    }
    assert_eq!(statuses[0].0, 200, "{:?}", statuses[0].1);
    assert_eq!(statuses[1].0, 200);
    assert_eq!(statuses[2].0, 429, "{:?}", statuses[2].1);
    assert!(
        statuses[2].1["error_description"]
            .as_str()
            .unwrap()
            .contains("person")
    );
}

/// The JSON API takes a body only as JSON: the same JSON sent as text/plain (what a page
/// could send without a preflight) is refused, and nothing is issued.
#[tokio::test]
async fn the_json_api_refuses_a_body_that_is_not_declared_json() {
    let s = broker().await;
    let t = crate::cli_login::logged_in_cli(&s).await;
    let token = t["access_token"].as_str().unwrap();
    let send = |content_type: &'static str| {
        Client::new()
            .post(format!(
                "{}/api/v1/roles/prod-admin/credentials",
                s.app.address
            ))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(r#"{"duration": "1h"}"#)
            .send()
    };
    let res = send("text/plain").await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("must be application/json"),
        "{body}"
    );
    assert_eq!(send("application/json").await.unwrap().status(), 200);
}

/// The SSO OIDC API registers public clients only (what the AWS SDKs register): a
/// confidential one is refused with the AWS error the SDKs read.
#[tokio::test]
async fn only_public_clients_register_at_the_sso_oidc_api() {
    let s = spawn_with(SetupOptions {
        extra: crate::sso::sso_config("10m", "1h"),
        ..SetupOptions::default()
    })
    .await;
    let register = |client_type: &'static str| {
        Client::new()
            .post(format!("{}/sso-oidc/client/register", s.app.address))
            .json(&json!({ "clientName": "sdk", "clientType": client_type }))
            .send()
    };
    let res = register("confidential").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.headers()["x-amzn-ErrorType"],
        "InvalidClientMetadataException"
    );
    let body: Json = res.json().await.unwrap();
    assert!(body["clientId"].is_null(), "{body}");
    assert_eq!(register("public").await.unwrap().status(), 200);
}
