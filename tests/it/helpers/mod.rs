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

mod idps;
mod redis_cluster;

pub use idps::{OidcProvider, SamlIdp};
pub use redis_cluster::{RedisCluster, RedisSentinel, shared_cluster};

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

/// Runs `command` (a shell command line) so that it dies with this test process: a
/// shared server started from a `static` is never dropped, so `sh` watches our pid.
fn spawn_watched(command: &str, envs: &[(&str, String)]) -> Child {
    let script = format!(
        "{command} & r=$!; while kill -0 {pid} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.5; done; kill $r 2>/dev/null",
        pid = std::process::id()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("cannot run sh")
}

/// As [`spawn_watched`] for servers shared by the whole binary: a thread reaps the child.
fn spawn_shared(command: &str, envs: &[(&str, String)]) {
    let mut child = spawn_watched(command, envs);
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Whether an HTTP GET of `path` on the port answers with any status line.
fn http_answers(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1."))
}

fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up (tests/run.sh installs the testbed)");
}

pub const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testbed/.venv");

/// The STS emulator (moto server), one per test binary.
pub fn moto_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = free_port();
        spawn_shared(
            &format!("{VENV}/bin/moto_server -H 127.0.0.1 -p {port}"),
            &[],
        );
        wait_until("moto_server", Duration::from_secs(30), || {
            http_answers(port, "/moto-api/")
        });
        format!("http://127.0.0.1:{port}")
    })
}

/// Starts another moto server (e.g. with IAM authentication on); returns its URL.
pub fn start_moto(envs: &[(&str, String)]) -> String {
    let port = free_port();
    spawn_shared(
        &format!("{VENV}/bin/moto_server -H 127.0.0.1 -p {port}"),
        envs,
    );
    wait_until("moto_server", Duration::from_secs(30), || {
        http_answers(port, "/moto-api/")
    });
    format!("http://127.0.0.1:{port}")
}

/// The fake AWS federation endpoint + console (tests/testbed/federation), one per binary.
pub fn federation_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = free_port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/testbed/federation/fake_federation.py"
        );
        spawn_shared(
            &format!("{VENV}/bin/python {script}"),
            &[
                ("FEDERATION_PORT", port.to_string()),
                ("STS_ENDPOINT", moto_url().to_owned()),
            ],
        );
        wait_until("fake federation endpoint", Duration::from_secs(30), || {
            http_answers(port, "/healthz")
        });
        format!("http://127.0.0.1:{port}")
    })
}

