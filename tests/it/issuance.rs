//! From role to access: the role picker's actions against the STS emulator (moto, through
//! the real aws-sdk-sts client), the fake federation endpoint, and the real AWS CLI.

use std::process::Command;

use reqwest::{Client, Response};
use serde_json::Value as Json;

use crate::helpers::{SetupOptions, VENV, aws_credentials, federation_url, moto_url, spawn_with};
use crate::oidc::{location, signed_in_as_alice};

pub async fn action(
    s: &crate::helpers::OidcSetup,
    client: &Client,
    role: &str,
    action: &str,
    form: &[(&str, &str)],
) -> Response {
    client
        .post(format!("{}/roles/{role}/{action}", s.app.address))
        .form(form)
        .send()
        .await
        .unwrap()
}

pub fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text of the element with this id on the credentials page.
pub fn field(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find('<').unwrap();
    unescape(&html[start..end])
}

pub struct PageCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

pub fn credentials_from_page(html: &str) -> PageCredentials {
    PageCredentials {
        access_key_id: field(html, "access-key-id"),
        secret_access_key: field(html, "secret-access-key"),
        session_token: field(html, "session-token"),
    }
}

/// `aws sts get-caller-identity` with the real AWS CLI and these credentials.
pub fn aws_caller_identity(c: &PageCredentials, endpoint: &str) -> Json {
    let out = Command::new(format!("{VENV}/bin/aws"))
        .args([
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            endpoint,
            "--output",
            "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", &c.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key)
        .env("AWS_SESSION_TOKEN", &c.session_token)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("the AWS CLI runs (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "aws failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn federation_events() -> Vec<Json> {
    reqwest::get(format!("{}/__test/events", federation_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn console_signs_the_person_into_the_console_through_the_federation_endpoint() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;

    let res = action(&s, &client, "prod-admin", "console", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let login = url::Url::parse(&location(&res)).unwrap();
    assert_eq!(
        format!("{}{}", login.origin().ascii_serialization(), login.path()),
        format!("{}/federation", federation_url())
    );
    let q: std::collections::HashMap<String, String> = login.query_pairs().into_owned().collect();
    assert_eq!(q["Action"], "login");
    assert_eq!(
        q["Issuer"],
        format!("{}/", s.app.address),
        "Issuer is the broker itself"
    );
    assert_eq!(
        q["Destination"],
        format!("{}/console/ec2/home", federation_url()),
        "the role's configured destination"
    );
    assert!(q["SigninToken"].len() > 20);

    let res = client.get(login.as_str()).send().await.unwrap();
    assert_eq!(
        res.status(),
        302,
        "the federation endpoint accepts the sign-in token"
    );
    let console = location(&res);
    let page = crate::helpers::page(&client, &console).await;
    assert!(
        page.contains("arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"),
        "{page}"
    );

    let events = federation_events().await;
    let got = events
        .iter()
        .find(|e| {
            e["action"] == "getSigninToken"
                && e["arn"]
                    .as_str()
                    .is_some_and(|a| a.ends_with("Admin/alice@example.com"))
        })
        .expect("getSigninToken was called with valid credentials");
    assert_eq!(
        got["method"], "POST",
        "credentials travel in a POST body, not a URL"
    );
    assert_eq!(
        got["session_duration"], "3600",
        "console session: min(1h configured, role max 1h)"
    );
}

#[tokio::test]
async fn cli_credentials_are_shown_in_every_form_and_the_aws_cli_accepts_them() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(&s, &client, "prod-admin", "credentials", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    for needle in [
        "export AWS_ACCESS_KEY_ID=",
        "export AWS_REGION=&#39;us-east-1&#39;",
        "export AWS_DEFAULT_REGION=&#39;us-east-1&#39;",
        "set -gx AWS_SECRET_ACCESS_KEY",
        "$Env:AWS_SESSION_TOKEN = ",
        "[rolegate-prod-admin]",
        "aws_session_token = ",
        "&#34;Version&#34;: 1",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(html.contains("left)"), "time left shown");
    let creds = credentials_from_page(&html);
    assert!(
        creds.access_key_id.starts_with("ASIA"),
        "{}",
        creds.access_key_id
    );
    let who = aws_caller_identity(&creds, moto_url());
    assert_eq!(
        who["Arn"],
        "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"
    );

    // The credential_process block is what `aws` accepts from a credential_process helper.
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("creds.json");
    std::fs::write(&json_path, field(&html, "block-credential-process")).unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile rg]\nregion = us-east-1\ncredential_process = cat {}\n",
            json_path.display()
        ),
    )
    .unwrap();
    let out = Command::new(format!("{VENV}/bin/aws"))
        .args([
            "--profile",
            "rg",
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            moto_url(),
            "--output",
            "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        who["Arn"]
            .as_str()
            .unwrap()
            .ends_with("assumed-role/Admin/alice@example.com")
    );
}

#[tokio::test]
async fn every_issuance_is_audited_once_without_any_secret() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let html = action(
        &s,
        &client,
        "prod-readonly",
        "credentials",
        &[("csrf", &csrf)],
    )
    .await
    .text()
    .await
    .unwrap();
    let creds = credentials_from_page(&html);
    let res = action(&s, &client, "prod-admin", "console", &[("csrf", &csrf)]).await;
    let signin_token = url::Url::parse(&location(&res))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "SigninToken")
        .unwrap()
        .1
        .into_owned();

    let records: Vec<Json> = s
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "issuance")
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    let cli = &records[0];
    assert_eq!(cli["outcome"], "success");
    assert_eq!(cli["role"], "prod-readonly");
    assert_eq!(cli["role_arn"], "arn:aws:iam::111122223333:role/ReadOnly");
    assert_eq!(cli["client_path"], "web_cli");
    assert_eq!(cli["sts_mode"], "assume_role");
    assert_eq!(cli["idp"], "corp");
    assert_eq!(cli["subject"], "alice");
    assert_eq!(cli["display_name"], "alice@example.com");
    assert_eq!(cli["rules"], serde_json::json!(["admins"]));
    assert_eq!(cli["session_name"], "alice@example.com");
    assert_eq!(cli["source_identity"], "alice@example.com");
    assert_eq!(
        cli["tags"],
        serde_json::json!({ "idp": "corp", "team": "platform" })
    );
    assert_eq!(cli["duration_seconds"], 14400);
    assert_eq!(cli["client_ip"], "127.0.0.1");
    assert!(cli["sts_request_id"].is_string(), "{cli}");
    assert_eq!(records[1]["client_path"], "web_console");

    let text = std::fs::read_to_string(s.audit_path()).unwrap();
    for secret in [
        &creds.secret_access_key,
        &creds.session_token,
        &signin_token,
        &creds.access_key_id,
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "the audit log holds a credential"
        );
    }
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"rolegate_issuances_total{role="prod-readonly",mode="assume_role",path="web_cli",outcome="success"} 1"#), "{metrics}");
    assert!(
        metrics.contains("rolegate_sts_call_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn web_identity_mode_issues_through_the_brokers_own_oidc_issuer() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("broker.pem");
    std::fs::write(
        &key,
        rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Es256).unwrap(),
    )
    .unwrap();
    let s = spawn_with(SetupOptions {
        aws_extra: "sts_mode = \"web_identity\"\n".into(),
        extra: format!(
            "\n[web_identity]\nkeys = [{{ file = \"{}\", active = true }}]\n",
            key.display()
        ),
        ..SetupOptions::default()
    })
    .await;
    let discovery: Json = s
        .app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], s.app.address);
    let jwks: Json = reqwest::get(discovery["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(&s, &client, "prod-admin", "credentials", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 200);
    let creds = credentials_from_page(&res.text().await.unwrap());
    let who = aws_caller_identity(&creds, moto_url());
    assert!(
        who["Arn"]
            .as_str()
            .unwrap()
            .contains(":assumed-role/Admin/alice@example.com"),
        "{who}"
    );
    let record = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "issuance")
        .unwrap();
    assert_eq!(record["sts_mode"], "web_identity");
    assert_eq!(record["outcome"], "success");

    let res = action(&s, &client, "prod-admin", "console", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 302, "console works in web_identity mode too");
}

#[tokio::test]
async fn web_identity_tokens_verify_against_the_published_jwks_across_a_key_rotation() {
    use rolegate::keys::{KeyAlgorithm, generate_pem};
    use rolegate::sts::{WebIdentitySigner, web_identity::TokenClaims};
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    std::fs::write(&old, generate_pem(KeyAlgorithm::Es256).unwrap()).unwrap();
    std::fs::write(&new, generate_pem(KeyAlgorithm::Rs256).unwrap()).unwrap();
    let config = |active_new: bool| {
        let extra = format!(
            "[web_identity]\naudience = \"sts.amazonaws.com\"\nkeys = [{{ file = \"{}\", active = {} }}, {{ file = \"{}\", active = {} }}]\n",
            old.display(),
            !active_new,
            new.display(),
            active_new
        );
        crate::helpers::config_from("store = \"memory\"", &extra)
    };
    let tags = rolegate::domain::SessionTags::new(
        vec![rolegate::domain::SessionTag::parse("team", "platform").unwrap()],
        vec!["team".into()],
    )
    .unwrap();
    let mint = |cfg: &rolegate::config::Config| {
        WebIdentitySigner::new(cfg.web_identity.as_ref().unwrap(), &cfg.server.public_url)
            .unwrap()
            .mint(&TokenClaims {
                subject: "corp:alice",
                tags: &tags,
                source_identity: None,
            })
            .unwrap()
    };
    let before = config(false);
    let issuer = before
        .server
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let old_token = mint(&before);
    let after = config(true);
    let new_token = mint(&after);

    let app = crate::helpers::spawn_app(after).await;
    let discovery: Json = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json")
    );
    // This config's public URL names port 0; fetch the JWKS from where the app listens.
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwks.keys.len(), 2, "old and new keys are both published");
    for (what, token) in [
        ("token signed before the rotation", &old_token),
        ("token signed after", &new_token),
    ] {
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .unwrap_or_else(|| panic!("{what}: kid not published"));
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&["sts.amazonaws.com"]);
        v.set_issuer(&[issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        let data = jsonwebtoken::decode::<Json>(
            token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let c = data.claims;
        assert_eq!(c["sub"], "corp:alice");
        assert!(
            c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap() <= 300,
            "at most 5 minutes"
        );
        assert_eq!(
            c["https://aws.amazon.com/tags"]["principal_tags"]["team"],
            serde_json::json!(["platform"])
        );
        assert_eq!(
            c["https://aws.amazon.com/tags"]["transitive_tag_keys"],
            serde_json::json!(["team"])
        );
    }
    assert_ne!(
        jsonwebtoken::decode_header(&old_token).unwrap().kid,
        jsonwebtoken::decode_header(&new_token).unwrap().kid
    );
}

#[tokio::test]
async fn sts_down_means_a_clear_error_page_an_audit_record_and_no_credentials() {
    let dead = crate::helpers::free_port();
    let s = spawn_with(SetupOptions {
        sts_endpoint: Some(format!("http://127.0.0.1:{dead}")),
        aws_extra: "sts_timeout = \"3s\"\n".into(),
        ..SetupOptions::default()
    })
    .await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(&s, &client, "prod-admin", "credentials", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 503);
    let html = res.text().await.unwrap();
    assert!(html.contains("AWS STS could not be reached"), "{html}");
    assert!(
        !html.contains("access-key-id"),
        "no credentials on the page"
    );
    let record = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "issuance")
        .expect("audited");
    assert_eq!(record["outcome"], "failure");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("sts_unreachable"),
        "{record}"
    );
    let res = action(&s, &client, "prod-admin", "console", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 503, "console fails the same way");
}

