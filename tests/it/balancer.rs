//! Three broker instances behind a real HAProxy (round-robin, no stickiness, health checks
//! on `/readyz`) on one Redis: a person signs in through the balancer (each hop on
//! whichever instance it picks), then a rolling restart of all three under steady
//! requests loses none, and no request without a session ever gets the role picker; and
//! `kill -9` of one of three `rolegate serve` processes loses only requests in flight on it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli_login::CLI_CONFIG;
use crate::helpers::{SetupOptions, free_port, shared_redis, spawn_with, unique_prefix};
use crate::oidc::{is_signed_in, signed_in_as_alice};

struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy with health checks every 200 ms and no retries: a request sent to an instance
/// whose listener has closed fails, so only the pre-stop delay (the instance leaving the
/// pool before it stops listening) keeps a rolling restart lossless. (With a zero delay
/// this test fails with 503s.)
fn haproxy(dir: &std::path::Path, listen: u16, backends: &[u16]) -> HaProxy {
    haproxy_with(dir, listen, backends, "  retries 0\n")
}

/// As [`haproxy`] with `retry` lines in `defaults` (e.g. retries and redispatch).
fn haproxy_with(dir: &std::path::Path, listen: u16, backends: &[u16], retry: &str) -> HaProxy {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server b{i} 127.0.0.1:{p} check\n"))
        .collect();
    let cfg = format!(
        "global\n  maxconn 512\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n{retry}frontend fe\n  bind 127.0.0.1:{listen}\n  default_backend be\nbackend be\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  default-server inter 200ms fall 1 rise 1\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .args(["-f", path.to_str().unwrap(), "-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (tests/run.sh installs it)");
    HaProxy(child)
}

#[tokio::test]
async fn a_rolling_restart_of_three_instances_behind_haproxy_loses_no_request() {
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            shared_redis(),
            unique_prefix("haproxy")
        ),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    // The broker the setup started listens on the public address; it makes way for the
    // balancer, and three instances on their own ports take over.
    let public = s.app.address.clone();
    let lb_port: u16 = public.rsplit(':').next().unwrap().parse().unwrap();
    let pre_stop = Duration::from_millis(800);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut instances = Vec::new();
    for p in &ports {
        instances.push(s.spawn_instance_on(*p, pre_stop).await);
    }
    s.app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let _lb = haproxy(dir.path(), lb_port, &ports);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = reqwest::get(format!("{public}/readyz")).await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "haproxy did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Sign-in through the balancer: its hops land on whichever instance it picks.
    let (browser, _) = signed_in_as_alice(&s).await;
    assert!(is_signed_in(&s, &browser).await);

    // Steady requests (about 40 a second) while the instances restart one by one.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (running, public, browser) = (running.clone(), public.clone(), browser.clone());
        tokio::spawn(async move {
            let stranger = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let (mut ok, mut failed, mut i) = (0u32, Vec::new(), 0u32);
            while running.load(Ordering::Relaxed) {
                i += 1;
                match browser.get(format!("{public}/")).send().await {
                    Ok(r) if r.status() == 200 => {
                        let html = r.text().await.unwrap_or_default();
                        if html.contains("action=\"/logout\"") {
                            ok += 1;
                        } else {
                            failed.push("200 without the role picker".to_owned());
                        }
                    }
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(format!("error {e}")),
                }
                if i % 5 == 0 {
                    // No session: never the role picker, whatever happens to the instances.
                    if let Ok(r) = stranger.get(format!("{public}/")).send().await {
                        assert_ne!(r.status(), 200, "a request without a session got in");
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, port) in ports.iter().enumerate() {
        instances[i].stop_rolling().await;
        // The replacement comes a moment later (as a new pod would).
        tokio::time::sleep(Duration::from_millis(700)).await;
        instances[i] = s.spawn_instance_on(*port, pre_stop).await;
        // Let the balancer see it up again before the next one leaves.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    running.store(false, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    eprintln!(
        "rolling restart behind haproxy: {ok} requests served, {} failed",
        failed.len()
    );
    assert!(ok > 50, "{ok}");
    assert!(failed.is_empty(), "{failed:?}");
    for app in &instances {
        app.stop().await;
    }
}

/// Child processes killed when the test ends, even when it fails.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three `rolegate serve` processes behind HAProxy as deployed (retries on connection
/// failures, redispatch): `kill -9` of one under steady requests from four clients loses
/// at most the requests that were in flight on it (one per client).
#[tokio::test]
async fn kill_9_of_one_process_behind_haproxy_loses_only_requests_in_flight_on_it() {
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            shared_redis(),
            unique_prefix("kill9")
        ),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    let public = s.app.address.clone();
    let lb_port: u16 = public.rsplit(':').next().unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = s.config_file(dir.path());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs = Processes(Vec::new());
    for p in &ports {
        procs.0.push(
            Command::new(env!("CARGO_BIN_EXE_rolegate"))
                .args(["serve", "--config", config.to_str().unwrap()])
                .env("ROLEGATE_SERVER__LISTEN", format!("127.0.0.1:{p}"))
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    s.app.stop().await;
    let _lb = haproxy_with(
        dir.path(),
        lb_port,
        &ports,
        "  retries 3\n  option redispatch 1\n",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut up = 0;
        for p in &ports {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{p}/readyz")).await
                && r.status() == 200
            {
                up += 1;
            }
        }
        if up == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker processes did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (browser, _) = signed_in_as_alice(&s).await;

    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (running, public, browser) = (running.clone(), public.clone(), browser.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while running.load(Ordering::Relaxed) {
                    match browser.get(format!("{public}/")).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(format!("status {}", r.status())),
                        Err(e) => failed.push(format!("error {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed = Command::new("kill")
        .args(["-KILL", &procs.0[1].id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "kill -9 behind haproxy: {ok} requests served, {} failed",
        failed.len()
    );
    assert!(ok > 100, "{ok}");
    assert!(
        failed.len() <= 4,
        "more than the requests in flight were lost: {failed:?}"
    );
}