/// A redis-server on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::start_on(free_port()) {
                return server;
            }
        }
        panic!("redis-server did not start; is it installed? (tests/run.sh installs it)");
    }

    /// A redis-server on `port` (e.g. one a broker already points at), if it comes up.
    pub fn start_on(port: u16) -> Option<Self> {
        {
            let child = spawn_watched(
                &format!(
                    "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning"
                ),
                &[],
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if redis_answers(port) {
                    return Some(Self { port, child });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut child = child;
            let _ = child.kill();
        }
        None
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
    config_with_aws(session, "", extra)
}

/// As [`config_from`], with the body of `[aws]`.
pub fn config_with_aws(session: &str, aws: &str, extra: &str) -> Config {
    let text = config_text_with_aws(session, aws, extra);
    config::from_str(&text, Path::new("tests/it/inline.toml"), Vec::new())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// The TOML text of [`config_with_aws`] (paths relative to `tests/it/`).
pub fn config_text_with_aws(session: &str, aws: &str, extra: &str) -> String {
    // A short drain for quick stops; the STS deadline may not exceed it.
    let sts_default = if aws.contains("sts_timeout") {
        ""
    } else {
        "sts_timeout = \"5s\"\n"
    };
    let aws = format!("{sts_default}{aws}");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
log_format = "text"
shutdown_timeout = "5s"

[session]
{session}

[aws]
{aws}

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
    )
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
    spawn_app_with(config, rolegate::web::BuildOptions::default()).await
}

/// As [`spawn_app`], with build options (e.g. the broker's AWS credentials).
pub async fn spawn_app_with(config: Config, options: rolegate::web::BuildOptions) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        rolegate::telemetry::init(rolegate::config::LogFormat::Text, "debug");
    }
    let app = Application::build_with(config, options)
        .await
        .expect("app builds");
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

/// A broker on a chosen free port with one OIDC IdP ("corp") pointing at a fresh OP, its
/// audit log in a temporary file.
pub struct OidcSetup {
    pub app: TestApp,
    pub op: OidcProvider,
    pub callback: String,
    pub ssp: Option<SamlIdp>,
    broker_port: u16,
    audit_dir: tempfile::TempDir,
    opts: SetupOptions,
}

/// How [`spawn_with`] sets a broker up; `Default` is one OIDC IdP, memory store, moto.
#[derive(Clone)]
pub struct SetupOptions {
    /// The body of `[session]`.
    pub session: String,
    /// More `[[idp]]` tables.
    pub extra_idps: String,
    /// More `[aws]` keys (e.g. `sts_mode = "web_identity"`).
    pub aws_extra: String,
    /// The STS endpoint; default: the shared moto server.
    pub sts_endpoint: Option<String>,
    /// Appended to the config (e.g. `[web_identity]`).
    pub extra: String,
    /// The broker's own AWS credentials.
    pub credentials: rolegate::access::StaticAwsCredentials,
    /// Also start SimpleSAMLphp and configure it as SAML IdP "ssp".
    pub saml: bool,
    /// More keys for the "corp" OIDC IdP (e.g. `use_userinfo = true`).
    pub corp_extra: String,
    /// More keys (or sub-tables) for the "ssp" SAML IdP.
    pub ssp_extra: String,
    /// Where the audit log goes instead of a temporary file (e.g. `/dev/full`).
    pub audit_file: Option<std::path::PathBuf>,
    /// The AWS federation endpoint instead of the shared fake one.
    pub federation: Option<String>,
    /// Redirect URIs of the test OP's public client "app" (a single-page app's pages).
    pub app_redirects: Option<String>,
}

/// The broker's own AWS credentials, as the tests hand them over.
pub fn aws_credentials(
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> rolegate::access::StaticAwsCredentials {
    rolegate::access::StaticAwsCredentials {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: secret_access_key.to_owned().into(),
        session_token: session_token.map(|t| t.to_owned().into()),
    }
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            session: "store = \"memory\"".into(),
            extra_idps: String::new(),
            aws_extra: String::new(),
            sts_endpoint: None,
            extra: String::new(),
            credentials: aws_credentials("testing", "testing", None),
            saml: false,
            corp_extra: String::new(),
            ssp_extra: String::new(),
            audit_file: None,
            federation: None,
            app_redirects: None,
        }
    }
}

