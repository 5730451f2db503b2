//! The CLI's container-credentials endpoint as SDKs use it: `rolegate serve-credentials`
//! read by boto3 and by the AWS SDK for Rust's container provider, each a child process
//! with only `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN`
//! set; credentials refreshed across their expiry; a wrong or missing token refused; one
//! role per path; `rolegate exec --ecs-server`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::{broker, logged_in_cli};
use crate::helpers::{OidcSetup, VENV};

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

/// A developer's machine logged in to `s` (tokens in the 0600 file).
pub(crate) async fn logged_in_machine(s: &OidcSetup) -> tempfile::TempDir {
    let t = logged_in_cli(s).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rolegate");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("config.toml"),
        format!("broker = \"{}\"\ntoken_store = \"file\"\n", s.app.address),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tokens = json!({
        "broker": s.app.address, "client_id": "rolegate-cli",
        "access_token": t["access_token"],
        "access_expires_at": now + t["expires_in"].as_u64().unwrap(),
        "refresh_token": t["refresh_token"],
    });
    std::fs::write(conf.join("tokens.json"), tokens.to_string()).unwrap();
    dir
}

pub(crate) fn rolegate(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", format!("{VENV}/bin:/usr/local/bin:/usr/bin:/bin"))
        .env("HOME", home)
        .env("ROLEGATE_CONFIG_DIR", home.join("rolegate"));
    cmd
}

fn cache_file(home: &Path, role: &str) -> PathBuf {
    home.join("rolegate")
        .join("cache")
        .join(format!("{role}.json"))
}

/// Makes the cached credentials look `left` seconds from expiry (as if time had passed).
fn expire_cache_in(home: &Path, role: &str, left: u64) {
    let path = cache_file(home, role);
    let mut j: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(left);
    j["Expiration"] = json!(humantime::format_rfc3339_seconds(at).to_string());
    std::fs::write(&path, j.to_string()).unwrap();
}

fn cached_key(home: &Path, role: &str) -> String {
    let j: Json =
        serde_json::from_str(&std::fs::read_to_string(cache_file(home, role)).unwrap()).unwrap();
    j["AccessKeyId"].as_str().unwrap().to_owned()
}

/// `rolegate serve-credentials …` running, with the two variables it printed.
struct Served {
    child: Child,
    uri: String,
    token: String,
    other_lines: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(home: &Path, roles: &[&str]) -> Served {
    let mut args = vec!["serve-credentials"];
    for r in roles {
        args.extend(["--role", r]);
    }
    let mut cmd = rolegate(home, &args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let more = roles.len() - 1;
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut uri, mut token, mut other_lines) = (String::new(), String::new(), vec![]);
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(v) = line.strip_prefix("export AWS_CONTAINER_CREDENTIALS_FULL_URI=") {
                uri = v.to_owned();
            } else if let Some(v) = line.strip_prefix("export AWS_CONTAINER_AUTHORIZATION_TOKEN=") {
                token = v.to_owned();
                // The other roles' lines follow the token.
                other_lines.extend(lines.by_ref().take(more).map_while(Result::ok));
                break;
            }
        }
        assert!(!uri.is_empty() && !token.is_empty(), "no variables printed");
        Served {
            child,
            uri,
            token,
            other_lines,
        }
    })
    .await
    .unwrap()
}

/// boto3 in a child process with only the two variables: prints the access key id it
/// holds each time a line arrives on stdin (refreshing as botocore decides).
struct Boto3 {
    child: Child,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Boto3 {
    fn start(uri: &str, token: &str) -> Self {
        let script = "import boto3, sys\n\
                      s = boto3.Session(region_name='us-east-1')\n\
                      for _ in sys.stdin:\n\
                      \x20   try:\n\
                      \x20       print('KEY=' + s.get_credentials().get_frozen_credentials().access_key, flush=True)\n\
                      \x20   except Exception as e:\n\
                      \x20       print('ERROR=' + repr(e).replace('\\n', ' '), flush=True)\n";
        let mut child = Command::new(format!("{VENV}/bin/python"))
            .args(["-c", script])
            .env_clear()
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, out }
    }

    async fn key(mut self) -> (Self, String) {
        tokio::task::spawn_blocking(move || {
            writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
            let line = self.out.next().unwrap().unwrap();
            (self, line)
        })
        .await
        .unwrap()
    }
}