#[tokio::test]
async fn a_session_longer_than_the_role_allows_is_refused_with_the_maximum() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(
        &s,
        &client,
        "prod-admin",
        "credentials",
        &[("csrf", &csrf), ("duration", "7200")],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("at most 1h"));
    let res = action(
        &s,
        &client,
        "prod-admin",
        "credentials",
        &[("csrf", &csrf), ("duration", "900")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("14m left") || html.contains("15m left"),
        "a 15-minute session"
    );
}

#[tokio::test]
async fn access_denied_by_sts_tells_the_admin_what_to_check() {
    let moto = crate::helpers::start_moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3".into())]);
    let out = Command::new(format!("{VENV}/bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/testbed/python/moto_iam_setup.py"
        ))
        .args([&moto, "arn:aws:iam::111122223333:role/ReadOnly"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Json = serde_json::from_slice(&out.stdout).unwrap();
    let s = spawn_with(SetupOptions {
        sts_endpoint: Some(moto.clone()),
        credentials: aws_credentials(
            key["AccessKeyId"].as_str().unwrap(),
            key["SecretAccessKey"].as_str().unwrap(),
            None,
        ),
        ..SetupOptions::default()
    })
    .await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(&s, &client, "prod-admin", "credentials", &[("csrf", &csrf)]).await;
    let status = res.status();
    let html = unescape(&res.text().await.unwrap());
    assert_eq!(status, 403, "{html}");
    assert!(
        html.contains("does not trust this broker")
            && html.contains("sts:TagSession")
            && html.contains("sts:SetSourceIdentity"),
        "{html}"
    );
    let record = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "issuance")
        .unwrap();
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("access_denied"),
        "{record}"
    );

    let res = action(
        &s,
        &client,
        "prod-readonly",
        "credentials",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        res.status(),
        200,
        "the role the broker may assume still works"
    );
}