impl OidcSetup {
    /// `[[idp]]`, accounts, roles and rules, then the test's own extra text.
    fn extra_section(&self) -> String {
        // `__ISSUER__` in extra IdPs: the test OP's issuer (known only once it runs).
        let mut extra_idps = self
            .opts
            .extra_idps
            .replace("__ISSUER__", &self.op.issuer());
        if let Some(ssp) = &self.ssp {
            extra_idps.push_str(&ssp.idp_config());
            extra_idps.push_str(&self.opts.ssp_extra);
            extra_idps.push('\n');
        }
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
{corp_extra}
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
console_destination = "/console/ec2/home"

[[role]]
id = "prod-readonly"
arn = "arn:aws:iam::111122223333:role/ReadOnly"
account = "prod"
display_name = "Read-only"
max_session_duration = "4h"

[[rule]]
id = "admins"
when = {{ group = "aws-admins" }}
grant = ["prod-admin", "dev-admin", "prod-readonly"]
[rule.session]
source_identity = "{{email}}"
tags = {{ idp = "{{idp}}", team = "platform" }}
transitive_tag_keys = ["team"]

[[rule]]
id = "devs"
when = {{ group = "developers" }}
grant = ["dev-admin"]
{extra}"#,
            issuer = self.op.issuer(),
            extra_idps = extra_idps,
            corp_extra = self.opts.corp_extra,
            extra = self.opts.extra,
        );
        extra
    }

    /// The `[aws]` keys: the STS emulator, the fake federation endpoint, the test's own.
    fn aws_section(&self) -> String {
        let aws = format!(
            "sts_endpoint_url = \"{sts}\"\nfederation_url = \"{fed_endpoint}\"\nconsole_url = \"{fed}/console/\"\n{more}",
            sts = self.opts.sts_endpoint.as_deref().unwrap_or(moto_url()),
            fed = federation_url(),
            fed_endpoint = self
                .opts
                .federation
                .clone()
                .unwrap_or_else(|| format!("{}/federation", federation_url())),
            more = self.opts.aws_extra,
        );
        aws
    }

    fn config(&self) -> Config {
        let (aws, extra) = (self.aws_section(), self.extra_section());
        let mut config = config_with_aws(&self.opts.session, &aws, &extra);
        self.fix_addresses(&mut config);
        config
    }

    /// The configuration as a TOML file for `rolegate serve` processes (its relative paths
    /// made absolute); the listen address comes from ROLEGATE_SERVER__LISTEN.
    pub fn config_file(&self, dir: &Path) -> std::path::PathBuf {
        let config = self.config();
        let tests_it = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
        let mut text = config_text_with_aws(
            &self.opts.session,
            &self.aws_section(),
            &self.extra_section(),
        )
        .replace(
            "../testbed/",
            &format!("{}/../testbed/", tests_it.display()),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!(
                "listen = \"127.0.0.1:0\"\npublic_url = \"{}\"",
                config.server.public_url.as_str().trim_end_matches('/')
            ),
        );
        text.push_str(&format!(
            "\n[audit]\nfile = \"{}\"\n",
            config.audit.file.clone().unwrap().display()
        ));
        let path = dir.join("rolegate.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn fix_addresses(&self, config: &mut Config) {
        config.server.listen = format!("127.0.0.1:{}", self.broker_port).parse().unwrap();
        config.server.public_url = format!("http://127.0.0.1:{}", self.broker_port)
            .parse()
            .unwrap();
        config.audit.file = Some(
            self.opts
                .audit_file
                .clone()
                .unwrap_or_else(|| self.audit_dir.path().join("audit.jsonl")),
        );
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

    fn build_options(&self) -> rolegate::web::BuildOptions {
        rolegate::web::BuildOptions {
            aws_credentials: Some(self.opts.credentials.clone()),
        }
    }

    /// Another broker instance with the same configuration (same public URL, same store),
    /// listening on its own port: what a load balancer would spread requests over.
    pub async fn spawn_another_instance(&self) -> TestApp {
        self.spawn_instance_on(0, Duration::ZERO).await
    }

    /// As [`OidcSetup::spawn_another_instance`], on `port` (0: any), with a pre-stop delay.
    pub async fn spawn_instance_on(&self, port: u16, pre_stop_delay: Duration) -> TestApp {
        let mut config = self.config();
        config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.server.pre_stop_delay = pre_stop_delay;
        let app = spawn_app_with(config, self.build_options()).await;
        wait_for_discovery(&app).await;
        app
    }

    /// Stops the broker and starts a new one with the same configuration and port.
    pub async fn restart_broker(&mut self) {
        self.app.stop().await;
        let app = spawn_app_with(self.config(), self.build_options()).await;
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
                .is_some_and(|a| !a.iter().any(|v| v == "corp" || v == "ssp"))
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
    spawn_with(SetupOptions::default()).await
}

pub async fn spawn_with_oidc_options(session: String, extra_idps: String) -> OidcSetup {
    spawn_with(SetupOptions {
        session,
        extra_idps,
        ..SetupOptions::default()
    })
    .await
}

pub async fn spawn_with(opts: SetupOptions) -> OidcSetup {
    let broker_port = free_port();
    let callback = format!("http://127.0.0.1:{broker_port}/oidc/corp/callback");
    let op = match &opts.app_redirects {
        Some(r) => OidcProvider::start_with_app(&callback, r),
        None => OidcProvider::start(&callback),
    };
    let ssp = opts.saml.then(|| {
        let base = format!("http://127.0.0.1:{broker_port}/saml/ssp");
        SamlIdp::start(&format!("{base}/metadata"), &format!("{base}/acs"))
    });
    let audit_dir = tempfile::tempdir().unwrap();
    let mut setup = OidcSetup {
        app: TestApp::placeholder(),
        op,
        ssp,
        callback,
        broker_port,
        audit_dir,
        opts,
    };
    setup.app = spawn_app_with(setup.config(), setup.build_options()).await;
    wait_for_discovery(&setup.app).await;
    setup
}

/// GETs `url` with `client` and returns the body (tests assert on the status separately
/// where it matters).
pub async fn page(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("request failed")
        .text()
        .await
        .expect("body")
}
