//! Recalling issued credentials against moto's IAM (one IAM per account, reached through
//! an assumed `rolegate-recall` role in each): the deny policy lands on exactly the roles
//! a person was issued, narrowed to their SourceIdentity and to sessions issued before
//! the recall; it merges with another person's; the sweep removes statements whose
//! credentials have all expired; an unreachable IAM is retried, shown to the
//! administrator and audited.

use std::process::Command;
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::{CLI_CONFIG, api};
use crate::helpers::{
    OidcSetup, SetupOptions, VENV, free_port, shared_redis, spawn_with, start_moto, unique_prefix,
};
use crate::lifecycle::{ADMIN, cli_tokens, signed_in};

const ADMIN_ROLE: &str = "arn:aws:iam::111122223333:role/Admin";
const READONLY_ROLE: &str = "arn:aws:iam::111122223333:role/ReadOnly";
const DEV_ROLE: &str = "arn:aws:iam::444455556666:role/DevAdmin";

fn iam(args: &[&str]) -> String {
    let out = Command::new(format!("{VENV}/bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/testbed/python/iam_roles.py"
        ))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iam_roles {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The role's recall policy, or `None`.
fn policy(moto: &str, role: &str) -> Option<Json> {
    match iam(&["policy", moto, role]).as_str() {
        "none" => None,
        doc => Some(serde_json::from_str(doc).unwrap()),
    }
}

fn statements(doc: &Json) -> Vec<Json> {
    doc["Statement"].as_array().cloned().unwrap_or_default()
}

/// A broker on Redis with recall on, STS and IAM at `moto` (IAM possibly elsewhere).
async fn recalling_broker(moto: &str, iam_url: &str) -> OidcSetup {
    iam(&["setup", moto, ADMIN_ROLE, READONLY_ROLE, DEV_ROLE]);
    spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            shared_redis(),
            unique_prefix("recall")
        ),
        sts_endpoint: Some(moto.to_owned()),
        aws_extra: format!(
            "recall_issued = true\nrecall_role_name = \"rolegate-recall\"\niam_endpoint_url = \"{iam_url}\"\nrecall_sweep_interval = \"1s\"\n"
        ),
        extra: format!("{CLI_CONFIG}{ADMIN}"),
        ..SetupOptions::default()
    })
    .await
}

