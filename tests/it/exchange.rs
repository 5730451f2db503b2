//! Token exchange (RFC 8693) for mobile and single-page apps, against the real OpenID
//! Provider: the app signs the person in itself (code + PKCE as the public client "app")
//! and exchanges the ID token at rolegate — for AWS credentials that boto3 uses, or for a
//! broker access token (DPoP-bound for apps that require it). Hostile subject tokens are
//! forged with `jsonwebtoken` and keys of the test's own, or served by the real OP with one
//! claim changed; each is refused with an RFC-style error, an audit record, and no STS call.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Response};
use serde_json::{Value as Json, json};

use crate::helpers::{OidcSetup, SetupOptions, VENV, moto_url, spawn_with};
use crate::presented_tokens::app_id_token;

pub const APPS: &str = r#"
[[app]]
id = "mobile"
idp = "corp"
audience = "app"
subject_rate_limit_per_minute = 1000

[[app]]
id = "dpop-app"
idp = "corp"
audience = "app"
dpop = "required"
max_exchanges_per_token = 5
subject_rate_limit_per_minute = 1000

[[app]]
id = "limited"
idp = "corp"
audience = "app"
rate_limit_per_minute = 2
max_exchanges_per_token = 10
"#;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const AWS: &str = "urn:rolegate:params:oauth:token-type:aws-credentials";
pub const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

pub async fn broker() -> OidcSetup {
    spawn_with(SetupOptions {
        extra: APPS.into(),
        ..SetupOptions::default()
    })
    .await
}

pub async fn exchange(s: &OidcSetup, form: &[(&str, &str)], dpop: Option<&str>) -> Response {
    let mut req = Client::new()
        .post(format!("{}/oauth/token", s.app.address))
        .form(form);
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

pub fn form<'a>(
    app: &'a str,
    token: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("grant_type", GRANT),
        ("client_id", app),
        ("subject_token", token),
        ("subject_token_type", ID_TOKEN),
    ];
    f.extend_from_slice(extra);
    f
}

