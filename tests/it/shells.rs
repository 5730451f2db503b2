//! The credential forms of the CLI credentials page, used as a person uses them: each
//! shell form evaluated by the real shell (bash always; fish and PowerShell when
//! installed), then the real AWS CLI run with no other AWS settings at all (no region,
//! no config file) — the README's `aws sts get-caller-identity` must just work.

use std::process::Command;

use serde_json::Value as Json;

use crate::helpers::{SetupOptions, VENV, moto_url, spawn_with};
use crate::issuance::{action, field};
use crate::oidc::signed_in_as_alice;

/// Runs `shell ARGS… SCRIPT` with an environment holding nothing AWS-related and a
/// home folder of its own, and returns what `aws sts get-caller-identity` printed.
fn run_in(shell: &str, args: &[&str], script: &str, home: &std::path::Path) -> Json {
    let mut cmd = Command::new(shell);
    cmd.args(args).arg(script).env_clear();
    cmd.env("PATH", format!("{VENV}/bin:/usr/local/bin:/usr/bin:/bin"))
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{shell}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{shell}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn every_shell_form_works_when_evaluated_by_its_shell() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(&s, &client, "prod-admin", "credentials", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let expected = "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com";
    let aws = format!("aws sts get-caller-identity --endpoint-url {}", moto_url());

    let bash = field(&html, "block-bash");
    assert!(bash.contains("AWS_DEFAULT_REGION"), "{bash}");
    let who = run_in("bash", &["-c"], &format!("{bash}\n{aws}"), home.path());
    assert_eq!(who["Arn"], expected, "bash");
    // The same block is POSIX: dash (sh) takes it too.
    let who = run_in("sh", &["-c"], &format!("{bash}\n{aws}"), home.path());
    assert_eq!(who["Arn"], expected, "sh");

    let fish = field(&html, "block-fish");
    if installed("fish") {
        let who = run_in(
            "fish",
            &["--no-config", "-c"],
            &format!("{fish}\n{aws}"),
            home.path(),
        );
        assert_eq!(who["Arn"], expected, "fish");
    } else {
        eprintln!("fish is not installed: its form is checked by unit tests only");
    }
    let powershell = field(&html, "block-powershell");
    if installed("pwsh") {
        let who = run_in(
            "pwsh",
            &["-NoProfile", "-NonInteractive", "-Command"],
            &format!("{powershell}\n{aws}"),
            home.path(),
        );
        assert_eq!(who["Arn"], expected, "pwsh");
    } else {
        eprintln!("pwsh is not installed: its form is checked by unit tests only");
    }

    // The ~/.aws/credentials block, as the only AWS file there is, with its profile.
    let creds_file = home.path().join("credentials");
    std::fs::write(&creds_file, field(&html, "block-credentials-file")).unwrap();
    let who = run_in(
        "sh",
        &["-c"],
        &format!(
            "AWS_SHARED_CREDENTIALS_FILE={} {aws} --profile rolegate-prod-admin",
            creds_file.display()
        ),
        home.path(),
    );
    assert_eq!(who["Arn"], expected, "credentials file");
}
