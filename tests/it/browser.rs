//! The login page in real headless Chromium (Debian's chromium via playwright-core):
//! a person signs in on the IdP's own form and sees their roles. Screenshots land in
//! `tests/artifacts/`.

use std::process::Command;

use crate::helpers::spawn_with_oidc;

/// Runs `tests/testbed/browser/e2e.mjs` against a broker; returns its JSON report.
pub fn run_e2e(
    broker: &str,
    user: &str,
    password: &str,
    expect: &[&str],
    role: Option<&str>,
) -> serde_json::Value {
    run_e2e_with(broker, user, password, expect, role, &[])
}

/// As [`run_e2e`] with extra environment for e2e.mjs (IDP, SUBMIT, SHOT).
pub fn run_e2e_with(
    broker: &str,
    user: &str,
    password: &str,
    expect: &[&str],
    role: Option<&str>,
    extra_env: &[(&str, &str)],
) -> serde_json::Value {
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg("e2e.mjs")
        .current_dir("tests/testbed/browser")
        .env("BROKER_URL", broker)
        .env("LOGIN_USER", user)
        .env("LOGIN_PASSWORD", password)
        .env("ARTIFACTS", &artifacts)
        .env("EXPECT", expect.join(","))
        .env("ROLE", role.unwrap_or(""))
        .envs(extra_env.iter().copied())
        .output()
        .expect("cannot run node; tests/run.sh installs the browser tooling");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from e2e.mjs\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        out.status.success(),
        "browser run failed: {report:#}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

#[tokio::test]
async fn a_person_signs_in_with_chromium_opens_the_console_and_gets_cli_credentials() {
    let s = spawn_with_oidc().await;
    let address = s.app.address.clone();
    let report = tokio::task::spawn_blocking(move || {
        let expect = [
            "Hello, alice@example.com",
            "Production",
            "Development",
            "Administrator",
            "Console",
            "CLI credentials",
        ];
        run_e2e(&address, "alice", "alice-pw", &expect, Some("prod-admin"))
    })
    .await
    .unwrap();
    // The role picker, grouped by account.
    assert_eq!(report["heading"], "Hello, alice@example.com");
    let accounts: Vec<&str> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        accounts.iter().any(|a| a.starts_with("Production"))
            && accounts.iter().any(|a| a.starts_with("Development")),
        "{accounts:?}"
    );
    // "Console" lands on the (fake) AWS console through the federation login.
    assert!(
        report["console_url"]
            .as_str()
            .unwrap()
            .starts_with(crate::helpers::federation_url()),
        "{report:#}"
    );
    assert!(
        report["console_text"]
            .as_str()
            .unwrap()
            .contains("arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"),
        "{report:#}"
    );
    assert_eq!(
        report["csp_violations"],
        serde_json::json!([]),
        "the redirect chain passes the CSP"
    );
    assert_eq!(
        report["copy_buttons_visible"], 5,
        "the copy script runs under the CSP"
    );
    let c = &report["credentials"];
    let creds = crate::issuance::PageCredentials {
        access_key_id: c["access_key_id"].as_str().unwrap().to_owned(),
        secret_access_key: c["secret_access_key"].as_str().unwrap().to_owned(),
        session_token: c["session_token"].as_str().unwrap().to_owned(),
    };
    let who = crate::issuance::aws_caller_identity(&creds, crate::helpers::moto_url());
    assert_eq!(
        who["Arn"],
        "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"
    );
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    for shot in ["role-picker.png", "console.png", "cli-credentials.png"] {
        assert!(artifacts.join(shot).exists(), "{shot} saved");
    }
}

#[tokio::test]
async fn a_person_signs_in_through_simplesamlphp_in_chromium() {
    let s = crate::helpers::spawn_with(crate::helpers::SetupOptions {
        saml: true,
        ..Default::default()
    })
    .await;
    let address = s.app.address.clone();
    let report = tokio::task::spawn_blocking(move || {
        run_e2e_with(
            &address,
            "alice",
            "alice-pw",
            &[
                "Hello, alice@example.test",
                "Signed in through Test SAML IdP",
                "Production",
                "Administrator",
            ],
            Some("prod-admin"),
            &[
                ("IDP", "ssp"),
                ("SUBMIT", "#submit_button"),
                ("SHOT", "role-picker-saml.png"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        report["steps"][0]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{}", s.ssp.as_ref().unwrap().port)),
        "{report:#}"
    );
    assert!(
        report["console_text"]
            .as_str()
            .unwrap()
            .contains("assumed-role/Admin/alice@example.test"),
        "{report:#}"
    );
    assert_eq!(report["csp_violations"], serde_json::json!([]));
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    assert!(artifacts.join("role-picker-saml.png").exists());
}
