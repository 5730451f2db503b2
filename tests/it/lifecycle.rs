//! The lifecycle of access, with real components: an administrator in Chromium ends
//! everything a person holds (browser session, CLI login, AWS SDK login) on three
//! instances behind HAProxy on a Redis Cluster; locks by person, group and role from the
//! admin area and from `rolegate admin` against the store; the admin area's gate and its
//! bad input; and re-validation at the IdP (groups changed, grant revoked, IdP down).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::{CLI_CONFIG, api, field};
use crate::helpers::{OidcSetup, SetupOptions, VENV, shared_redis, spawn_with, unique_prefix};
use crate::oidc::{browser, sign_in_from};

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");
pub const ADMIN: &str = "\n[admin]\nwhen = { group = \"rolegate-admins\" }\n";

/// A browser client signed in as `user` (through `/login/corp`).
pub async fn signed_in(s: &OidcSetup, user: &str) -> Client {
    let b = browser();
    let cb = sign_in_from(s, &b, "/login/corp", user, &format!("{user}-pw")).await;
    assert_eq!(b.get(&cb).send().await.unwrap().status(), 303);
    b
}

/// The CSRF token on a page the browser gets.
pub(crate) async fn csrf_of(b: &Client, url: &str) -> String {
    let html = crate::helpers::page(b, url).await;
    field(&html, "csrf").to_owned()
}

