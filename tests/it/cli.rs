//! The `rolegate` binary as an operator runs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ROLEGATE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example_and_prints_a_summary() {
    let (code, out, err) = run(&["check-config", "config/rolegate.example.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config/rolegate.example.toml: valid"), "{out}");
    assert!(
        out.contains("IdPs (2)") && out.contains("accounts (2)") && out.contains("roles (3)"),
        "{out}"
    );
    assert!(
        out.contains("rules (4): 2 grant, 1 deny, 1 eligible"),
        "{out}"
    );
}

#[test]
fn check_config_lists_every_mistake_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\ncolour = \"blue\"\n[[account]]\nid = \"p\"\nnumber = \"111122223333\"\n[[role]]\nid = \"a\"\narn = \"arn:aws:iam::1:role/A\"\naccount = \"p\"\n[[rule]]\nid = \"r\"\ngrant = [\"prod-admin\"]\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("3 errors"), "{err}");
    for key in [
        "server.colour",
        "role[0].arn",
        "rule[0].grant[0]: unknown role \"prod-admin\"",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
}

#[test]
fn explain_shows_each_rule_and_that_deny_overrides_grant() {
    let (code, out, err) = run(&[
        "explain",
        "--config",
        "config/rolegate.example.toml",
        "--idp",
        "corp",
        "--claims",
        "config/examples/contractor.claims.json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rule[0] admins (grant prod-admin, dev-admin): MATCHED"),
        "{out}"
    );
    assert!(
        out.contains("rule[2] no-prod-for-contractors (deny prod-*): MATCHED"),
        "{out}"
    );
    assert!(out.contains("GRANTED dev-admin"), "{out}");
    assert!(
        out.contains(
            "DENIED  prod-admin (granted by admins, denied by no-prod-for-contractors; deny wins)"
        ),
        "{out}"
    );

    let (code, out, _) = run(&[
        "explain",
        "--config",
        "config/rolegate.example.toml",
        "--idp",
        "corp",
        "--claims",
        "config/examples/alice.claims.json",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let roles: Vec<&str> = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["dev-admin", "prod-admin", "prod-readonly"]);
    assert_eq!(v["grants"][1]["tags"]["team"], "platform");
}

#[test]
fn explain_refuses_an_unknown_idp_and_bad_claims() {
    let (code, _, err) = run(&[
        "explain",
        "--config",
        "config/rolegate.example.toml",
        "--idp",
        "nope",
        "--claims",
        "config/examples/alice.claims.json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown IdP \"nope\""), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.json");
    std::fs::write(&p, "{\"email\": \"x@y\"}").unwrap();
    let (code, _, err) = run(&[
        "explain",
        "--config",
        "config/rolegate.example.toml",
        "--idp",
        "corp",
        "--claims",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("\"sub\" is missing"), "{err}");
}

/// A `rolegate serve` process on config/dev.toml and a free port, with `env` on top.
/// The audit log goes to a temporary folder, not the checkout.
pub(crate) struct Served {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

pub(crate) async fn serve(env: &[(&str, &str)]) -> Served {
    let port = crate::helpers::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", "config/dev.toml"])
        .env("ROLEGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "ROLEGATE_SERVER__PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env(
            "ROLEGATE_AUDIT__FILE",
            dir.path().join("audit.jsonl").to_str().unwrap(),
        )
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            assert_eq!(r.status(), 200);
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("broker did not come up:\n{stderr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Served {
        child,
        base,
        _dir: dir,
    }
}

impl Served {
    /// Sends SIGTERM, waits for the exit, and returns its status and everything the
    /// broker wrote to stderr.
    pub(crate) async fn stop(self) -> (std::process::ExitStatus, String) {
        self.terminate();
        self.wait().await
    }

    fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    }
}

#[tokio::test]
async fn serve_answers_and_exits_cleanly_on_sigterm() {
    let served = serve(&[]).await;
    let base = &served.base;
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, stderr) = served.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("rolegate stopped"),
        "{stderr}"
    );
}

/// A rolling stop: after SIGTERM, `/readyz` answers 503 at once while the broker keeps
/// serving for `pre_stop_delay` (the load balancer's health checks see it leave before the
/// listener closes), then it drains and exits 0.
#[tokio::test]
async fn sigterm_fails_readiness_first_and_keeps_serving_for_the_pre_stop_delay() {
    let served = serve(&[("ROLEGATE_SERVER__PRE_STOP_DELAY", "2s")]).await;
    let base = served.base.clone();
    let started = Instant::now();
    served.terminate();
    // Give the signal a moment to land, well inside the 2 s window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["shutting_down"], true, "{body}");
    let page = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "still serving inside the pre-stop window"
    );
    let (status, stderr) = served.wait().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "stopped before the window ended"
    );
    assert!(stderr.contains("pre-stop delay"), "{stderr}");
}

