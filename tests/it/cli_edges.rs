//! The CLI at its edges, as a new user meets them: a broker that cannot be reached fails
//! the login at once; a device login always prints the complete link (even into a pipe);
//! a forged loopback callback shows the browser the failure the terminal reports; and the
//! login's tokens kept in the Secret Service (a headless gnome-keyring in a private D-Bus
//! session), or in a 0600 file where there is no keychain.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli_login::{CLI_CONFIG, approve_device};
use crate::helpers::{OidcSetup, SetupOptions, spawn_with};
use crate::oidc::signed_in_as;

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

fn clean_env(cmd: &mut Command, dir: &Path) {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("HOSTNAME", "build-box")
        .env("ROLEGATE_CONFIG_DIR", dir.join("rolegate"))
        .env("RUST_BACKTRACE", "0");
}

async fn broker() -> OidcSetup {
    spawn_with(SetupOptions {
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await
}

#[test]
fn a_login_at_a_broker_that_does_not_answer_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    for args in [vec!["--no-browser"], vec!["--device-code"]] {
        let mut cmd = Command::new(BIN);
        cmd.args(["login", "--broker", &format!("http://127.0.0.1:{port}")])
            .args(&args);
        clean_env(&mut cmd, dir.path());
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?}: took {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains("cannot reach the broker"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("Approve this login"), "{args:?}: {stderr}");
    }
}

/// With stderr a pipe (no terminal: no QR code, no spinner), the device login still
/// prints the complete pre-filled link.
#[tokio::test]
async fn a_device_login_prints_the_complete_link_into_a_pipe() {
    let s = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["login", "--device-code", "--broker", &s.app.address]);
    clean_env(&mut cmd, dir.path());
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let link = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("/device?user_code="))
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let link = link.expect("the complete link is printed");
    assert!(
        link.trim()
            .starts_with(&format!("{}/device?user_code=", s.app.address)),
        "{link}"
    );
}

/// A callback to the CLI's loopback that is not the broker's answer (another state): the
/// browser is told the login failed, as the terminal is; a real answer shows success only
/// after the code was exchanged.
#[tokio::test]
async fn the_loopback_page_shows_the_outcome_of_the_exchange() {
    let s = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["login", "--no-browser", "--broker", &s.app.address]);
    clean_env(&mut cmd, dir.path());
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (url, rest) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(&mut stderr);
        let mut url = None;
        for line in reader.by_ref().lines().map_while(Result::ok) {
            if line.trim().starts_with("http") && line.contains("/oauth/authorize?") {
                url = Some(line.trim().to_owned());
                break;
            }
        }
        (url, stderr)
    })
    .await
    .unwrap();
    let url = url.expect("the authorize URL is printed");
    let redirect = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let port = url::Url::parse(&redirect).unwrap().port().unwrap();
    // A forged callback: a code, but another login's state.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /callback?code=forged&state=someone-elses HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    assert!(page.contains("Login failed"), "{page}");
    assert!(!page.contains("Logged in"), "{page}");
    let out = tokio::task::spawn_blocking(move || {
        let mut rest_text = String::new();
        let mut rest = rest;
        let _ = rest.read_to_string(&mut rest_text);
        let status = child.wait().unwrap();
        (status, rest_text)
    })
    .await
    .unwrap();
    assert_eq!(out.0.code(), Some(1));
    assert!(out.1.contains("another login's state"), "{}", out.1);
}

/// The login's tokens in the Secret Service: a private D-Bus session with a headless
/// gnome-keyring; `token_store = "keychain"`. The keyring holds them (secret-tool reads
/// them back), no tokens.json is written, and the CLI works from the keyring. Without a
/// D-Bus session, `auto` keeps them in the 0600 file.
#[tokio::test]
async fn tokens_live_in_the_secret_service_when_there_is_one() {
    let s = broker().await;
    let (b, _) = signed_in_as(&s, "alice", "alice-pw").await;
    let dir = tempfile::tempdir().unwrap();
    let rg = dir.path().join("rolegate");
    std::fs::create_dir_all(&rg).unwrap();
    std::fs::write(rg.join("config.toml"), "token_store = \"keychain\"\n").unwrap();
    let service = format!("rolegate-test-{:x}", rand::random::<u32>());
    let script = format!(
        "set -e\n\
         echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null\n\
         {BIN} login --device-code --broker {broker} 2> {d}/login.err\n\
         secret-tool lookup service {service} username tokens > {d}/secret.out\n\
         {BIN} whoami > {d}/whoami.out\n\
         ls -a {d}/rolegate > {d}/ls.out\n",
        broker = s.app.address,
        d = dir.path().display(),
    );
    let mut cmd = Command::new("dbus-run-session");
    cmd.args(["--", "bash", "-c", &script]);
    clean_env(&mut cmd, dir.path());
    cmd.env("ROLEGATE_KEYCHAIN_SERVICE", &service)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .expect("dbus-run-session (tests/run.sh installs it)");
    // The user code, from the login's stderr.
    let err_file = dir.path().join("login.err");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        let text = std::fs::read_to_string(&err_file).unwrap_or_default();
        if let Some(c) = text.lines().map(str::trim).find(|t| {
            t.len() == 9
                && t.as_bytes()[4] == b'-'
                && t.chars()
                    .filter(|c| *c != '-')
                    .all(|c| c.is_ascii_uppercase())
        }) {
            break c.to_owned();
        }
        assert!(Instant::now() < deadline, "no user code:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let res = approve_device(&s, &b, &code, "approve").await;
    assert_eq!(res.status(), 200);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        read("login.err")
    );
    let secret = read("secret.out");
    assert!(
        secret.contains("\"refresh_token\"") && secret.contains("rgr_"),
        "the keyring holds the login: {secret}"
    );
    assert!(
        read("whoami.out").contains("alice"),
        "{}",
        read("whoami.out")
    );
    assert!(
        !read("ls.out").contains("tokens.json"),
        "{}",
        read("ls.out")
    );

    // No D-Bus session (a server): `auto` keeps the tokens in a 0600 file.
    let dir2 = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["login", "--device-code", "--broker", &s.app.address]);
    clean_env(&mut cmd, dir2.path());
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let code = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
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
    .unwrap();
    assert_eq!(approve_device(&s, &b, &code, "approve").await.status(), 200);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let file = dir2.path().join("rolegate/tokens.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}
