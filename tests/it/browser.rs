//! The login page in real headless Chromium (Debian's chromium via playwright-core):
//! a person signs in on the IdP's own form and sees their roles. Screenshots land in
//! `tests/artifacts/`.

use std::process::Command;

use crate::helpers::spawn_with_oidc;

/// Runs `tests/testbed/browser/e2e.mjs` against a broker; returns its JSON report.
pub fn run_e2e(broker: &str, user: &str, password: &str, expect: &[&str]) -> serde_json::Value {
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
async fn a_person_signs_in_with_chromium_and_sees_the_role_picker() {
    let s = spawn_with_oidc().await;
    let address = s.app.address.clone();
    let report = tokio::task::spawn_blocking(move || {
        run_e2e(
            &address,
            "alice",
            "alice-pw",
            &[
                "Hello, alice@example.com",
                "Production",
                "Development",
                "Administrator",
                "Console",
                "CLI credentials",
            ],
        )
    })
    .await
    .unwrap();
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
    assert_eq!(report["csp_violations"], serde_json::json!([]));
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/artifacts/role-picker.png")
            .exists()
    );
}
