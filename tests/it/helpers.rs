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
    shutdown: rolegate::web::ShutdownHandle,
}

impl TestApp {
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
        self.shutdown.shutdown().await;
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
        shutdown,
    }
}
