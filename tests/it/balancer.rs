//! Three `rolegate serve` processes behind a real HAProxy (round-robin, no stickiness,
//! health checks on `/readyz`) on a real Redis Cluster: OIDC and SAML sign-ins through the
//! balancer (each hop on whichever instance it picks), then a rolling restart with SIGTERM
//! under steady requests loses none, `kill -9` of one loses at most the requests in flight
//! on it, Redis Cluster and Sentinel failovers turn requests into 503s for the switch-over
//! only, and no request without a session ever gets the role picker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli_login::CLI_CONFIG;
use crate::helpers::{
    OidcSetup, SetupOptions, free_port, shared_cluster, spawn_with, unique_prefix,
};
use crate::oidc::{browser, is_signed_in, sign_in_from};

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

/// HAProxy with health checks every 200 ms; `retry` goes into `defaults`. With
/// `retries 0`, a request sent to an instance whose listener has closed fails, so only the
/// pre-stop delay (the instance leaving the pool before it stops listening) keeps a rolling
/// restart lossless (with a zero delay the rolling test fails with 503s).
fn haproxy(dir: &Path, listen: u16, backends: &[u16], retry: &str) -> Child {
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
    Command::new("haproxy")
        .args(["-f", path.to_str().unwrap(), "-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (tests/run.sh installs it)")
}

/// A `rolegate serve` process on `port` with the setup's configuration; its log goes to
/// `serve-PORT.log` next to the configuration.
fn serve(config: &Path, port: u16, pre_stop: &str) -> Child {
    let log = std::fs::File::create(config.with_file_name(format!("serve-{port}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rolegate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("ROLEGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ROLEGATE_SERVER__PRE_STOP_DELAY", pre_stop)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the instance on {port} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test's broker setup (OIDC provider, SimpleSAMLphp, config) with three serve
/// processes behind HAProxy on the setup's public address, on the shared Redis Cluster.
pub(crate) struct Balanced {
    pub(crate) s: OidcSetup,
    pub(crate) config: PathBuf,
    pub(crate) ports: Vec<u16>,
    procs: Processes,
    _lb: Processes,
    _dir: tempfile::TempDir,
}

async fn balanced(prefix: &str, pre_stop: &str, retry: &str) -> Balanced {
    let session = format!(
        "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
        shared_cluster().seed(),
        unique_prefix(prefix)
    );
    balanced_on(session, pre_stop, retry).await
}

/// As [`balanced`], with its own `[session]` (another Redis topology).
async fn balanced_on(session: String, pre_stop: &str, retry: &str) -> Balanced {
    balanced_with(session, "", pre_stop, retry).await
}

/// As [`balanced_on`], with more configuration after `[cli]` (e.g. `[admin]`).
pub(crate) async fn balanced_with(
    session: String,
    extra: &str,
    pre_stop: &str,
    retry: &str,
) -> Balanced {
    balanced_opts(
        SetupOptions {
            session,
            extra: extra.to_owned(),
            ..SetupOptions::default()
        },
        pre_stop,
        retry,
    )
    .await
}

/// Three instances from `opts` (with `[cli]` and SimpleSAMLphp added) behind HAProxy.
pub(crate) async fn balanced_opts(opts: SetupOptions, pre_stop: &str, retry: &str) -> Balanced {
    let s = spawn_with(SetupOptions {
        extra: format!("{CLI_CONFIG}{}", opts.extra),
        saml: true,
        ..opts
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = s.config_file(dir.path());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let procs = Processes(ports.iter().map(|p| serve(&config, *p, pre_stop)).collect());
    for p in &ports {
        wait_ready(*p).await;
    }
    // The broker the setup started listens on the public address: it makes way for the
    // balancer in front of the three processes.
    s.app.stop().await;
    let lb_port: u16 = s.app.address.rsplit(':').next().unwrap().parse().unwrap();
    let lb = Processes(vec![haproxy(dir.path(), lb_port, &ports, retry)]);
    wait_ready(lb_port).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Balanced {
        s,
        config,
        ports,
        procs,
        _lb: lb,
        _dir: dir,
    }
}

/// `clients` loops requesting the role picker with `browser`'s session (and, every fifth
/// time, without a session, which must never get it) until `running` is cleared: the
/// requests served and the failures.
fn steady_load(
    public: &str,
    browser: &reqwest::Client,
    clients: usize,
    running: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u32, Vec<String>)>> {
    (0..clients)
        .map(|_| {
            let (running, public, browser) = (running.clone(), public.to_owned(), browser.clone());
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
                            if r.text()
                                .await
                                .unwrap_or_default()
                                .contains("action=\"/logout\"")
                            {
                                ok += 1;
                            } else {
                                failed.push("200 without the role picker".to_owned());
                            }
                        }
                        Ok(r) => failed.push(format!("status {}", r.status())),
                        Err(e) => failed.push(format!("error {e}")),
                    }
                    if i % 5 == 0
                        && let Ok(r) = stranger.get(format!("{public}/")).send().await
                    {
                        // The sign-in page (or a redirect to it), never the role picker.
                        let body = r.text().await.unwrap_or_default();
                        assert!(
                            !body.contains("action=\"/logout\""),
                            "a request without a session got in"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (ok, failed)
            })
        })
        .collect()
}

/// An OIDC sign-in as alice through the balancer (two IdPs here: straight to `corp`).
async fn oidc_sign_in(s: &OidcSetup) -> reqwest::Client {
    let client = browser();
    let callback = sign_in_from(s, &client, "/login/corp", "alice", "alice-pw").await;
    assert_eq!(client.get(&callback).send().await.unwrap().status(), 303);
    client
}

async fn totals(clients: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>) -> (u32, Vec<String>) {
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

#[tokio::test]
async fn a_rolling_restart_with_sigterm_behind_haproxy_loses_no_request() {
    let mut b = balanced("rolling", "800ms", "  retries 0\n").await;
    let public = b.s.app.address.clone();
    // OIDC and SAML sign-ins through the balancer: their hops land on whichever instance
    // round-robin picks.
    let browser = oidc_sign_in(&b.s).await;
    assert!(is_signed_in(&b.s, &browser).await);
    let saml_browser = crate::oidc::browser();
    let (response, relay, acs) =
        crate::saml::saml_login_until_acs(&b.s, &saml_browser, "alice", "alice-pw").await;
    let res = saml_browser
        .post(&acs)
        .form(&[("SAMLResponse", &response), ("RelayState", &relay)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let finish = crate::oidc::location(&res);
    let res = saml_browser
        .get(format!("{public}{finish}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let html = crate::helpers::page(&saml_browser, format!("{public}/")).await;
    assert!(html.contains("Hello, alice@example.test"), "{html}");

    let running = Arc::new(AtomicBool::new(true));
    let load = steady_load(&public, &browser, 2, &running);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let pid = b.procs.0[i].id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = b.procs.0[i].wait().unwrap();
        assert_eq!(status.code(), Some(0), "exit after SIGTERM");
        // The replacement comes a moment later, as a new pod would.
        tokio::time::sleep(Duration::from_millis(700)).await;
        b.procs.0[i] = serve(&b.config, b.ports[i], "800ms");
        wait_ready(b.ports[i]).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    running.store(false, Ordering::Relaxed);
    let (ok, failed) = totals(load).await;
    eprintln!(
        "rolling restart behind haproxy: {ok} requests served, {} failed",
        failed.len()
    );
    assert!(ok > 100, "{ok}");
    assert!(failed.is_empty(), "{failed:?}");
}

/// As deployed (retries on connection failures, redispatch): `kill -9` of one process
/// under four steady clients loses at most the requests in flight on it (one per client).
#[tokio::test]
async fn kill_9_of_one_process_behind_haproxy_loses_only_requests_in_flight_on_it() {
    let b = balanced("kill9", "0s", "  retries 3\n  option redispatch 1\n").await;
    let public = b.s.app.address.clone();
    let browser = oidc_sign_in(&b.s).await;
    let running = Arc::new(AtomicBool::new(true));
    let load = steady_load(&public, &browser, 4, &running);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = b.procs.0[1].id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::Relaxed);
    let (ok, failed) = totals(load).await;
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

/// A topology's name, its `[session]`, and how to stop its master.
type FailoverCase<'a> = (&'static str, String, Box<dyn Fn() + 'a>);

/// A Redis failover under steady requests through HAProxy (three `rolegate serve`
/// processes): a Cluster master and a Sentinel master stopped. Requests are refused with
/// 503 for the switch-over only (never anything else, never a role picker without a
/// session), then all succeed again without restarting any broker, and the session
/// signed in before is still valid.
#[tokio::test]
async fn redis_failovers_under_load_through_haproxy_mean_503s_for_the_switch_over_only() {
    let cluster = crate::helpers::RedisCluster::start();
    let sentinel = crate::helpers::RedisSentinel::start();
    let cases: [FailoverCase; 2] = [
        (
            "cluster",
            format!(
                "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
                cluster.seed(),
                unique_prefix("lb-cluster")
            ),
            Box::new(|| {
                cluster.stop_a_master();
            }),
        ),
        (
            "sentinel",
            format!(
                "store = \"redis-sentinel\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
                sentinel.url(),
                unique_prefix("lb-sentinel")
            ),
            Box::new(|| sentinel.stop_master()),
        ),
    ];
    for (name, session, fail_over) in cases {
        let b = balanced_on(session, "0s", "  retries 3\n  option redispatch 1\n").await;
        let public = b.s.app.address.clone();
        let browser = oidc_sign_in(&b.s).await;
        // Let replicas catch up with the session before a master goes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let running = Arc::new(AtomicBool::new(true));
        let load = steady_load(&public, &browser, 2, &running);
        tokio::time::sleep(Duration::from_millis(500)).await;
        fail_over();
        // Until 20 role-picker requests in a row succeed (bounded).
        let started = Instant::now();
        let mut in_a_row = 0;
        while in_a_row < 20 {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "{name}: no recovery in 40 s"
            );
            let r = browser.get(format!("{public}/")).send().await.unwrap();
            in_a_row = if r.status() == 200 { in_a_row + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.store(false, Ordering::Relaxed);
        let (ok, failed) = totals(load).await;
        eprintln!(
            "{name} failover through haproxy: {ok} requests served, {} refused, recovered {:.1} s after the stop",
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            failed.iter().all(|f| f == "status 503 Service Unavailable"),
            "{name}: only 503s during the switch-over: {failed:?}"
        );
        assert!(
            is_signed_in(&b.s, &browser).await,
            "{name}: the session survived"
        );
    }
}

/// CLI logins refreshing their tokens through HAProxy while a Redis Cluster master is
/// stopped (with the role picker and bearer API under load): a rotation the failover
/// interrupts changes nothing, so the client's retry with the same refresh token works.
/// Nobody is ever told `invalid_grant` (which the rolegate CLI takes as a lost login), the
/// logins survive, and each instance logs the outage as one ERROR.
#[tokio::test]
async fn refresh_rotations_survive_a_cluster_failover_and_the_outage_is_one_story() {
    let cluster = crate::helpers::RedisCluster::start();
    // Everything alice holds lives in one hash slot: stop the master serving it (and seed
    // the brokers elsewhere).
    let tag = rolegate::store::PersonTag::of("corp", "alice");
    let master = cluster.master_of(&format!("{{{tag}}}"));
    let session = format!(
        "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
        cluster.seed_other_than(master),
        unique_prefix("lb-refresh")
    );
    let b = balanced_on(session, "0s", "  retries 3\n  option redispatch 1\n").await;
    let public = b.s.app.address.clone();
    let browser = oidc_sign_in(&b.s).await;
    let mut logins = Vec::new();
    for _ in 0..2 {
        let (verifier, challenge) = crate::cli_login::pkce();
        let code = crate::cli_login::approve_loopback(&b.s, &browser, &challenge).await;
        let tokens: serde_json::Value = crate::cli_login::exchange(&b.s, &code, &verifier)
            .await
            .json()
            .await
            .unwrap();
        logins.push(tokens);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let running = Arc::new(AtomicBool::new(true));
    let load = steady_load(&public, &browser, 2, &running);
    let refreshers: Vec<_> = logins
        .into_iter()
        .map(|tokens| {
            let (running, public) = (running.clone(), public.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut rt = tokens["refresh_token"].as_str().unwrap().to_owned();
                let mut at = tokens["access_token"].as_str().unwrap().to_owned();
                let (mut rotations, mut unavailable, mut wrong) = (0u32, 0u32, Vec::new());
                while running.load(Ordering::Relaxed) {
                    let res = c
                        .post(format!("{public}/oauth/token"))
                        .form(&[
                            ("grant_type", "refresh_token"),
                            ("client_id", "rolegate-cli"),
                            ("refresh_token", rt.as_str()),
                        ])
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 200 => {
                            let j: serde_json::Value = r.json().await.unwrap();
                            rt = j["refresh_token"].as_str().unwrap().to_owned();
                            at = j["access_token"].as_str().unwrap().to_owned();
                            rotations += 1;
                        }
                        // Retried with the same refresh token.
                        Ok(r) if r.status() == 503 => unavailable += 1,
                        Ok(r) => wrong.push(format!(
                            "refresh: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => wrong.push(format!("refresh: {e}")),
                    }
                    match c
                        .get(format!("{public}/api/v1/roles"))
                        .bearer_auth(&at)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 || r.status() == 503 => {}
                        Ok(r) => wrong.push(format!("api: {}", r.status())),
                        Err(e) => wrong.push(format!("api: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                // The login is still alive after the failover.
                let res = c
                    .post(format!("{public}/oauth/token"))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", "rolegate-cli"),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap();
                if res.status() != 200 {
                    wrong.push(format!("after the failover: {}", res.status()));
                }
                (rotations, unavailable, wrong)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop_node(master);
    let started = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no recovery in 40 s"
        );
        let r = browser.get(format!("{public}/")).send().await.unwrap();
        in_a_row = if r.status() == 200 { in_a_row + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Healthy long enough for every instance to end its outage story.
    tokio::time::sleep(Duration::from_secs(6)).await;
    running.store(false, Ordering::Relaxed);
    let (ok, failed) = totals(load).await;
    let (mut rotations, mut unavailable) = (0, 0);
    for r in refreshers {
        let (n, u, wrong) = r.await.unwrap();
        assert!(wrong.is_empty(), "{wrong:?}");
        rotations += n;
        unavailable += u;
    }
    eprintln!(
        "cluster failover under refreshes: {rotations} rotations, {unavailable} refreshes answered 503 and retried, {ok} picker requests, {} refused",
        failed.len()
    );
    assert!(rotations > 20, "{rotations} rotations");
    assert!(
        failed.iter().all(|f| f == "status 503 Service Unavailable"),
        "{failed:?}"
    );
    for port in &b.ports {
        let log =
            std::fs::read_to_string(b.config.with_file_name(format!("serve-{port}.log"))).unwrap();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.len() <= 1,
            "instance {port}: one outage, one ERROR: {errors:#?}"
        );
    }
}