#[tokio::test]
async fn broker_credentials_from_a_role_session_are_capped_at_one_hour_and_skip_session_duration() {
    // The broker itself runs on role credentials (role chaining).
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(moto_url())
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "t",
            ))
            .build(),
    );
    let out = sts
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/broker")
        .role_session_name("broker")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    let s = spawn_with(SetupOptions {
        credentials: aws_credentials(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token()),
        ),
        ..SetupOptions::default()
    })
    .await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let html = action(
        &s,
        &client,
        "prod-readonly",
        "credentials",
        &[("csrf", &csrf)],
    )
    .await
    .text()
    .await
    .unwrap();
    // "(59m left)" or "(1h left)" exactly: "3h 59m left" must not pass for it.
    assert!(
        html.contains("(59m left)") || html.contains("(1h left)"),
        "4h role capped to 1h"
    );
    let issued = s
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "issuance" && r["outcome"] == "success")
        .unwrap();
    assert_eq!(issued["duration_seconds"], 3600, "{issued}");
    let res = action(&s, &client, "prod-readonly", "console", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 302);
    let events = federation_events().await;
    let last = events
        .iter()
        .rev()
        .find(|e| {
            e["action"] == "getSigninToken"
                && e["arn"].as_str().is_some_and(|a| a.contains("ReadOnly"))
        })
        .unwrap();
    assert!(
        last["session_duration"].is_null(),
        "no SessionDuration for chained credentials: {last}"
    );
}

