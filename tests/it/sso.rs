//! The AWS SSO APIs with unchanged AWS clients: boto3/botocore registers a client, starts a
//! device authorization, polls `CreateToken` (pending, then slow down) while real Chromium
//! signs in and approves; the token goes into the SDK's own cache; then a plain
//! `sso_session` profile gets role credentials through `GetRoleCredentials`, botocore
//! refreshes the expired token by itself (also from several processes at once), and the
//! hostile cases get the service model's error codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::cli_login::{api, logged_in_as};
use crate::helpers::{OidcSetup, SetupOptions, VENV, moto_url, spawn_with};

/// Short lifetimes so expiry happens inside the test; a reuse interval for the races.
pub(crate) fn sso_config(access_token_lifetime: &str, registration: &str) -> String {
    format!(
        "\n[cli]\nclient_ids = [\"rolegate-cli\"]\naccess_token_lifetime = \"{access_token_lifetime}\"\nrefresh_reuse_interval = \"3s\"\ndevice_code_lifetime = \"90s\"\ndevice_poll_interval = \"1s\"\nclient_registration_lifetime = \"{registration}\"\n"
    )
}

/// A machine with boto3 and no rolegate binary: its own HOME and AWS config.
pub(crate) struct Machine {
    pub(crate) home: tempfile::TempDir,
}

impl Machine {
    /// The AWS config exactly as `rolegate configure --sso` writes it for `roles` (the
    /// broker's `/api/v1/roles` answer): profiles `prod-prod-admin`, `prod-prod-readonly`…
    pub(crate) fn configured(broker: &str, roles: &Json) -> Self {
        let home = tempfile::tempdir().unwrap();
        let block = rolegate::cli::commands::profiles_block(
            roles,
            "{account}-{role}",
            &rolegate::cli::commands::ProfileForm::Sso { broker },
        );
        std::fs::write(home.path().join("aws-config"), block).unwrap();
        Self { home }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(format!("{VENV}/bin/python"));
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/python/sso_client.py"))
            .args(args);
        self.env(&mut cmd);
        cmd
    }

    /// The AWS SDK for Rust on this machine: this test binary again, running only
    /// [`rust_sdk_child`] with the machine's HOME and AWS config. The assumed-role ARN.
    fn rust_sdk_caller(&self, profile: &str) -> String {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "sso::rust_sdk_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        self.env(&mut cmd);
        let out = cmd
            .env("ROLEGATE_SSO_CHILD_PROFILE", profile)
            .env("ROLEGATE_SSO_CHILD_STS", moto_url())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.split_once("ARN=").map(|(_, arn)| arn.trim()))
            .unwrap_or_else(|| {
                panic!(
                    "the Rust SDK got no credentials:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", format!("{VENV}/bin:/usr/bin:/bin"))
            .env("HOME", self.home.path())
            .env("AWS_CONFIG_FILE", self.home.path().join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.path().join("none"));
    }

    /// Runs the client; its stdout, trimmed (panics with stderr on failure).
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        stdout_of(&out, args)
    }

