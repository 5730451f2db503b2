//! A single-page app in real Chromium, served from its own loopback origin: it signs in at
//! the OpenID Provider (code + PKCE), exchanges the ID token at rolegate with `fetch`, and
//! shows the assumed-role ARN. The same page from an origin the app's `[[app]]` does not
//! list is refused by CORS (rolegate sends no CORS header for it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::helpers::{SetupOptions, free_port, spawn_with};

struct StaticServer(Child);

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_spa(port: u16) -> StaticServer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/spa");
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the static server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    StaticServer(child)
}

fn run_spa(start: &str, shot: &str) -> Json {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg("spa.mjs")
        .current_dir("tests/testbed/browser")
        .env("START_URL", start)
        .env("LOGIN_USER", "alice")
        .env("LOGIN_PASSWORD", "alice-pw")
        .env("ARTIFACTS", &artifacts)
        .env("SHOT", shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[tokio::test]
async fn a_single_page_app_exchanges_its_token_from_an_allowed_origin_only() {
    let (allowed, other) = (free_port(), free_port());
    let page = |p: u16| format!("http://127.0.0.1:{p}/index.html");
    let s = spawn_with(SetupOptions {
        extra: format!(
            "\n[[app]]\nid = \"spa\"\nidp = \"corp\"\naudience = \"app\"\nallowed_origins = [\"http://127.0.0.1:{allowed}\"]\n"
        ),
        app_redirects: Some(format!("{},{}", page(allowed), page(other))),
        ..SetupOptions::default()
    })
    .await;
    let _servers = (serve_spa(allowed), serve_spa(other));
    let query = format!(
        "?op={}&broker={}&app=spa&role=prod-admin",
        s.op.issuer(),
        s.app.address
    );
    let (ok_url, bad_url) = (
        format!("{}{query}", page(allowed)),
        format!("{}{query}", page(other)),
    );
    let (ok, bad) = tokio::task::spawn_blocking(move || {
        (
            run_spa(&ok_url, "spa-allowed"),
            run_spa(&bad_url, "spa-other-origin"),
        )
    })
    .await
    .unwrap();
    assert_eq!(ok["status"], "done", "{ok:#}");
    assert_eq!(
        ok["arn"], "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com",
        "{ok:#}"
    );
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert!(
        bad["error"].as_str().unwrap().contains("Failed to fetch"),
        "a CORS refusal: {bad:#}"
    );
    assert!(
        bad["console"].to_string().contains("CORS"),
        "Chromium reports the CORS block: {bad:#}"
    );

    // At the HTTP level: the allowed origin gets CORS headers (and its preflight is
    // answered); another origin, and every other path, gets none.
    let c = reqwest::Client::new();
    let pre = c
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/oauth/token", s.app.address),
        )
        .header("Origin", format!("http://127.0.0.1:{allowed}"))
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        format!("http://127.0.0.1:{allowed}").as_str()
    );
    for (origin, path) in [
        (format!("http://127.0.0.1:{other}"), "/oauth/token"),
        (format!("http://127.0.0.1:{allowed}"), "/healthz"),
    ] {
        let res = c
            .get(format!("{}{path}", s.app.address))
            .header("Origin", &origin)
            .send()
            .await
            .unwrap();
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{origin} {path}"
        );
    }
}