/// An issuance is audited as an attempt before STS is called: if the broker never hears
/// back (killed, drained, or STS hangs), AWS may still have minted credentials, and the
/// record of that attempt already exists.
#[tokio::test]
async fn the_attempt_is_audited_before_sts_is_called() {
    // An "STS" that accepts connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sts = format!("http://{}", hung.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hung.incoming() {
            held.push(c);
        }
    });
    let s = spawn_with(SetupOptions {
        extra: crate::cli_login::CLI_CONFIG.into(),
        sts_endpoint: Some(sts),
        ..SetupOptions::default()
    })
    .await;
    let login = crate::cli_login::logged_in_as(&s, "alice", "alice-pw").await;
    let token = login["access_token"].as_str().unwrap();
    let res = Client::new()
        .post(format!(
            "{}/api/v1/roles/prod-admin/credentials",
            s.app.address
        ))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(1))
        .send()
        .await;
    assert!(res.is_err(), "STS never answers: {res:?}");
    let records = s.audit_records();
    let attempt = records
        .iter()
        .find(|r| r["event"] == "issuance_attempt")
        .unwrap_or_else(|| panic!("no attempt record: {records:#?}"));
    assert_eq!(attempt["role"], "prod-admin");
    assert!(attempt["subject"].as_str().is_some());
    assert_eq!(attempt["client_path"], "cli");
    assert!(
        !records.iter().any(|r| r["event"] == "issuance"),
        "no outcome yet"
    );
}

#[tokio::test]
async fn the_outcome_record_names_its_attempt() {
    let s = spawn_with(SetupOptions {
        extra: crate::cli_login::CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    let login = crate::cli_login::logged_in_as(&s, "alice", "alice-pw").await;
    let res = crate::cli_login::api(
        &s,
        login["access_token"].as_str().unwrap(),
        "POST",
        "/api/v1/roles/prod-admin/credentials",
    )
    .await;
    assert_eq!(res.status(), 200);
    let records = s.audit_records();
    let at = |event: &str| {
        records
            .iter()
            .position(|r| r["event"] == event)
            .unwrap_or_else(|| panic!("no {event}: {records:#?}"))
    };
    let (attempt, outcome) = (at("issuance_attempt"), at("issuance"));
    assert!(attempt < outcome);
    assert_eq!(
        records[attempt]["attempt_id"],
        records[outcome]["attempt_id"]
    );
    assert_eq!(records[attempt]["attempt_id"].as_str().unwrap().len(), 22);
}
