//! Account names from AWS Organizations (moto's Organizations through the real
//! aws-sdk-organizations): shown on the role picker, the JSON API and the SSO portal,
//! configured names first; a denied `ListAccounts` logged once in words that say what to
//! fix (names then fall back: a unit test of `access::accounts`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::Value as Json;

use crate::cli_login::{CLI_CONFIG, logged_in_cli};
use crate::helpers::{SetupOptions, VENV, free_port, moto_url, spawn_with};

/// An organization in the shared moto with one more account: that account's number.
fn organization_with_an_account(name: &str) -> String {
    let script = format!(
        "import boto3\n\
         c = boto3.client('organizations', endpoint_url='{moto}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         try:\n    c.create_organization(FeatureSet='ALL')\n\
         except c.exceptions.AlreadyInOrganizationException:\n    pass\n\
         print(c.create_account(Email='{name}@example.com', AccountName='{name}')['CreateAccountStatus']['AccountId'])\n",
        moto = moto_url()
    );
    let out = Command::new(format!("{VENV}/bin/python"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn accounts_config(lab: &str, named: &str) -> String {
    format!(
        r#"
[[account]]
id = "lab"
number = "{lab}"

[[account]]
id = "named"
number = "{named}"
display_name = "Configured name"

[[role]]
id = "lab-dev"
arn = "arn:aws:iam::{lab}:role/Dev"
account = "lab"

[[role]]
id = "named-dev"
arn = "arn:aws:iam::{named}:role/Dev"
account = "named"

[[rule]]
id = "labs"
when = {{ group = "aws-admins" }}
grant = ["lab-dev", "named-dev"]
"#
    )
}

async fn names(base: &str, token: &str) -> Vec<(String, String)> {
    let roles: Json = Client::new()
        .get(format!("{base}/api/v1/roles"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    roles["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn names_come_from_organizations_unless_configured() {
    let lab = organization_with_an_account("Lab from Organizations");
    let named = organization_with_an_account("Named in Organizations");
    let s = spawn_with(SetupOptions {
        aws_extra: format!(
            "account_names = \"organizations\"\naccount_names_refresh = \"1m\"\norganizations_endpoint_url = \"{}\"\n",
            moto_url()
        ),
        extra: format!("{CLI_CONFIG}{}", accounts_config(&lab, &named)),
        ..SetupOptions::default()
    })
    .await;
    let t = logged_in_cli(&s).await;
    let token = t["access_token"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let got = names(&s.app.address, token).await;
        if got.iter().any(|(id, n)| id == "lab" && n != "lab") || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name_of = |id: &str| got.iter().find(|(i, _)| i == id).map(|(_, n)| n.as_str());
    assert_eq!(name_of("lab"), Some("Lab from Organizations"), "{got:?}");
    assert_eq!(
        name_of("named"),
        Some("Configured name"),
        "configured wins: {got:?}"
    );
    assert_eq!(name_of("prod"), Some("Production"), "{got:?}");

    // The role picker and the SSO portal show the same names.
    let (browser, _) = crate::oidc::signed_in_as_alice(&s).await;
    let picker = crate::helpers::page(&browser, format!("{}/", s.app.address)).await;
    assert!(picker.contains("Lab from Organizations"), "{picker}");
    assert!(!picker.contains("Named in Organizations"));
}

#[tokio::test]
async fn a_denied_organizations_call_is_logged_once_saying_what_to_fix() {
    // A moto that checks signatures: the broker's keys are unknown to it (403).
    let port = free_port();
    let mut denying = Command::new(format!("{VENV}/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/moto-api/")).await.is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = crate::cli::serve(&[
        ("ROLEGATE_AWS__ACCOUNT_NAMES", "organizations"),
        ("ROLEGATE_AWS__ACCOUNT_NAMES_REFRESH", "1m"),
        ("ROLEGATE_AWS__ORGANIZATIONS_ENDPOINT_URL", &url),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ])
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, stderr) = served.stop().await;
    let _ = denying.kill();
    let _ = denying.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("AWS Organizations refused ListAccounts"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("organizations:ListAccounts") && lines[0].contains("ERROR"),
        "{}",
        lines[0]
    );
    assert!(!stderr.contains("testing"), "no key in the log: {stderr}");
}

#[test]
fn account_name_settings_are_checked() {
    let base = std::fs::read_to_string("config/dev.toml").unwrap();
    for (key, value, says) in [
        (
            "account_names",
            "\"ldap\"",
            "is not \"config\" or \"organizations\"",
        ),
        (
            "account_names_refresh",
            "\"10s\"",
            "must be between 1m and 24h",
        ),
        ("organizations_endpoint_url", "\"http://example.com\"", ""),
    ] {
        let text = base.replace("[aws]\n", &format!("[aws]\n{key} = {value}\n"));
        let errs = match rolegate::config::from_str(&text, std::path::Path::new("dev.toml"), vec![])
        {
            Ok(_) => panic!("{key} = {value} accepted"),
            Err(e) => e.0,
        };
        let e = errs
            .iter()
            .find(|e| e.key == format!("aws.{key}"))
            .unwrap_or_else(|| panic!("{key}: {errs:#?}"));
        assert!(e.to_string().contains(says), "{e}");
    }
}
