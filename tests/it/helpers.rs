//! Test fixtures: a real redis-server per test binary (or per test when it must be
//! stopped), configs built from TOML text, and `spawn_app` on port 0.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rolegate::config::{self, Config};
use rolegate::web::Application;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A redis-server on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start() -> Self {
        for _ in 0..5 {
            let port = free_port();
            // `sh` watches this test process and kills redis when it exits, so a static
            // server shared by the whole binary never outlives the tests.
            let script = format!(
                "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning & r=$!; \
                 while kill -0 {pid} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.5; done; kill $r 2>/dev/null",
                pid = std::process::id()
            );
            let child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("cannot run sh; is redis-server installed? (tests/run.sh installs it)");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if redis_answers(port) {
                    return Self { port, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut child = child;
            let _ = child.kill();
        }
        panic!("redis-server did not start; is it installed? (tests/run.sh installs it)");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (and waits until the port no longer answers).
    pub fn stop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis_answers(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One redis-server shared by every test in the binary (tests isolate by key prefix).
pub fn shared_redis() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("ROLEGATE_TEST_REDIS_URL") {
            return url;
        }
        SERVER.get_or_init(RedisServer::start).url()
    })
}

/// A unique key prefix, so tests sharing a Redis never see each other's keys.
pub fn unique_prefix(test: &str) -> String {
    format!("test:{test}:{:016x}:", rand::random::<u64>())
}

/// The smallest config a broker starts with; `extra` is appended (sections may be added).
pub fn config_from(session: &str, extra: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
log_format = "text"
shutdown_timeout = "5s"

[session]
{session}

[[account]]
id = "dev"
number = "444455556666"
display_name = "Development"

[[role]]
id = "dev-admin"
arn = "arn:aws:iam::444455556666:role/DevAdmin"
account = "dev"

{extra}
"#
    );
    config::from_str(&text, Path::new("tests/it/inline.toml"), Vec::new())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    shutdown: Option<rolegate::web::ShutdownHandle>,
}

impl TestApp {
    fn placeholder() -> Self {
        Self {
            address: String::new(),
            client: reqwest::Client::new(),
            shutdown: None,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get_html(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .header("accept", "text/html")
            .send()
            .await
            .expect("request failed")
    }

    pub async fn stop(&self) {
        if let Some(s) = &self.shutdown {
            s.shutdown().await;
        }
    }
}

/// Starts the real application on a random port with `config`.
pub async fn spawn_app(config: Config) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        rolegate::telemetry::init(rolegate::config::LogFormat::Text, "debug");
    }
    let app = Application::build(config).expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        shutdown: Some(shutdown),
    }
}

/// The real OpenID Provider (npm oidc-provider, tests/testbed/op) on a free port, killed
/// on drop. `redirect` is the broker callback it accepts.
pub struct OidcProvider {
    pub port: u16,
    child: Child,
    pub jwks_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    pub fn start(redirect: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let jwks_file = dir.path().join("jwks.json");
        let port = free_port();
        let child = Self::spawn(port, redirect, &jwks_file, "key-1");
        Self {
            port,
            child,
            jwks_file,
            _dir: dir,
        }
    }

    fn spawn(port: u16, redirect: &str, jwks: &Path, kid: &str) -> Child {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir("tests/testbed/op")
            .env("OP_PORT", port.to_string())
            .env("OP_REDIRECTS", redirect)
            .env("OP_JWKS_FILE", jwks)
            .env("OP_KID", kid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run node; tests/run.sh installs the test OP");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("oidc-provider did not start on port {port}");
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Restarts the provider with a brand-new signing key (a new kid): key rotation.
    pub fn rotate_key(&mut self, redirect: &str, kid: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.jwks_file);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Self::spawn(self.port, redirect, &self.jwks_file, kid);
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker on a chosen free port with one OIDC IdP ("corp") pointing at a fresh OP, its
/// audit log in a temporary file.
pub struct OidcSetup {
    pub app: TestApp,
    pub op: OidcProvider,
    pub callback: String,
    broker_port: u16,
    session: String,
    extra_idps: String,
    audit_dir: tempfile::TempDir,
}

impl OidcSetup {
    fn config(&self) -> Config {
        let extra = format!(
            r#"
[[idp]]
id = "corp"
kind = "oidc"
display_name = "Corp SSO"
issuer = "{issuer}"
client_id = "broker"
client_secret = {{ file = "../testbed/op/client-secret" }}
scopes = ["email", "profile", "groups"]
{extra_idps}
[[account]]
id = "prod"
number = "111122223333"
display_name = "Production"

[[role]]
id = "prod-admin"
arn = "arn:aws:iam::111122223333:role/Admin"
account = "prod"
display_name = "Administrator"

[[rule]]
id = "admins"
when = {{ group = "aws-admins" }}
grant = ["prod-admin", "dev-admin"]

[[rule]]
id = "devs"
when = {{ group = "developers" }}
grant = ["dev-admin"]
"#,
            issuer = self.op.issuer(),
            extra_idps = self.extra_idps,
        );
        let mut config = config_from(&self.session, &extra);
        config.server.listen = format!("127.0.0.1:{}", self.broker_port).parse().unwrap();
        config.server.public_url = format!("http://127.0.0.1:{}", self.broker_port)
            .parse()
            .unwrap();
        config.audit.file = Some(self.audit_dir.path().join("audit.jsonl"));
        config
    }

    pub fn audit_path(&self) -> std::path::PathBuf {
        self.audit_dir.path().join("audit.jsonl")
    }

    /// Every audit record written so far.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    /// Stops the broker and starts a new one with the same configuration and port.
    pub async fn restart_broker(&mut self) {
        self.app.stop().await;
        let app = spawn_app(self.config()).await;
        self.app = TestApp {
            client: self.app.client.clone(),
            ..app
        };
        wait_for_discovery(&self.app).await;
    }
}

/// Waits until the broker's discovery of the "corp" IdP has succeeded.
async fn wait_for_discovery(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(res) = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
        {
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            if body["idps_unavailable"]
                .as_array()
                .is_some_and(|a| !a.iter().any(|v| v == "corp"))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "OIDC discovery of corp did not succeed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One OIDC IdP, the in-memory store.
pub async fn spawn_with_oidc() -> OidcSetup {
    spawn_with_oidc_options("store = \"memory\"".into(), String::new()).await
}

/// `session` is the body of `[session]`; `extra_idps` more `[[idp]]` tables.
pub async fn spawn_with_oidc_options(session: String, extra_idps: String) -> OidcSetup {
    let broker_port = free_port();
    let callback = format!("http://127.0.0.1:{broker_port}/oidc/corp/callback");
    let op = OidcProvider::start(&callback);
    let audit_dir = tempfile::tempdir().unwrap();
    let mut setup = OidcSetup {
        app: TestApp::placeholder(),
        op,
        callback,
        broker_port,
        session,
        extra_idps,
        audit_dir,
    };
    setup.app = spawn_app(setup.config()).await;
    wait_for_discovery(&setup.app).await;
    setup
}