/// A Redis outage is one story in the log, not a line per refused request: one ERROR
/// when it starts, then (after Redis comes back on its own, no restart) one line with the
/// totals.
#[tokio::test]
async fn a_redis_outage_is_logged_once_and_its_end_with_the_count() {
    let port = crate::helpers::free_port();
    let served = serve(&[
        ("ROLEGATE_SESSION__STORE", "redis"),
        (
            "ROLEGATE_SESSION__REDIS_URL",
            &format!("redis://127.0.0.1:{port}/"),
        ),
    ])
    .await;
    let base = served.base.clone();
    for _ in 0..40 {
        let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let _redis =
        crate::helpers::RedisServer::start_on(port).expect("redis-server on the broker's port");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "the broker did not reconnect by itself"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The outage ends once the store has answered for a while (5 s) without failing.
    let healthy_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < healthy_until {
        assert_eq!(
            reqwest::get(format!("{base}/readyz"))
                .await
                .unwrap()
                .status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, stderr) = served.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let outage_lines = stderr
        .lines()
        .filter(|l| l.contains("state store unavailable"))
        .count();
    assert_eq!(outage_lines, 1, "{stderr}");
    let end = stderr
        .lines()
        .find(|l| l.contains("state store available again"))
        .unwrap_or_else(|| panic!("no end of outage line:\n{stderr}"));
    let failed: u64 = end
        .split("failed_calls=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{end}"));
    assert!(failed >= 40, "{end}");
}

/// A person quoting the request id from an error page finds the log lines of that
/// request: every line written while handling it carries the id, in both log formats,
/// and the text format has no colour codes when stderr is not a terminal.
#[tokio::test]
async fn the_log_of_a_failed_request_carries_its_request_id() {
    for format in ["text", "json"] {
        let served = serve(&[("ROLEGATE_SERVER__LOG_FORMAT", format)]).await;
        // A callback without `state`: refused, and the access core logs the failure.
        let res = reqwest::get(format!("{}/oidc/corp/callback?code=x", served.base))
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = res.text().await.unwrap();
        assert!(page.contains(&request_id), "the page shows the request id");
        let (_, stderr) = served.stop().await;
        let failure_line = stderr
            .lines()
            .find(|l| l.contains("login failure") && l.contains("missing state"))
            .unwrap_or_else(|| panic!("{format}: no login failure line in:\n{stderr}"));
        assert!(
            failure_line.contains(&request_id),
            "{format}: the handler's line lacks the request id: {failure_line}"
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(failure_line).unwrap();
            assert_eq!(v["span"]["request_id"], request_id.as_str(), "{v}");
        }
        assert!(
            !stderr.contains('\x1b'),
            "{format}: ANSI escape codes in a non-terminal log"
        );
    }
}

#[test]
fn keys_generate_writes_a_private_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let (code, out, err) = run(&["keys", "generate", "--out", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ES256, kid "), "{out}");
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(rolegate::keys::SigningKey::from_pem(&pem).is_ok());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, _, err) = run(&[
        "keys",
        "generate",
        "--out",
        path.to_str().unwrap(),
        "--algorithm",
        "rs256",
    ]);
    assert_eq!(code, 1, "never overwrites");
    assert!(err.contains("never overwritten"), "{err}");
}

#[test]
fn convert_credentials_turns_credential_process_json_into_each_form() {
    use std::io::Write as _;
    let input = r#"{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s'k","SessionToken":"tok","Expiration":"2027-01-15T08:00:00Z"}"#;
    let convert = |args: &[&str]| {
        let mut child = Command::new(BIN)
            .arg("convert-credentials")
            .args(args)
            .env_remove("AWS_REGION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = convert(&["--format", "powershell", "--region", "eu-west-1"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("$Env:AWS_SECRET_ACCESS_KEY = 's''k'\n"),
        "{out}"
    );
    assert!(
        out.contains("$Env:AWS_DEFAULT_REGION = 'eu-west-1'\n"),
        "{out}"
    );
    let (code, out, _) = convert(&["--format", "credentials-file", "--profile", "dev"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("[dev]\naws_access_key_id = ASIAX\n"),
        "{out}"
    );
    let (code, _, err) = convert(&["--format", "yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown format \"yaml\""), "{err}");
}

/// A Redis URL with a password is a secret: never inline in the file, and when it comes
/// from the environment it is used without ever being printed.
#[test]
fn a_redis_password_is_refused_inline_and_taken_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string("config/dev.toml").unwrap();
    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        base.replace(
            "store = \"memory\"",
            "store = \"redis\"\nredis_url = \"redis://:hunter2-secret@127.0.0.1:6379/0\"",
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["check-config", inline.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("session.redis_url: holds a password"), "{err}");
    assert!(!err.contains("hunter2"), "the password is echoed: {err}");

    let out = Command::new(BIN)
        .args(["check-config", "config/dev.toml"])
        .env_remove("ROLEGATE_CONFIG")
        .env("ROLEGATE_SESSION__STORE", "redis")
        .env(
            "ROLEGATE_SESSION__REDIS_URL",
            "redis://:hunter2-secret@127.0.0.1:6379/0",
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("store redis"), "{text}");
    assert!(!text.contains("hunter2"), "the password is printed: {text}");
}

/// In a fresh checkout `keys/` does not exist: `keys generate` creates it (0700), and the
/// snippet it prints is accepted by `check-config` as the broker's first key.
#[test]
fn keys_generate_creates_its_folder_and_prints_a_snippet_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["keys", "generate", "--out", "keys/broker.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let snippet: String = stdout
        .lines()
        .skip_while(|l| *l != "[web_identity]")
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(snippet.contains("active = true"), "{stdout}");
    let config = format!(
        r#"[server]
public_url = "https://broker.example.com"

[aws]
sts_mode = "web_identity"

[[idp]]
id = "corp"
kind = "oidc"
issuer = "https://idp.example.com"
client_id = "broker"

[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "admin"
arn = "arn:aws:iam::111122223333:role/Admin"
account = "prod"

{snippet}
"#
    );
    std::fs::write(dir.path().join("broker.toml"), config).unwrap();
    let (code, out, err) = run(&[
        "check-config",
        dir.path().join("broker.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "the printed snippet is rejected:\n{err}\n{out}");
}

/// A credentials request without a body (as the CLI sends when no duration is asked
/// for) is not a "rejected JSON body": nothing is logged about a body nobody sent, and a
/// body that is not JSON is a clear 400 once the token is good.
#[tokio::test]
async fn a_credentials_request_without_a_body_logs_no_rejected_body() {
    let served = serve(&[]).await;
    let base = served.base.clone();
    let c = reqwest::Client::new();
    for req in [
        c.post(format!("{base}/api/v1/roles/dev-admin/credentials")),
        c.post(format!("{base}/api/v1/roles/dev-admin/credentials"))
            .header("content-type", "application/json"),
    ] {
        let res = req.bearer_auth("rga_unknown").send().await.unwrap();
        assert_eq!(res.status(), 401);
    }
    let (status, stderr) = served.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("rejected JSON body"), "{stderr}");
    assert!(!stderr.contains("Content type error"), "{stderr}");
}