/// Approves a device login by its user code at `base` as the browser's person.
pub(crate) async fn approve_device(base: &str, b: &Client, code: &str) {
    let html = crate::helpers::page(b, format!("{base}/device?user_code={code}")).await;
    let res = b
        .post(format!("{base}/device"))
        .form(&[("csrf", field(&html, "csrf")), ("user_code", code)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let res = b
        .post(format!("{base}/device/approve"))
        .form(&[
            ("csrf", field(&html, "csrf")),
            ("user_code", code),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

pub(crate) fn sso_client(home: &Path, args: &[&str]) -> String {
    let out = Command::new(format!("{VENV}/bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/testbed/python/sso_client.py"
        ))
        .args(args)
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sso_client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) fn rolegate(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("HOSTNAME", "build-box")
        .env("ROLEGATE_CONFIG_DIR", home.join("rolegate"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real `rolegate login --device-code` approved by `b` at `broker`.
pub(crate) async fn cli_login(home: &Path, broker: &str, b: &Client) {
    let mut child = Command::new(BIN)
        .args(["login", "--device-code", "--broker", broker])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("HOSTNAME", "build-box")
        .env("ROLEGATE_CONFIG_DIR", home.join("rolegate"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let code = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok);
        let code = lines.by_ref().map(|l| l.trim().to_owned()).find(|t| {
            t.len() == 9
                && t.as_bytes()[4] == b'-'
                && t.chars()
                    .filter(|c| *c != '-')
                    .all(|c| c.is_ascii_uppercase())
        });
        std::thread::spawn(move || for _ in lines {});
        code
    })
    .await
    .unwrap()
    .expect("a user code");
    approve_device(broker, b, &code).await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
}

/// An AWS SDK login through boto3's SSO OIDC client (device code approved by `person`):
/// its home (with the SDK's token cache and `start.json`), access and refresh token.
pub(crate) struct SdkLogin {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub refresh: String,
}

pub(crate) async fn sdk_login(public: &str, person: &Client) -> SdkLogin {
    let sdk = tempfile::tempdir().unwrap();
    // Off the runtime: a broker in this process needs it while boto3 waits for it.
    let start = {
        let (dir, public) = (sdk.path().to_owned(), public.to_owned());
        tokio::task::spawn_blocking(move || sso_client(&dir, &["start", &public]))
            .await
            .unwrap()
    };
    let start_json: Json = serde_json::from_str(&start).unwrap();
    std::fs::write(sdk.path().join("start.json"), &start).unwrap();
    let user_code = start_json["userCode"].as_str().unwrap().to_owned();
    let poller = {
        let (public, sdk) = (public.to_owned(), sdk.path().to_owned());
        tokio::task::spawn_blocking(move || {
            sso_client(
                &sdk,
                &[
                    "poll",
                    &public,
                    sdk.join("start.json").to_str().unwrap(),
                    "rolegate",
                ],
            )
        })
    };
    approve_device(public, person, &user_code).await;
    let polled: Json = serde_json::from_str(&poller.await.unwrap()).unwrap();
    let token = polled["accessToken"].as_str().unwrap().to_owned();
    let cache = std::fs::read_dir(sdk.path().join(".aws/sso/cache"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cached: Json = serde_json::from_str(&std::fs::read_to_string(cache).unwrap()).unwrap();
    let refresh = cached["refreshToken"].as_str().unwrap().to_owned();
    SdkLogin {
        dir: sdk,
        token,
        refresh,
    }
}

pub(crate) fn run_node(script: &str, env: &[(&str, &str)]) -> Json {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg(script)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/browser"))
        .env("ARTIFACTS", &artifacts)
        .envs(env.iter().copied())
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
    assert!(out.status.success(), "{script} failed: {report:#}");
    report
}

/// alice holds a browser session, a CLI login and an AWS SDK login (boto3) through three
/// instances behind HAProxy on a Redis Cluster; an administrator finds her in the admin
/// area (Chromium) and revokes everything. Her next page, `credential_process`, boto3
/// refresh and SSO portal call are refused, on every instance; the audit names the
/// administrator.
#[tokio::test]
async fn an_admin_revokes_everything_and_every_instance_refuses_it() {
    let session = format!(
        "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
        crate::helpers::shared_cluster().seed(),
        unique_prefix("revoke-all")
    );
    let b = crate::balancer::balanced_with(
        session,
        ADMIN,
        "0s",
        "  retries 3\n  option redispatch 1\n",
    )
    .await;
    let public = b.s.app.address.clone();
    let alice = signed_in(&b.s, "alice").await;
    // The CLI: a real login, then credential_process.
    let home = tempfile::tempdir().unwrap();
    cli_login(home.path(), &public, &alice).await;
    let creds = [
        "credentials",
        "--role",
        "dev-admin",
        "--format",
        "credential-process",
    ];
    let (code, out, err) = rolegate(home.path(), &creds);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("AccessKeyId"));
    // An AWS SDK login (boto3's SSO OIDC client).
    let SdkLogin {
        dir: sdk,
        token: sso_token,
        refresh: sso_refresh,
    } = sdk_login(&public, &alice).await;
    let start_file = sdk.path().join("start.json");
    let start_path = start_file.to_str().unwrap();
    assert_eq!(
        sso_client(
            sdk.path(),
            &[
                "call",
                "credentials",
                &public,
                &sso_token,
                "dev-admin",
                "444455556666"
            ]
        ),
        "ok"
    );

    // The administrator, in Chromium.
    let report = run_node(
        "admin.mjs",
        &[
            ("BROKER", public.as_str()),
            ("PERSON_USER", "alice"),
            ("PERSON_PASSWORD", "alice-pw"),
            ("ADMIN_USER", "dana"),
            ("ADMIN_PASSWORD", "dana-pw"),
            ("FIND", "alice@example.com"),
            ("REASON", "left the company"),
            ("IDP", "corp"),
            ("SHOT", "admin-revoke"),
        ],
    );
    assert_eq!(report["admin_link"], true, "{report:#}");
    assert!(
        report["search_text"].as_str().unwrap().contains("alice"),
        "{report:#}"
    );
    let holdings: Vec<String> = serde_json::from_value(report["holdings"].clone()).unwrap();
    // Two browser sessions (this test's and Chromium's), the CLI login and the SDK login.
    assert!(holdings.len() >= 4, "{holdings:#?}");
    assert!(holdings.iter().any(|h| h.contains("sdk")), "{holdings:#?}");
    assert!(holdings.iter().any(|h| h.contains("cli")), "{holdings:#?}");
    assert_eq!(report["holdings_after"], 0, "{report:#}");
    assert_eq!(report["person_after_status"], 401, "{report:#}");
    assert!(
        report["person_after"]
            .as_str()
            .unwrap()
            .contains("ended by an administrator"),
        "{report:#}"
    );

    // Every instance refuses what she held.
    for port in &b.ports {
        let base = format!("http://127.0.0.1:{port}");
        let page = alice.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 401, "the browser session on {port}");
        let res = Client::new()
            .get(format!("{base}/sso-portal/assignment/accounts"))
            .header("x-amz-sso_bearer_token", &sso_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "the SSO portal on {port}");
    }
    assert_eq!(
        sso_client(
            sdk.path(),
            &[
                "call",
                "credentials",
                &public,
                &sso_token,
                "dev-admin",
                "444455556666"
            ]
        ),
        "UnauthorizedException"
    );
    assert_eq!(
        sso_client(
            sdk.path(),
            &["call", "refresh", &public, &sso_refresh, start_path]
        ),
        "InvalidGrantException",
        "boto3's refresh"
    );
    // credential_process: credentials it cached before live until they expire (issued
    // credentials are not recalled here); anything it asks the broker for is refused.
    let _ = std::fs::remove_dir_all(home.path().join("rolegate/cache"));
    let (code, _, err) = rolegate(home.path(), &creds);
    assert_eq!(code, 1);
    assert!(err.contains("not logged in"), "{err}");

    let audit: Vec<Json> = std::fs::read_to_string(b.config.with_file_name("audit.jsonl"))
        .or_else(|_| std::fs::read_to_string(b.s.audit_path()))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let revocation = audit
        .iter()
        .find(|r| r["event"] == "revocation")
        .expect("the revocation is audited");
    assert_eq!(revocation["subject"], "alice");
    assert_eq!(revocation["source"], "admin");
    assert!(
        revocation["by"].as_str().unwrap().contains("dana"),
        "{revocation}"
    );
    assert_eq!(revocation["reason"], "left the company");
}

pub(crate) async fn redis_broker(prefix: &str, extra: &str) -> OidcSetup {
    spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            shared_redis()
        ),
        extra: format!("{CLI_CONFIG}{ADMIN}{extra}"),
        ..SetupOptions::default()
    })
    .await
}

pub(crate) async fn cli_tokens(s: &OidcSetup, b: &Client) -> Json {
    let (verifier, challenge) = crate::cli_login::pkce();
    let code = crate::cli_login::approve_loopback_as(s, b, &challenge, "@example.com").await;
    crate::cli_login::exchange(s, &code, &verifier)
        .await
        .json()
        .await
        .unwrap()
}

/// Locks by person (placed with `rolegate admin lock` against the Redis the broker uses),
/// by group and by role (from the admin area), with expiry; what each refuses, audited.
#[tokio::test]
async fn locks_by_person_group_and_role_take_effect_on_the_running_broker() {
    let prefix = unique_prefix("locks");
    let s = redis_broker(&prefix, "").await;
    let dir = tempfile::tempdir().unwrap();
    let config = s.config_file(dir.path());
    let admin_cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("admin")
            .args(args)
            .args(["--config", config.to_str().unwrap(), "--as", "ops-oncall"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let alice = signed_in(&s, "alice").await;
    let bob = signed_in(&s, "bob").await;
    let at = cli_tokens(&s, &alice).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        alice
            .get(format!("{}/", s.app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A person lock from the command line, straight against the store.
    let (code, out, err) = admin_cli(&[
        "lock",
        "--person",
        "corp:alice",
        "--reason",
        "investigation",
        "--for",
        "1h",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let lock: Json = serde_json::from_str(&out).unwrap();
    let lock_id = lock["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await; // the instance's copy: at most 1 s old
    let page = alice
        .get(format!("{}/", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("locked"));
    let res = api(&s, &at, "GET", "/api/v1/roles").await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Json>().await.unwrap()["error"], "access_locked");
    assert_eq!(
        bob.get(format!("{}/", s.app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "bob is not locked"
    );
    let (_, out, _) = admin_cli(&["locks", "--json"]);
    assert!(out.contains(&lock_id), "{out}");
    assert!(
        s.audit_records()
            .iter()
            .any(|r| r["event"] == "access_locked" && r["subject"] == "alice")
    );
    assert!(
        s.audit_records().iter().any(
            |r| r["event"] == "lock_placed" && r["by"].as_str().unwrap().contains("ops-oncall")
        )
    );
    let (code, _, err) = admin_cli(&["unlock", "--id", &lock_id, "--reason", "cleared"]);
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        alice
            .get(format!("{}/", s.app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(api(&s, &at, "GET", "/api/v1/roles").await.status(), 200);

    // A role lock from the admin area: the role leaves the menu and is refused; others work.
    let dana = signed_in(&s, "dana").await;
    let csrf = csrf_of(&dana, &format!("{}/admin", s.app.address)).await;
    let lock_role = |role: &str, expires: &str| {
        dana.post(format!("{}/admin/locks", s.app.address)).form(&[
            ("csrf", csrf.as_str()),
            ("kind", "role"),
            ("role", role),
            ("reason", "incident"),
            ("expires", expires),
        ])
    };
    let res = lock_role("prod-admin", "2s").send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let roles: Json = api(&s, &at, "GET", "/api/v1/roles")
        .await
        .json()
        .await
        .unwrap();
    assert!(!roles.to_string().contains("\"prod-admin\""), "{roles}");
    let res = api(&s, &at, "POST", "/api/v1/roles/prod-admin/credentials").await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Json>().await.unwrap()["error"], "access_locked");
    assert_eq!(
        api(&s, &at, "POST", "/api/v1/roles/dev-admin/credentials")
            .await
            .status(),
        200
    );
    // ... and it ends by itself.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        api(&s, &at, "POST", "/api/v1/roles/prod-admin/credentials")
            .await
            .status(),
        200
    );

    // A group lock: everyone the IdP puts in "developers" (alice and bob), nobody else.
    let res = dana
        .post(format!("{}/admin/locks", s.app.address))
        .form(&[
            ("csrf", csrf.as_str()),
            ("kind", "group"),
            ("idp", "corp"),
            ("group", "developers"),
            ("reason", "audit"),
            ("expires", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    for (who, b) in [("alice", &alice), ("bob", &bob)] {
        assert_eq!(
            b.get(format!("{}/", s.app.address))
                .send()
                .await
                .unwrap()
                .status(),
            403,
            "{who}"
        );
    }
    assert_eq!(
        dana.get(format!("{}/", s.app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A new sign-in of a locked person is refused too.
    let b = browser();
    let cb = sign_in_from(&s, &b, "/login/corp", "bob", "bob-pw").await;
    assert_eq!(b.get(&cb).send().await.unwrap().status(), 403);
    // Locking a group an administrator is in asks first, and changes nothing until asked.
    let res = dana
        .post(format!("{}/admin/locks", s.app.address))
        .form(&[
            ("csrf", csrf.as_str()),
            ("kind", "group"),
            ("group", "rolegate-admins"),
            ("reason", "oops"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("applies to you too"));
    assert_eq!(
        dana.get(format!("{}/", s.app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The admin area: for administrators only, CSRF on every action, bad input refused with
/// nothing changed, and a store that is down means a clear 503 and no change.
#[tokio::test]
async fn the_admin_area_is_guarded_and_refuses_bad_input() {
    let mut redis = crate::helpers::RedisServer::start();
    let prefix = unique_prefix("admin-gate");
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            redis.url()
        ),
        extra: format!("{CLI_CONFIG}{ADMIN}"),
        ..SetupOptions::default()
    })
    .await;
    let alice = signed_in(&s, "alice").await;
    let dana = signed_in(&s, "dana").await;
    let base = s.app.address.clone();
    // Not an administrator: 403, on every admin page and action.
    assert_eq!(
        alice
            .get(format!("{base}/admin"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let alice_csrf = csrf_of(&alice, &format!("{base}/")).await;
    let res = alice
        .post(format!("{base}/admin/locks"))
        .form(&[
            ("csrf", alice_csrf.as_str()),
            ("kind", "role"),
            ("role", "prod-admin"),
            ("reason", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        !dana
            .get(format!("{base}/admin"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("incident-x")
    );
    // An administrator without the CSRF token: refused.
    let res = dana
        .post(format!("{base}/admin/locks"))
        .form(&[
            ("kind", "role"),
            ("role", "prod-admin"),
            ("reason", "incident-x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let csrf = csrf_of(&dana, &format!("{base}/admin")).await;
    let page = dana
        .get(format!("{base}/admin?q=alice"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tag = page
        .split("/admin/people/")
        .nth(1)
        .map(|r| r.split('"').next().unwrap().to_owned())
        .expect("alice is found");
    // Revoking: not by someone who is not an administrator (with their own valid CSRF
    // token), nor by an administrator without the token. alice keeps her session.
    let res = alice
        .post(format!("{base}/admin/people/{tag}/revoke"))
        .form(&[("csrf", alice_csrf.as_str()), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "not an administrator");
    let res = dana
        .post(format!("{base}/admin/people/{tag}/revoke"))
        .form(&[("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no CSRF token");
    assert_eq!(
        alice.get(format!("{base}/")).send().await.unwrap().status(),
        200,
        "nothing was revoked"
    );
    // Bad input: each a clear error, nothing changed.
    let long = "x".repeat(200);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "an over-long search",
            dana.get(format!("{base}/admin?q={long}")),
            400,
        ),
        (
            "an unknown person",
            dana.get(format!("{base}/admin/people/0123456789abcdef")),
            404,
        ),
        (
            "a forged person id",
            dana.get(format!("{base}/admin/people/..%2f..%2fetc")),
            404,
        ),
        (
            "a lock that ends in the past",
            dana.post(format!("{base}/admin/locks")).form(&[
                ("csrf", csrf.as_str()),
                ("kind", "role"),
                ("role", "prod-admin"),
                ("reason", "x"),
                ("expires", "2020-01-01T00:00:00Z"),
            ]),
            400,
        ),
        (
            "a malformed expiry",
            dana.post(format!("{base}/admin/locks")).form(&[
                ("csrf", csrf.as_str()),
                ("kind", "role"),
                ("role", "prod-admin"),
                ("reason", "x"),
                ("expires", "soonish"),
            ]),
            400,
        ),
        (
            "an unknown role",
            dana.post(format!("{base}/admin/locks")).form(&[
                ("csrf", csrf.as_str()),
                ("kind", "role"),
                ("role", "no-such-role"),
                ("reason", "x"),
            ]),
            400,
        ),
        (
            "no reason",
            dana.post(format!("{base}/admin/locks")).form(&[
                ("csrf", csrf.as_str()),
                ("kind", "role"),
                ("role", "prod-admin"),
                ("reason", " "),
            ]),
            400,
        ),
        (
            "a forged item",
            dana.post(format!("{base}/admin/people/{tag}/revoke"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("item", "session:not-a-hash"),
                    ("reason", "x"),
                ]),
            400,
        ),
        (
            "someone else's item",
            dana.post(format!("{base}/admin/people/{tag}/revoke"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("item", &format!("session:{}", "a".repeat(64))),
                    ("reason", "x"),
                ]),
            404,
        ),
        (
            "an unknown lock",
            dana.post(format!("{base}/admin/locks/nope/remove"))
                .form(&[("csrf", csrf.as_str()), ("reason", "x")]),
            404,
        ),
    ];
    for (what, req, status) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status, "{what}");
        assert!(
            res.text().await.unwrap().contains("request id"),
            "{what}: a page"
        );
    }
    let page = dana
        .get(format!("{base}/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("No locks."), "nothing was locked: {page}");
    assert_eq!(
        alice.get(format!("{base}/")).send().await.unwrap().status(),
        200,
        "nothing was revoked"
    );

    // The store is down: a clear 503, and nothing changed once it is back.
    let sessions_ok = || async {
        dana.get(format!("{base}/admin"))
            .send()
            .await
            .unwrap()
            .status()
    };
    redis.stop();
    let res = dana
        .post(format!("{base}/admin/locks"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("kind", "role"),
            ("role", "prod-admin"),
            ("reason", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let port = redis.port;
    drop(redis);
    let _back = crate::helpers::RedisServer::start_on(port).unwrap();
    // A fresh Redis: the sessions are gone with the old one, and no lock was written.
    let _ = sessions_ok().await;
    let admin_cli = Command::new(BIN)
        .args(["admin", "locks", "--json", "--config"])
        .arg(s.config_file(tempfile::tempdir().unwrap().path()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&admin_cli.stdout).trim(), "[]");
}

/// Re-validation at the IdP: alice removed from aws-admins at the OP loses prod-admin at
/// her next CLI refresh (dev-admin still works) and in the browser after the interval; her
/// grant revoked at the OP ends her login at the next refresh; the OP down: refreshes keep
/// working for the grace, then fail closed (and the login is kept).
#[tokio::test]
async fn revalidation_at_the_idp_follows_group_changes_revocations_and_outages() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("upstream-key");
    std::fs::write(&key, "an-encryption-key-of-more-than-32-characters").unwrap();
    let mut s = spawn_with(SetupOptions {
        session: format!(
            "store = \"memory\"\nencryption_key = {{ file = \"{}\" }}\nrevalidate_interval = \"2s\"\nrevalidate_grace = \"3s\"",
            key.display()
        ),
        corp_extra: "revalidate = \"on_refresh\"\n".into(),
        extra: format!("{CLI_CONFIG}{ADMIN}"),
        ..SetupOptions::default()
    })
    .await;
    let refresh = |s: &OidcSetup, rt: String| {
        let s = s.app.address.clone();
        async move {
            Client::new()
                .post(format!("{s}/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "rolegate-cli"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let alice = signed_in(&s, "alice").await;
    let tokens = cli_tokens(&s, &alice).await;
    let roles = |at: String| {
        let s = &s;
        async move {
            api(s, &at, "GET", "/api/v1/roles")
                .await
                .json::<Json>()
                .await
                .unwrap()
                .to_string()
        }
    };
    assert!(
        roles(tokens["access_token"].as_str().unwrap().into())
            .await
            .contains("\"prod-admin\"")
    );

    // Removed from aws-admins at the IdP: gone at the next refresh.
    s.op.change_user("alice", json!({ "groups": ["developers"] }))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = refresh(&s, tokens["refresh_token"].as_str().unwrap().into()).await;
    assert_eq!(res.status(), 200);
    let tokens: Json = res.json().await.unwrap();
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    let me: Json = api(&s, &at, "GET", "/api/v1/me")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !roles(at.clone()).await.contains("\"prod-admin\""),
        "{me:#}"
    );
    assert_eq!(
        api(&s, &at, "POST", "/api/v1/roles/prod-admin/credentials")
            .await
            .status(),
        403
    );
    assert_eq!(
        api(&s, &at, "POST", "/api/v1/roles/dev-admin/credentials")
            .await
            .status(),
        200
    );
    assert!(
        s.audit_records()
            .iter()
            .any(|r| r["event"] == "revalidation" && r["outcome"] == "changed")
    );
    // The browser session follows within the interval.
    let page = crate::helpers::page(&alice, format!("{}/", s.app.address)).await;
    assert!(!page.contains("role-prod-admin"), "{page}");
    assert!(page.contains("role-dev-admin"), "{page}");

    // bob logs in too; then alice's grant is revoked at the IdP: her next refresh ends it.
    let bob_browser = signed_in(&s, "bob").await;
    let bob = cli_tokens(&s, &bob_browser).await;
    s.op.change_user("alice", json!({ "disabled": true })).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = refresh(&s, tokens["refresh_token"].as_str().unwrap().into()).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Json>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        api(&s, &at, "GET", "/api/v1/me").await.status(),
        401,
        "everything she held ended"
    );
    assert_eq!(
        alice
            .get(format!("{}/", s.app.address))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(
        s.audit_records()
            .iter()
            .any(|r| r["event"] == "revocation" && r["source"] == "idp" && r["subject"] == "alice")
    );

    // The IdP is down: bob's refreshes work for the grace (3 s), then fail closed.
    s.op.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = refresh(&s, bob["refresh_token"].as_str().unwrap().into()).await;
    assert_eq!(res.status(), 200, "within the grace");
    let bob: Json = res.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let res = refresh(&s, bob["refresh_token"].as_str().unwrap().into()).await;
    assert_eq!(res.status(), 503, "past the grace: fail closed");
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("cannot confirm")
    );
    assert_eq!(
        api(
            &s,
            bob["access_token"].as_str().unwrap(),
            "GET",
            "/api/v1/me"
        )
        .await
        .status(),
        200,
        "the login is kept for when the IdP is back"
    );
    drop(bob_browser);
}

/// A subject token an app holds from before the person's access was revoked is refused
/// at the exchange (the IdP's token outlives the revocation); one obtained after it works.
#[tokio::test]
async fn an_apps_subject_token_from_before_a_revocation_is_refused() {
    use crate::exchange::{APPS, error_of, exchange, form};
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            shared_redis(),
            unique_prefix("revoke-exchange")
        ),
        extra: format!("{APPS}{CLI_CONFIG}{ADMIN}"),
        ..SetupOptions::default()
    })
    .await;
    let before = crate::presented_tokens::app_id_token(&s.op, "alice", "alice-pw").await;
    let dir = tempfile::tempdir().unwrap();
    let config = s.config_file(dir.path());
    let out = Command::new(BIN)
        .args([
            "admin",
            "revoke",
            "--idp",
            "corp",
            "--subject",
            "alice",
            "--reason",
            "stolen phone",
        ])
        .args(["--config", config.to_str().unwrap(), "--as", "ops"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, error, description) = error_of(
        exchange(
            &s,
            &form("mobile", &before, &[("audience", "prod-admin")]),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error.as_str()),
        (400, "access_denied"),
        "{description}"
    );
    assert!(description.contains("revoked"), "{description}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = crate::presented_tokens::app_id_token(&s.op, "alice", "alice-pw").await;
    let res = exchange(
        &s,
        &form("mobile", &after, &[("audience", "prod-admin")]),
        None,
    )
    .await;
    assert_eq!(res.status(), 200, "a token from after the revocation");
}
