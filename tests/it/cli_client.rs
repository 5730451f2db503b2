//! The CLI as a developer uses it: a real `rolegate login` process approved in real
//! Chromium (loopback through the OIDC provider; device code through SimpleSAMLphp), then
//! `rolegate configure`, then the real AWS CLI and boto3 getting credentials through
//! `credential_process` — cached, refreshed without a browser, fetched once under
//! concurrency — and `credential_process` without a login failing in one line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::cli_login::CLI_CONFIG;
use crate::helpers::{OidcSetup, SetupOptions, VENV, moto_url, spawn_with};

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

/// A developer's machine: its own home, rolegate folder and AWS config.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn rolegate_dir(&self) -> PathBuf {
        self.dir.path().join("rolegate")
    }

    fn aws_config(&self) -> PathBuf {
        self.dir.path().join("aws-config")
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", format!("{VENV}/bin:/usr/local/bin:/usr/bin:/bin"))
            .env("HOME", self.dir.path())
            .env("ROLEGATE_CONFIG_DIR", self.rolegate_dir())
            .env("AWS_CONFIG_FILE", self.aws_config())
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-credentials"),
            )
            .env("RUST_BACKTRACE", "0");
    }

    fn rolegate(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        self.env(&mut cmd);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn spawn_login(&self, args: &[&str]) -> Child {
        let mut cmd = Command::new(BIN);
        cmd.arg("login").args(args);
        self.env(&mut cmd);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `aws --profile P sts get-caller-identity` against the STS emulator.
    fn aws_caller(&self, profile: &str) -> Json {
        let mut cmd = Command::new(format!("{VENV}/bin/aws"));
        cmd.args([
            "--profile",
            profile,
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            moto_url(),
        ]);
        self.env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "aws: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Reads the login process's stderr until a line satisfies `pick`; keeps the rest
/// flowing in a thread (so the process never blocks on a full pipe).
fn read_until(child: &mut Child, pick: impl Fn(&str) -> Option<String>) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(v) = pick(&line) {
                // Keep draining in the background.
                std::thread::spawn(move || for _ in rx.iter() {});
                return v;
            }
        }
    }
    panic!("the login process did not print what was expected:\n{seen}");
}

/// Runs `approve.mjs` (real Chromium) with `extra` as its environment; its report.
pub(crate) fn approve_in_chromium(extra: &[(&str, &str)]) -> Json {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg("approve.mjs")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/browser"))
        .env("ARTIFACTS", &artifacts)
        .envs(extra.iter().copied())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(out.status.success(), "approval failed: {report:#}");
    report
}

fn wait_ok(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "rolegate login failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "rolegate login did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn issuances(s: &OidcSetup) -> usize {
    s.audit_records()
        .iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] == "success")
        .count()
}