    /// The SDK's token cache for the `rolegate` sso-session.
    fn token_cache(&self) -> Json {
        // sha1("rolegate"): the file name botocore derives from the session name.
        let path = self
            .home
            .path()
            .join(".aws/sso/cache/c6a7474d9fab04c0f64fafcfcddeab32f29961a5.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

fn stdout_of(out: &Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "sso_client.py {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A person signs in as alice in real Chromium and approves; for the authorization-code
/// grant, `done` is the loopback redirect the browser must end at.
pub(crate) fn approve_in_chromium(url: &str, shot: &str, done: Option<&str>) -> Json {
    let mut env = vec![
        ("START_URL", url),
        ("LOGIN_USER", "alice"),
        ("LOGIN_PASSWORD", "alice-pw"),
        ("SHOT", shot),
    ];
    if let Some(prefix) = done {
        env.push(("DONE_URL_PREFIX", prefix));
    }
    crate::cli_client::approve_in_chromium(&env)
}

pub(crate) async fn sso_broker(access_token_lifetime: &str, registration: &str) -> OidcSetup {
    spawn_with(SetupOptions {
        extra: sso_config(access_token_lifetime, registration),
        ..SetupOptions::default()
    })
    .await
}

/// What `/api/v1/roles` says `user` may assume (what `rolegate configure` reads).
pub(crate) async fn roles_of(s: &OidcSetup, user: &str) -> Json {
    let login = logged_in_as(s, user, &format!("{user}-pw")).await;
    let token = login["access_token"].as_str().unwrap();
    api(s, token, "GET", "/api/v1/roles")
        .await
        .json()
        .await
        .unwrap()
}

pub(crate) fn issuances(s: &OidcSetup) -> Vec<Json> {
    s.audit_records()
        .into_iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] == "success")
        .collect()
}

const ADMIN_ARN: &str = "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com";

#[tokio::test]
async fn boto3_logs_in_through_the_sso_apis_and_keeps_working_after_the_token_expires() {
    let s = sso_broker("5s", "1h").await;
    let roles = roles_of(&s, "alice").await;
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = s2;
        let broker = s.app.address.clone();
        let m = Machine::configured(&broker, &roles);

        // RegisterClient + StartDeviceAuthorization, then CreateToken polling in the
        // background while a person approves in Chromium.
        let start: Json = serde_json::from_str(&m.run(&["start", &broker])).unwrap();
        assert!(
            start["clientId"].as_str().unwrap().starts_with("sso-"),
            "{start}"
        );
        let start_file = m.home.path().join("start.json");
        std::fs::write(&start_file, start.to_string()).unwrap();
        let poller = m
            .command(&["poll", &broker, start_file.to_str().unwrap(), "rolegate"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = start["verificationUriComplete"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{broker}/device?user_code=")),
            "{url}"
        );
        let report = approve_in_chromium(url, "sso-device-approval", None);
        assert_eq!(report["prefilled"], start["userCode"]);
        let text = report["approval_text"].as_str().unwrap();
        assert!(
            text.contains("boto3-test") && text.contains("alice@example.com"),
            "{text}"
        );
        let polled: Json =
            serde_json::from_str(&stdout_of(&poller.wait_with_output().unwrap(), &["poll"]))
                .unwrap();
        assert!(polled["pending"].as_u64().unwrap() >= 1, "{polled}");
        assert!(
            polled["slowdowns"].as_u64().unwrap() >= 1,
            "polling too fast is told to slow down: {polled}"
        );

        // The cache in the SDK's format.
        let cached = m.token_cache();
        let first_access = cached["accessToken"].as_str().unwrap().to_owned();
        let first_refresh = cached["refreshToken"].as_str().unwrap().to_owned();
        assert_eq!(cached["startUrl"], format!("{broker}/"));

        // A plain sso_session profile: botocore's token provider refreshes the 5-second
        // token through CreateToken, then GetRoleCredentials, then STS shows the role.
        let arn = m.run(&["caller", "prod-prod-admin", moto_url()]);
        assert_eq!(arn, ADMIN_ARN);
        let issued = issuances(&s);
        assert_eq!(issued.len(), 1);
        // An AWS SDK's login (a client registered through the SSO OIDC API) is `sdk`,
        // with the registered client's id.
        assert_eq!(issued[0]["client_path"], "sdk", "{:#}", issued[0]);
        assert!(
            issued[0]["client_id"].as_str().unwrap().starts_with("sso-"),
            "{:#}",
            issued[0]
        );

        // The AWS SDK for Rust (aws-config's SSO support) from the same cached token: it
        // refreshes the short-lived token through CreateToken and gets role credentials.
        let before = m.token_cache()["accessToken"].clone();
        assert_eq!(m.rust_sdk_caller("prod-prod-admin"), ADMIN_ARN);
        assert_eq!(issuances(&s).len(), 2);
        assert_ne!(
            m.token_cache()["accessToken"],
            before,
            "the Rust SDK refreshed and cached"
        );

        // The original access token expires: the API refuses it...
        std::thread::sleep(Duration::from_secs(6));
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                &first_access,
                "prod-admin",
                "111122223333"
            ]),
            "UnauthorizedException"
        );
        // ... and botocore refreshes by itself and keeps working.
        let arn = m.run(&["caller", "prod-prod-readonly", moto_url()]);
        assert_eq!(
            arn,
            "arn:aws:sts::111122223333:assumed-role/ReadOnly/alice@example.com"
        );
        let cached = m.token_cache();
        assert_ne!(cached["accessToken"].as_str().unwrap(), first_access);
        assert_ne!(cached["refreshToken"].as_str().unwrap(), first_refresh);

        // Several processes at the same moment, each refreshing the same expired token
        // (botocore rewrites the cache without a lock): all get credentials...
        std::thread::sleep(Duration::from_secs(6));
        let racers: Vec<_> = (0..4)
            .map(|_| {
                m.command(&["caller", "prod-prod-admin", moto_url()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for r in racers {
            assert_eq!(
                stdout_of(&r.wait_with_output().unwrap(), &["caller (race)"]),
                ADMIN_ARN
            );
        }
        // ... and the session survives: after the reuse interval, the cached successor
        // still refreshes.
        std::thread::sleep(Duration::from_secs(6));
        assert_eq!(m.run(&["caller", "prod-prod-admin", moto_url()]), ADMIN_ARN);
        assert!(
            !s.audit_records()
                .iter()
                .any(|r| r["reason"].as_str().is_some_and(|x| x.contains("reused"))),
            "no reuse was detected"
        );

        // Logout ends the login: the token and its refresh token stop working.
        let cached = m.token_cache();
        let access = cached["accessToken"].as_str().unwrap();
        let refresh = cached["refreshToken"].as_str().unwrap();
        assert_eq!(m.run(&["call", "logout", &broker, access]), "ok");
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                access,
                "prod-admin",
                "111122223333"
            ]),
            "UnauthorizedException"
        );
        assert_eq!(
            m.run(&[
                "call",
                "refresh",
                &broker,
                refresh,
                start_file.to_str().unwrap()
            ]),
            "InvalidGrantException"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_portal_lists_what_the_rules_grant_with_paging_and_refuses_hostile_calls() {
    let s = sso_broker("10m", "5s").await;
    let alice = logged_in_as(&s, "alice", "alice-pw").await;
    let bob = logged_in_as(&s, "bob", "bob-pw").await;
    let alice_access = alice["access_token"].as_str().unwrap().to_owned();
    let bob_access = bob["access_token"].as_str().unwrap().to_owned();
    let alice_refresh = alice["refresh_token"].as_str().unwrap().to_owned();
    let broker = s.app.address.clone();
    let roles = api(&s, &alice_access, "GET", "/api/v1/roles")
        .await
        .json::<Json>()
        .await
        .unwrap();
    let audit_before = s.audit_records().len();
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = s2;
        let m = Machine::configured(&broker, &roles);
        // One item per page: every account and role is still found, across pages.
        let listed: Json =
            serde_json::from_str(&m.run(&["list", &broker, &alice_access, "1"])).unwrap();
        let accounts = listed["accounts"].as_array().unwrap();
        assert!(
            accounts.contains(
                &serde_json::json!({"accountId": "111122223333", "accountName": "Production"})
            ),
            "{listed:#}"
        );
        assert_eq!(
            listed["account_pages"].as_u64().unwrap() as usize,
            accounts.len()
        );
        assert!(accounts.len() >= 2, "{listed:#}");
        assert_eq!(
            listed["roles"]["111122223333"],
            serde_json::json!(["prod-admin", "prod-readonly"])
        );
        let all: Json =
            serde_json::from_str(&m.run(&["list", &broker, &alice_access, "100"])).unwrap();
        assert_eq!(all["accounts"], listed["accounts"]);
        assert_eq!(all["account_pages"], 1);
        // Bob's rules grant nothing in Production.
        let bobs: Json =
            serde_json::from_str(&m.run(&["list", &broker, &bob_access, "100"])).unwrap();
        assert!(bobs["roles"].get("111122223333").is_none(), "{bobs:#}");

        // Bob's token cannot reach Alice's role: the rules are evaluated for the token's
        // person, now; the refusal is audited and nothing is issued.
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                &bob_access,
                "prod-admin",
                "111122223333"
            ]),
            "ResourceNotFoundException"
        );
        // A role in an account it does not belong to, and an unknown role.
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                &alice_access,
                "prod-admin",
                "222233334444"
            ]),
            "ResourceNotFoundException"
        );
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                &alice_access,
                "no-such-role",
                "111122223333"
            ]),
            "ResourceNotFoundException"
        );
        // Not a token, and a token with a letter changed.
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                "not-a-token",
                "prod-admin",
                "111122223333"
            ]),
            "UnauthorizedException"
        );
        let mut forged = alice_access.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            m.run(&[
                "call",
                "credentials",
                &broker,
                &forged,
                "prod-admin",
                "111122223333"
            ]),
            "UnauthorizedException"
        );
        assert!(issuances(&s).is_empty(), "nothing was issued");
        let refusals = s.audit_records()[audit_before..]
            .iter()
            .filter(|r| r["outcome"] == "refused")
            .count();
        assert!(refusals >= 3, "{:#?}", &s.audit_records()[audit_before..]);

        // An unregistered client, and one with the wrong secret.
        assert_eq!(
            m.run(&["call", "start-as", &broker, "-", "sso-nobody", "x"]),
            "InvalidClientException"
        );
        let start: Json = serde_json::from_str(&m.run(&["start", &broker])).unwrap();
        assert_eq!(
            m.run(&[
                "call",
                "start-as",
                &broker,
                "-",
                start["clientId"].as_str().unwrap(),
                "wrong"
            ]),
            "InvalidClientException"
        );

        // A refresh token used again after the reuse interval: the login is revoked.
        let start_file = m.home.path().join("cli-client.json");
        std::fs::write(
            &start_file,
            r#"{"clientId":"rolegate-cli","clientSecret":""}"#,
        )
        .unwrap();
        assert_eq!(
            m.run(&[
                "call",
                "refresh",
                &broker,
                &alice_refresh,
                start_file.to_str().unwrap()
            ]),
            "ok"
        );
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            m.run(&[
                "call",
                "refresh",
                &broker,
                &alice_refresh,
                start_file.to_str().unwrap()
            ]),
            "InvalidGrantException"
        );
        // The registration (5 s here) has expired by now: the client must register again.
        assert_eq!(
            m.run(&[
                "call",
                "start-as",
                &broker,
                "-",
                start["clientId"].as_str().unwrap(),
                start["clientSecret"].as_str().unwrap()
            ]),
            "InvalidClientException"
        );
    })
    .await
    .unwrap();
}

/// Not a test by itself: the AWS SDK for Rust as a separate process on a [`Machine`] (its
/// HOME and AWS config come from the environment, which only a new process can set).
/// Run by [`Machine::rust_sdk_caller`]; skipped when not started that way.
#[tokio::test]
#[ignore = "run as a child process by the sso tests"]
async fn rust_sdk_child() {
    let (Ok(profile), Ok(sts_endpoint)) = (
        std::env::var("ROLEGATE_SSO_CHILD_PROFILE"),
        std::env::var("ROLEGATE_SSO_CHILD_STS"),
    ) else {
        return;
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .profile_name(&profile)
        .load()
        .await;
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .endpoint_url(sts_endpoint)
            .build(),
    );
    match sts.get_caller_identity().send().await {
        Ok(who) => println!("ARN={}", who.arn().unwrap_or_default()),
        Err(e) => panic!("{}", aws_sdk_sts::error::DisplayErrorContext(e)),
    }
}