pub async fn error_of(res: Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let j: Json = res.json().await.unwrap();
    (
        status,
        j["error"].as_str().unwrap_or_default().to_owned(),
        j["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

pub fn issuances(s: &OidcSetup) -> usize {
    s.audit_records()
        .iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] != "refused")
        .count()
}

#[tokio::test]
async fn an_apps_id_token_becomes_aws_credentials_that_boto3_uses() {
    let s = broker().await;
    let token = app_id_token(&s.op, "alice", "alice-pw").await;
    let res = exchange(
        &s,
        &form(
            "mobile",
            &token,
            &[("audience", "prod-admin"), ("requested_token_type", AWS)],
        ),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let j: Json = res.json().await.unwrap();
    assert_eq!(j["issued_token_type"], AWS);
    assert_eq!(j["token_type"], "N_A");
    assert!(j["expires_in"].as_u64().unwrap() > 3000);
    let c = &j["aws_credentials"];
    assert_eq!(j["access_token"], c["SessionToken"]);

    // boto3 with exactly these credentials: the assumed role, the session name from the rules.
    let out = std::process::Command::new(format!("{VENV}/bin/python"))
        .args([
            "-c",
            "import boto3,sys; print(boto3.client('sts', region_name='us-east-1', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], aws_session_token=sys.argv[4]).get_caller_identity()['Arn'])",
            moto_url(),
            c["AccessKeyId"].as_str().unwrap(),
            c["SecretAccessKey"].as_str().unwrap(),
            c["SessionToken"].as_str().unwrap(),
        ])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"
    );
    let issued = s
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "issuance")
        .unwrap();
    assert_eq!(issued["client_path"], "mobile");
    assert_eq!(issued["idp"], "corp");

    // The role by ARN; bob (one role) needs no audience; alice (three) must name one.
    let token = app_id_token(&s.op, "alice", "alice-pw").await;
    let res = exchange(
        &s,
        &form(
            "mobile",
            &token,
            &[("audience", "arn:aws:iam::111122223333:role/ReadOnly")],
        ),
        None,
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let token = app_id_token(&s.op, "bob", "bob-pw").await;
    let j: Json = exchange(&s, &form("mobile", &token, &[]), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["role"], "dev-admin");
    let token = app_id_token(&s.op, "alice", "alice-pw").await;
    let (status, err, desc) =
        error_of(exchange(&s, &form("mobile", &token, &[]), None).await).await;
    assert_eq!((status, err.as_str()), (400, "invalid_target"));
    assert!(
        !desc.contains("prod-admin") && !desc.contains("dev-admin"),
        "{desc}"
    );

    // A broker access token instead, for the JSON API.
    let token = app_id_token(&s.op, "alice", "alice-pw").await;
    let j: Json = exchange(
        &s,
        &form("mobile", &token, &[("requested_token_type", ACCESS)]),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(j["issued_token_type"], ACCESS);
    assert_eq!(j["token_type"], "Bearer");
    let roles = Client::new()
        .get(format!("{}/api/v1/roles", s.app.address))
        .bearer_auth(j["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(roles.status(), 200);
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"rolegate_token_exchanges_total{app="mobile",outcome="success"}"#),
        "{metrics}"
    );
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT signed with a key of the test's own (never the IdP's).
fn forged(s: &OidcSetup, header: Header, claims: Json) -> String {
    let pem = rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Rs256).unwrap();
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let _ = s;
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn claims(s: &OidcSetup) -> Json {
    json!({
        "iss": s.op.issuer(), "aud": "app", "sub": "alice", "email": "alice@example.com",
        "groups": ["aws-admins"], "iat": now(), "exp": now() + 300,
    })
}

#[tokio::test]
async fn hostile_subject_tokens_are_refused_audited_and_reach_no_sts() {
    use base64::Engine as _;
    let s = broker().await;
    let b64 = |v: &Json| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut cases: Vec<(String, String, &str)> = Vec::new();
    // alg none.
    cases.push((
        "alg none".into(),
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims(&s))
        ),
        "invalid_request",
    ));
    // HS256 keyed with the IdP's public key (its JWKS): symmetric algorithms are refused.
    let jwks = reqwest::get(format!("{}/jwks", s.op.issuer()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&s),
        &EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    cases.push((
        "HS256 with the IdP's public key".into(),
        hs,
        "invalid_request",
    ));
    // A key the IdP does not publish.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("not-a-kid".into());
    cases.push((
        "unknown kid".into(),
        forged(&s, h, claims(&s)),
        "invalid_request",
    ));
    for field in ["jku", "x5u", "jwk"] {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("key-1".into());
        match field {
            "jku" => h.jku = Some("http://127.0.0.1:9/jwks".into()),
            "x5u" => h.x5u = Some("http://127.0.0.1:9/cert".into()),
            _ => {
                let pem =
                    rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Es256).unwrap();
                let k = rolegate::keys::SigningKey::from_pem(&pem).unwrap();
                h.jwk = Some(serde_json::from_value(k.jwk.clone()).unwrap());
            }
        }
        cases.push((
            format!("{field} header"),
            forged(&s, h, claims(&s)),
            "invalid_request",
        ));
    }
    // A broker-issued token presented as a subject token.
    cases.push((
        "a broker token".into(),
        "rga_notajwt".into(),
        "invalid_request",
    ));
    // RFC 8693 §2.2.2: an invalid subject token is `invalid_request`.
    for (what, token, code) in cases {
        let before = issuances(&s);
        let (status, err, desc) = error_of(
            exchange(
                &s,
                &form("mobile", &token, &[("audience", "prod-admin")]),
                None,
            )
            .await,
        )
        .await;
        assert_eq!((status, err.as_str()), (400, code), "{what}: {desc}");
        assert_eq!(issuances(&s), before, "{what}: no STS call");
        let refusal = s
            .audit_records()
            .into_iter()
            .rev()
            .find(|r| r["event"] == "token_exchange")
            .unwrap();
        assert_eq!(refusal["outcome"], "refused", "{what}");
        assert_eq!(refusal["app"], "mobile");
    }

    // Validly signed by the real IdP, with one claim changed.
    let n = now();
    let tampered = [
        (
            "issued to another app",
            json!({ "claims": { "aud": "broker" } }),
            "another client",
        ),
        (
            "expired",
            json!({ "claims": { "exp": n - 600, "iat": n - 700 } }),
            "expired",
        ),
        (
            "nbf in the future",
            json!({ "claims": { "nbf": n + 3600 } }),
            "not valid yet",
        ),
        (
            "iat in the future",
            json!({ "claims": { "iat": n + 3600, "exp": n + 7200 } }),
            "future",
        ),
        (
            "iat too old",
            json!({ "claims": { "iat": n - 7200, "exp": n + 600 } }),
            "more than 1h ago",
        ),
        (
            "another issuer",
            json!({ "claims": { "iss": "https://evil.example.com" } }),
            "another issuer",
        ),
        (
            "an access token as an ID token",
            json!({ "header": { "typ": "at+jwt" } }),
            "access token",
        ),
    ];
    for (what, t, reason) in tampered {
        crate::oidc::tamper(&s, t).await;
        let token = app_id_token(&s.op, "alice", "alice-pw").await;
        let before = issuances(&s);
        let (status, err, desc) = error_of(
            exchange(
                &s,
                &form("mobile", &token, &[("audience", "prod-admin")]),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, err.as_str()),
            (400, "invalid_request"),
            "{what}: {desc}"
        );
        assert!(desc.contains(reason), "{what}: {desc}");
        assert_eq!(issuances(&s), before, "{what}: no STS call");
    }

    // Replay beyond the limit (1 for "mobile").
    let token = app_id_token(&s.op, "alice", "alice-pw").await;
    assert_eq!(
        exchange(
            &s,
            &form("mobile", &token, &[("audience", "prod-admin")]),
            None
        )
        .await
        .status(),
        200
    );
    let (_, err, desc) = error_of(
        exchange(
            &s,
            &form("mobile", &token, &[("audience", "prod-admin")]),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(err, "invalid_grant");
    assert!(desc.contains("already exchanged"), "{desc}");

    // An app that is not registered; a role the rules do not grant.
    let token = app_id_token(&s.op, "bob", "bob-pw").await;
    let (status, err, _) = error_of(exchange(&s, &form("nobody", &token, &[]), None).await).await;
    assert_eq!((status, err.as_str()), (401, "invalid_client"));
    let before = issuances(&s);
    let (status, err, desc) = error_of(
        exchange(
            &s,
            &form("mobile", &token, &[("audience", "prod-admin")]),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, err.as_str()), (400, "invalid_target"));
    assert!(
        !desc.contains("dev-admin"),
        "nothing about the person's other roles: {desc}"
    );
    assert_eq!(issuances(&s), before);
}

#[tokio::test]
async fn an_app_over_its_rate_limit_gets_429_with_retry_after() {
    let s = broker().await;
    let token = app_id_token(&s.op, "bob", "bob-pw").await;
    for _ in 0..2 {
        assert_eq!(
            exchange(&s, &form("limited", &token, &[]), None)
                .await
                .status(),
            200
        );
    }
    let res = exchange(&s, &form("limited", &token, &[]), None).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let (_, err, _) = error_of(res).await;
    assert_eq!(err, "rate_limited");
}

/// A DPoP proof (RFC 9449) for `method url`, signed with `key` (PKCS#8 PEM, ES256).
pub fn dpop(key_pem: &str, method: &str, url: &str, access_token: Option<&str>) -> String {
    use base64::Engine as _;
    let k = rolegate::keys::SigningKey::from_pem(key_pem).unwrap();
    let mut jwk = k.jwk.clone();
    for drop in ["kid", "alg", "use"] {
        jwk.as_object_mut().unwrap().remove(drop);
    }
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(serde_json::from_value(jwk).unwrap());
    let mut c = json!({ "jti": format!("{:x}", rand::random::<u128>()), "htm": method, "htu": url, "iat": now() });
    if let Some(t) = access_token {
        c["ath"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes()).as_ref())
            .into();
    }
    jsonwebtoken::encode(
        &h,
        &c,
        &EncodingKey::from_ec_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn dpop_bound_tokens_work_only_with_their_key() {
    let s = broker().await;
    let key = rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Es256).unwrap();
    let other = rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Es256).unwrap();
    let token_url = format!("{}/oauth/token", s.app.address);
    let api_url = format!("{}/api/v1/me", s.app.address);
    let subject = app_id_token(&s.op, "alice", "alice-pw").await;
    let f = form("dpop-app", &subject, &[("requested_token_type", ACCESS)]);

    // The app must prove possession at the token endpoint.
    let (_, err, _) = error_of(exchange(&s, &f, None).await).await;
    assert_eq!(err, "invalid_dpop_proof");
    let (_, err, _) =
        error_of(exchange(&s, &f, Some(&dpop(&key, "GET", &token_url, None))).await).await;
    assert_eq!(err, "invalid_dpop_proof", "wrong htm");
    let res = exchange(&s, &f, Some(&dpop(&key, "POST", &token_url, None))).await;
    assert_eq!(res.status(), 200);
    let j: Json = res.json().await.unwrap();
    assert_eq!(j["token_type"], "DPoP");
    let at = j["access_token"].as_str().unwrap().to_owned();

    let call = |auth: String, proof: Option<String>| {
        let mut r = Client::new().get(&api_url).header("Authorization", auth);
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send()
    };
    // With its key: works.
    let good = dpop(&key, "GET", &api_url, Some(&at));
    let res = call(format!("DPoP {at}"), Some(good.clone()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // Replayed proof, no proof, as a plain bearer, another key, wrong htu or htm: refused.
    let refusals = [
        ("a replayed proof", format!("DPoP {at}"), Some(good)),
        ("no proof", format!("DPoP {at}"), None),
        (
            "as a bearer token",
            format!("Bearer {at}"),
            Some(dpop(&key, "GET", &api_url, Some(&at))),
        ),
        (
            "another key's proof",
            format!("DPoP {at}"),
            Some(dpop(&other, "GET", &api_url, Some(&at))),
        ),
        (
            "a wrong htu",
            format!("DPoP {at}"),
            Some(dpop(
                &key,
                "GET",
                &format!("{}/api/v1/roles", s.app.address),
                Some(&at),
            )),
        ),
        (
            "a wrong htm",
            format!("DPoP {at}"),
            Some(dpop(&key, "POST", &api_url, Some(&at))),
        ),
        (
            "a proof for another token",
            format!("DPoP {at}"),
            Some(dpop(&key, "GET", &api_url, Some("rga_other"))),
        ),
    ];
    for (what, auth, proof) in refusals {
        let res = call(auth, proof).await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
    }
}