fn admin_cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rolegate"))
        .arg("admin")
        .args(args)
        .args(["--config", config.to_str().unwrap(), "--as", "ops-oncall"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn credentials(s: &OidcSetup, token: &str, role: &str) -> Json {
    let res = api(
        s,
        token,
        "POST",
        &format!("/api/v1/roles/{role}/credentials"),
    )
    .await;
    assert_eq!(res.status(), 200, "{role}");
    res.json().await.unwrap()
}

/// Waits until `check` holds (the background worker applies and sweeps).
async fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_recall_denies_exactly_the_roles_issued_merges_and_is_swept() {
    let moto = start_moto(&[]);
    let s = recalling_broker(&moto, &moto).await;
    let dir = tempfile::tempdir().unwrap();
    let config = s.config_file(dir.path());
    let alice = signed_in(&s, "alice").await;
    let bob = signed_in(&s, "bob").await;
    let alice_at = cli_tokens(&s, &alice).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_at = cli_tokens(&s, &bob).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // alice: Admin (the admins rule sets SourceIdentity {email}) and DevAdmin (no rule
    // value: her user name). bob, a developer: DevAdmin.
    credentials(&s, &alice_at, "prod-admin").await;
    credentials(&s, &alice_at, "dev-admin").await;
    credentials(&s, &bob_at, "dev-admin").await;
    for role in [ADMIN_ROLE, READONLY_ROLE, DEV_ROLE] {
        assert_eq!(policy(&moto, role), None, "nothing recalled yet on {role}");
    }

    // An operator revokes alice from the command line (the store and IAM, no broker).
    let before = chrono::Utc::now();
    let (code, out, err) = admin_cli(
        &config,
        &[
            "revoke",
            "--idp",
            "corp",
            "--subject",
            "alice",
            "--reason",
            "left the company",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let admin_doc = policy(&moto, ADMIN_ROLE).expect("a deny on the Admin role");
    let dev_doc = policy(&moto, DEV_ROLE).expect("a deny on the DevAdmin role");
    assert_eq!(
        policy(&moto, READONLY_ROLE),
        None,
        "ReadOnly was never issued to her"
    );
    for doc in [&admin_doc, &dev_doc] {
        let st = statements(doc);
        assert_eq!(st.len(), 1, "{doc:#}");
        let s0 = &st[0];
        assert_eq!(
            (
                s0["Effect"].as_str(),
                s0["Action"].as_str(),
                s0["Resource"].as_str()
            ),
            (Some("Deny"), Some("*"), Some("*"))
        );
        assert_eq!(
            s0["Condition"]["StringEquals"]["aws:SourceIdentity"],
            json!(["alice@example.com"]),
            "{doc:#}"
        );
        let t = chrono::DateTime::parse_from_rfc3339(
            s0["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let lead = (t.with_timezone(&chrono::Utc) - before).num_seconds();
        assert!(
            (0..=40).contains(&lead),
            "sessions issued before now (and a clock margin): {lead}s"
        );
    }

    // bob is locked: his statement joins alice's on DevAdmin; Admin keeps hers only.
    let (code, _, err) = admin_cli(
        &config,
        &[
            "lock",
            "--person",
            "corp:bob",
            "--reason",
            "investigation",
            "--for",
            "1h",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let dev_doc = policy(&moto, DEV_ROLE).unwrap();
    let ids: Vec<Json> = statements(&dev_doc)
        .iter()
        .map(|s| s["Condition"]["StringEquals"]["aws:SourceIdentity"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{dev_doc:#}");
    assert!(
        ids.contains(&json!(["alice@example.com"])) && ids.contains(&json!(["bob@example.com"])),
        "{ids:?}"
    );
    assert_eq!(statements(&policy(&moto, ADMIN_ROLE).unwrap()).len(), 1);

    // The sweep: statements whose credentials have all expired go, the rest stay.
    let expired = json!({ "Sid": "RolegateRecall00000000000000aaUntil1000", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": { "StringEquals": { "aws:SourceIdentity": ["gone@example.com"] }, "DateLessThan": { "aws:TokenIssueTime": "1970-01-01T00:16:40Z" } } });
    let foreign =
        json!({ "Sid": "KeepMe", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*" });
    let mut with_expired = statements(&dev_doc);
    with_expired.push(expired.clone());
    iam(&[
        "put",
        &moto,
        DEV_ROLE,
        &json!({ "Version": "2012-10-17", "Statement": with_expired }).to_string(),
    ]);
    iam(&[
        "put",
        &moto,
        READONLY_ROLE,
        &json!({ "Version": "2012-10-17", "Statement": [expired.clone(), foreign] }).to_string(),
    ]);
    eventually("the sweep removes expired statements", 20, || {
        policy(&moto, DEV_ROLE).is_some_and(|d| statements(&d).len() == 2)
            && policy(&moto, READONLY_ROLE).is_some_and(|d| statements(&d).len() == 1)
    })
    .await;
    assert_eq!(
        statements(&policy(&moto, READONLY_ROLE).unwrap())[0]["Sid"],
        "KeepMe",
        "not ours: kept"
    );
    // Only expired statements: the policy goes.
    iam(&[
        "put",
        &moto,
        READONLY_ROLE,
        &json!({ "Version": "2012-10-17", "Statement": [expired] }).to_string(),
    ]);
    eventually("a policy left empty is deleted", 20, || {
        policy(&moto, READONLY_ROLE).is_none()
    })
    .await;

    let audit = s.audit_records();
    let applied: Vec<&Json> = audit
        .iter()
        .filter(|r| r["event"] == "recall" && r["outcome"] == "applied")
        .collect();
    assert_eq!(
        applied.iter().filter(|r| r["subject"] == "alice").count(),
        2,
        "{applied:#?}"
    );
    assert!(
        applied
            .iter()
            .any(|r| r["subject"] == "bob" && r["role_arn"] == DEV_ROLE)
    );
    assert!(
        applied.iter().all(
            |r| r["by"] == "cli:ops-oncall" || r["by"].as_str().unwrap().contains("ops-oncall")
        ),
        "{applied:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r["event"] == "recall" && r["outcome"] == "swept")
    );
    // Every credential carried a SourceIdentity.
    assert!(
        audit
            .iter()
            .filter(|r| r["event"] == "issuance")
            .all(|r| r["source_identity"].is_string())
    );
}

/// A TCP forwarder from a fixed port to `target`, started when IAM "comes back".
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            }
        });
    }
}

#[tokio::test]
async fn an_unreachable_iam_is_retried_shown_to_the_administrator_and_audited() {
    let moto = start_moto(&[]);
    let port = free_port(); // nothing listens there yet
    let s = recalling_broker(&moto, &format!("http://127.0.0.1:{port}")).await;
    let alice = signed_in(&s, "alice").await;
    let at = cli_tokens(&s, &alice).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    credentials(&s, &at, "prod-admin").await;

    // An administrator revokes her in the admin area; IAM does not answer.
    let dana = signed_in(&s, "dana").await;
    let tag = rolegate::store::PersonTag::of("corp", "alice");
    let html = crate::helpers::page(&dana, format!("{}/admin/people/{tag}", s.app.address)).await;
    let csrf = crate::cli_login::field(&html, "csrf").to_owned();
    let res = dana
        .post(format!("{}/admin/people/{tag}/revoke", s.app.address))
        .form(&[("csrf", csrf.as_str()), ("reason", "lost laptop")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let page = crate::helpers::page(&dana, format!("{}/admin/people/{tag}", s.app.address)).await;
    assert!(page.contains("id=\"recalls\""), "{page}");
    assert!(
        page.contains(ADMIN_ROLE)
            && page.contains("failed")
            && page.contains("IAM cannot be reached"),
        "{page}"
    );
    let metrics = crate::helpers::page(&Client::new(), format!("{}/metrics", s.app.address)).await;
    assert!(
        metrics.contains("recalls_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(
        s.audit_records()
            .iter()
            .any(|r| r["event"] == "recall" && r["outcome"] == "failed" && r["subject"] == "alice")
    );
    assert_eq!(policy(&moto, ADMIN_ROLE), None);

    // IAM comes back: the background retry applies it, and it leaves the admin's list.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(forward(
        listener,
        moto.trim_start_matches("http://").to_owned(),
    ));
    eventually("the retry applies the recall", 40, || {
        policy(&moto, ADMIN_ROLE).is_some()
    })
    .await;
    let doc = policy(&moto, ADMIN_ROLE).unwrap();
    assert_eq!(
        statements(&doc)[0]["Condition"]["StringEquals"]["aws:SourceIdentity"],
        json!(["alice@example.com"])
    );
    let mut page = String::new();
    for _ in 0..20 {
        page = crate::helpers::page(&dana, format!("{}/admin/people/{tag}", s.app.address)).await;
        if page.contains("No recall waiting") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(page.contains("No recall waiting"), "{page}");
    let audit = s.audit_records();
    assert!(audit.iter().any(|r| r["event"] == "recall"
        && r["outcome"] == "applied"
        && r["subject"] == "alice"
        && r["reason"] == "lost laptop"));
}