#[tokio::test]
async fn a_loopback_login_in_chromium_then_configure_gives_aws_cli_and_boto3_profiles() {
    let s = spawn_with(SetupOptions {
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    let broker = s.app.address.clone();
    let m = Machine::new();
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = s2;
        // Without a login, credential_process fails in one line and opens nothing.
        let (code, out, err) = m.rolegate(&["credentials", "--role", "prod-admin", "--format", "credential-process"]);
        assert_ne!(code, 0);
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("run `rolegate login`"), "{err}");

        let mut login = m.spawn_login(&["--broker", &broker, "--no-browser"]);
        let url = read_until(&mut login, |l| {
            l.trim().starts_with(&format!("{broker}/oauth/authorize?")).then(|| l.trim().to_owned())
        });
        let redirect_port = url
            .split("redirect_uri=http%3A%2F%2F127.0.0.1%3A")
            .nth(1)
            .unwrap()
            .split('%')
            .next()
            .unwrap()
            .to_owned();
        let report = approve_in_chromium(&[
            ("START_URL", &url),
            ("LOGIN_USER", "alice"),
            ("LOGIN_PASSWORD", "alice-pw"),
            ("SHOT", "cli-approval-loopback"),
            ("DONE_URL_PREFIX", &format!("http://127.0.0.1:{redirect_port}/callback")),
        ]);
        let text = report["approval_text"].as_str().unwrap();
        assert!(text.contains("rolegate-cli") && text.contains("alice@example.com"), "{text}");
        assert!(report["final_text"].as_str().unwrap().contains("Logged in"), "{report:#}");
        assert_eq!(report["csp_violations"], serde_json::json!([]));
        wait_ok(login);
        // --broker once is remembered.
        let (code, out, err) = m.rolegate(&["whoami"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("alice@example.com"), "{out}");

        let (code, out, err) = m.rolegate(&["configure", "--dry-run"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("+[profile prod-prod-admin]"), "{out}");
        assert!(!m.aws_config().exists(), "a dry run writes nothing");
        std::fs::write(m.aws_config(), "[profile mine]\nregion = eu-west-1\n").unwrap();
        let (code, out, err) = m.rolegate(&["configure"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("3 profile(s)"), "{out}");
        let config = std::fs::read_to_string(m.aws_config()).unwrap();
        assert!(config.starts_with("[profile mine]\nregion = eu-west-1\n"), "{config}");
        let (_, _, _) = m.rolegate(&["configure"]);
        assert_eq!(std::fs::read_to_string(m.aws_config()).unwrap(), config, "idempotent");
        // --sso would swap the credential_process profiles for AWS SSO ones (used by boto3
        // in the sso tests).
        let (code, out, err) = m.rolegate(&["configure", "--sso", "--dry-run"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("+sso_start_url = {broker}/")), "{out}");
        assert!(out.contains("+sso_role_name = prod-admin") && out.contains("-credential_process"), "{out}");
        assert_eq!(std::fs::read_to_string(m.aws_config()).unwrap(), config, "a dry run writes nothing");

        // The AWS CLI through credential_process: the assumed role, then the cache.
        let who = m.aws_caller("prod-prod-admin");
        assert_eq!(who["Arn"], "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com");
        assert_eq!(issuances(&s), 1);
        let who = m.aws_caller("prod-prod-admin");
        assert_eq!(who["Arn"], "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com");
        assert_eq!(issuances(&s), 1, "the second call is served from the cache");

        // boto3 reads the same profile.
        let mut py = Command::new(format!("{VENV}/bin/python"));
        py.args([
            "-c",
            &format!(
                "import boto3; print(boto3.Session(profile_name='prod-prod-readonly').client('sts', endpoint_url='{}').get_caller_identity()['Arn'])",
                moto_url()
            ),
        ]);
        m.env(&mut py);
        let out = py.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "arn:aws:sts::111122223333:assumed-role/ReadOnly/alice@example.com"
        );
        assert_eq!(issuances(&s), 2);

        // Cached credentials about to expire, and an expired access token: the next call
        // refreshes both without a browser.
        let cache = m.rolegate_dir().join("cache/prod-admin.json");
        let mut j: Json = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
        j["Expiration"] = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(60))
            .to_string()
            .into();
        std::fs::write(&cache, j.to_string()).unwrap();
        let tokens_path = m.rolegate_dir().join("tokens.json");
        let mut t: Json = serde_json::from_str(&std::fs::read_to_string(&tokens_path).unwrap()).unwrap();
        let old_refresh = t["refresh_token"].clone();
        t["access_expires_at"] = 0.into();
        std::fs::write(&tokens_path, t.to_string()).unwrap();
        let who = m.aws_caller("prod-prod-admin");
        assert_eq!(who["Arn"], "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com");
        assert_eq!(issuances(&s), 3, "fetched again");
        let t: Json = serde_json::from_str(&std::fs::read_to_string(&tokens_path).unwrap()).unwrap();
        assert_ne!(t["refresh_token"], old_refresh, "the refresh token rotated");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&tokens_path).unwrap().permissions().mode() & 0o777, 0o600);
        }

        // Two credential_process calls at once fetch once.
        std::fs::remove_file(&cache).unwrap();
        let spawn = || {
            let mut c = Command::new(BIN);
            c.args(["credentials", "--role", "prod-admin", "--format", "credential-process"]);
            m.env(&mut c);
            c.stdout(Stdio::piped()).spawn().unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success() && b.status.success());
        assert_eq!(a.stdout, b.stdout, "the same credentials");
        assert_eq!(issuances(&s), 4, "one fetch for both");

        // exec runs a command with the role's credentials.
        let (code, out, err) = m.rolegate(&["exec", "--role", "prod-readonly", "--", "sh", "-c", "echo $AWS_DEFAULT_REGION:${AWS_ACCESS_KEY_ID%%????????????????}"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "us-east-1:ASIA");

        // logout revokes: the next credential_process says to log in.
        let (code, _, err) = m.rolegate(&["logout"]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = m.rolegate(&["credentials", "--role", "prod-admin", "--format", "credential-process"]);
        assert_ne!(code, 0);
        assert!(err.contains("run `rolegate login`"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_device_code_login_is_approved_in_chromium_through_simplesamlphp() {
    let s = spawn_with(SetupOptions {
        extra: CLI_CONFIG.into(),
        saml: true,
        ..SetupOptions::default()
    })
    .await;
    let broker = s.app.address.clone();
    let m = Machine::new();
    tokio::task::spawn_blocking(move || {
        let mut login = m.spawn_login(&["--broker", &broker, "--device-code"]);
        let code = read_until(&mut login, |l| {
            let t = l.trim();
            (t.len() == 9
                && t.as_bytes()[4] == b'-'
                && t.chars()
                    .filter(|c| *c != '-')
                    .all(|c| c.is_ascii_uppercase()))
            .then(|| t.to_owned())
        });
        let report = approve_in_chromium(&[
            ("START_URL", &format!("{broker}/device?user_code={code}")),
            ("LOGIN_USER", "alice"),
            ("LOGIN_PASSWORD", "alice-pw"),
            ("IDP", "ssp"),
            ("SUBMIT", "#submit_button"),
            ("SHOT", "cli-approval-device"),
        ]);
        assert_eq!(
            report["prefilled"],
            code.as_str(),
            "the link pre-fills the code"
        );
        let text = report["approval_text"].as_str().unwrap();
        assert!(
            text.contains(&code) && text.contains("alice@example.test"),
            "{text}"
        );
        assert!(
            report["final_text"]
                .as_str()
                .unwrap()
                .contains("Command line logged in")
        );
        wait_ok(login);
        let (status, out, err) = m.rolegate(&["roles"]);
        assert_eq!(status, 0, "{err}");
        assert!(out.contains("prod-admin"), "{out}");
        let (status, out, err) =
            m.rolegate(&["credentials", "--role", "prod-admin", "--format", "json"]);
        assert_eq!(status, 0, "{err}");
        let j: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(j["Region"], "us-east-1");
    })
    .await
    .unwrap();
}