impl Drop for Boto3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS SDK for Rust's container provider in a child process (this test binary, in
/// the ignored test below) with only the two variables.
async fn rust_sdk(uri: &str, token: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let (uri, token) = (uri.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = Command::new(exe)
            .args([
                "--exact",
                "container::the_rust_sdk_container_provider_as_a_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("KEY=") || l.starts_with("ERROR="))
            .unwrap_or_else(|| panic!("the child printed nothing usable:\n{text}"))
            .to_owned()
    })
    .await
    .unwrap()
}

/// Run by [`rust_sdk`] as a child process; reads the endpoint the environment names.
#[tokio::test]
#[ignore = "a child process of container::sdks_read_the_endpoint_and_refresh_across_expiry"]
async fn the_rust_sdk_container_provider_as_a_child() {
    let provider = aws_config::ecs::EcsCredentialsProvider::builder().build();
    match provider.credentials().await {
        Ok(c) => println!("\nKEY={}", c.access_key_id()),
        Err(e) => println!("\nERROR={}", format!("{e:?}").replace('\n', " ")),
    }
}

#[tokio::test]
async fn sdks_read_the_endpoint_and_refresh_across_expiry() {
    let s = broker().await;
    let machine = logged_in_machine(&s).await;
    let home = machine.path();
    let served = serve(home, &["prod-admin", "prod-readonly"]).await;
    assert!(
        served.uri.starts_with("http://127.0.0.1:") && served.uri.ends_with("/role/prod-admin"),
        "{}",
        served.uri
    );
    assert_eq!(served.token.len(), 43, "a 32-byte random token");
    let readonly_uri = served
        .uri
        .replace("/role/prod-admin", "/role/prod-readonly");
    assert!(
        served.other_lines.iter().any(|l| l.contains(&readonly_uri)),
        "{:?}",
        served.other_lines
    );
    let first = cached_key(home, "prod-admin");

    // Wrong, missing or another scheme's token: 401 with a JSON body; nothing served.
    let http = Client::new();
    for auth in [
        None,
        Some("wrong"),
        Some(format!("Bearer {}", served.token).as_str()),
    ] {
        let mut req = http.get(&served.uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        let body: Json = res.json().await.unwrap();
        assert!(body["AccessKeyId"].is_null(), "{body}");
        assert_eq!(body["code"], "Unauthorized", "{body}");
    }
    // One role per path; roles not served are 404 with what is served.
    let res = http
        .get(served.uri.replace("prod-admin", "dev-admin"))
        .header("authorization", &served.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("/role/prod-readonly"));
    let res = http
        .get(&readonly_uri)
        .header("authorization", &served.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["AccessKeyId"], cached_key(home, "prod-readonly"));
    assert!(body["Token"].as_str().is_some_and(|t| !t.is_empty()));

    // The Rust SDK's container provider: the cached credentials; a wrong token refused.
    assert_eq!(
        rust_sdk(&served.uri, &served.token).await,
        format!("KEY={first}")
    );
    let wrong = rust_sdk(&served.uri, "not-the-token").await;
    assert!(
        wrong.starts_with("ERROR=") && wrong.contains("401"),
        "{wrong}"
    );

    // boto3 gets credentials 700 s from expiry (as if they had been served a while): it
    // refreshes at each use from now on (botocore: less than 15 minutes left) and the
    // endpoint still serves them from the cache.
    expire_cache_in(home, "prod-admin", 700);
    let boto = Boto3::start(&served.uri, &served.token);
    let (boto, key) = boto.key().await;
    assert_eq!(key, format!("KEY={first}"));
    let (boto, key) = boto.key().await;
    assert_eq!(key, format!("KEY={first}"), "served from the cache");
    // Then they come close to expiry: the endpoint fetches new ones from the broker and
    // the running boto3 process moves to them.
    expire_cache_in(home, "prod-admin", 100);
    let (boto, key) = boto.key().await;
    let second = cached_key(home, "prod-admin");
    assert_ne!(second, first, "the endpoint fetched new credentials");
    assert_eq!(key, format!("KEY={second}"));
    drop(boto);
    // The Rust SDK sees the new ones too.
    assert_eq!(
        rust_sdk(&served.uri, &served.token).await,
        format!("KEY={second}")
    );
    // An hour-long credential with 10 minutes left is fine for credential_process (5
    // minutes' margin) but not for SDKs, which would come back at every use: the
    // endpoint fetches new ones.
    let before = cached_key(home, "prod-readonly");
    expire_cache_in(home, "prod-readonly", 600);
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3000);
    std::fs::File::options()
        .append(true)
        .open(cache_file(home, "prod-readonly"))
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let body: Json = http
        .get(&readonly_uri)
        .header("authorization", &served.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(body["AccessKeyId"], before.as_str(), "fetched anew");
    assert_eq!(body["AccessKeyId"], cached_key(home, "prod-readonly"));

    // boto3 with the wrong token fails (no credentials), never reads another source.
    let (_, key) = Boto3::start(&served.uri, "wrong").key().await;
    assert!(key.starts_with("ERROR="), "{key}");
    assert!(!key.contains(&second));
}

#[tokio::test]
async fn exec_with_an_endpoint_and_mistakes_at_start() {
    let s = broker().await;
    let machine = logged_in_machine(&s).await;
    let home = machine.path().to_owned();
    // exec --ecs-server: the command sees the endpoint (no fixed keys) and boto3 reads it.
    let script = "import boto3, os\n\
                  assert 'AWS_ACCESS_KEY_ID' not in os.environ\n\
                  print(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'])\n\
                  print('KEY=' + boto3.Session().get_credentials().get_frozen_credentials().access_key)\n";
    let mut cmd = rolegate(
        &home,
        &[
            "exec",
            "--role",
            "prod-admin",
            "--ecs-server",
            "--",
            "python",
            "-c",
            script,
        ],
    );
    cmd.env("AWS_ACCESS_KEY_ID", "AKIASTALE");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains(&format!("KEY={}", cached_key(&home, "prod-admin"))));

    // A role the rules do not grant: refused at start, in one line, nothing served.
    let mut cmd = rolegate(&home, &["serve-credentials", "--role", "no-such-role"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot get credentials for no-such-role"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // Not logged in: the same, with what to do.
    let empty = tempfile::tempdir().unwrap();
    let out = rolegate(empty.path(), &["serve-credentials", "--role", "prod-admin"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rolegate login"), "{err}");
}
