//! Several broker instances sharing one Redis Cluster (3 masters, 3 replicas): every hop
//! of every flow may land on a different instance, as behind a round-robin load balancer
//! without stickiness (sign-in, device login, token rotation, an exchange's replay
//! limit, sign-out); Redis failovers (Cluster, Sentinel), TLS with an ACL user, and the
//! Redis bytes per kind of state.

use reqwest::Client;
use serde_json::Value as Json;

use crate::cli_login::{CLI_CONFIG, approve_device_at};
use crate::helpers::{SetupOptions, shared_cluster, spawn_with, unique_prefix};
use crate::oidc::sign_in_at;

#[tokio::test]
async fn three_instances_on_redis_cluster_serve_each_hop_of_sign_in_device_login_and_tokens() {
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            shared_cluster().seed(),
            unique_prefix("scale")
        ),
        extra: format!("{CLI_CONFIG}{}", crate::exchange::APPS),
        ..SetupOptions::default()
    })
    .await;
    let a = s.app.address.clone();
    let b = s.spawn_another_instance().await.address;
    let c = s.spawn_another_instance().await.address;
    let ready: Json = reqwest::get(format!("{b}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");

    // OIDC sign-in: started on B, the IdP's callback delivered to C, the session used on
    // A and B. (Cookies are per host, not per port: one browser for all three.)
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let callback = sign_in_at(&s, &b, &browser, "/login/corp", "alice", "alice-pw").await;
    let on_c = callback.replace(&a, &c);
    let res = browser.get(&on_c).send().await.unwrap();
    assert_eq!(res.status(), 303, "callback on another instance");
    for base in [&a, &b, &c] {
        let html = browser
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("action=\"/logout\""), "signed in on {base}");
    }

    // Device login: started on A, approved on B, redeemed on C.
    let d: Json = Client::new()
        .post(format!("{a}/oauth/device_authorization"))
        .form(&[("client_id", "rolegate-cli"), ("device_name", "build-box")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = d["user_code"].as_str().unwrap();
    let res = approve_device_at(&b, &browser, code, "approve").await;
    assert_eq!(res.status(), 200);
    let token = |base: String, form: Vec<(&'static str, String)>| async move {
        Client::new()
            .post(format!("{base}/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap()
    };
    let redeem = || {
        vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".into(),
            ),
            ("device_code", d["device_code"].as_str().unwrap().into()),
            ("client_id", "rolegate-cli".into()),
        ]
    };
    let res = token(c.clone(), redeem()).await;
    assert_eq!(res.status(), 200);
    let tokens: Json = res.json().await.unwrap();
    // Redeemed once: a second poll, on another instance, is refused.
    let again = token(a.clone(), redeem()).await;
    assert_eq!(again.status(), 400);

    // The access token works on every instance; the refresh token rotates on one, and the
    // rotated token reused elsewhere after the interval revokes the login everywhere.
    let access = tokens["access_token"].as_str().unwrap();
    for base in [&a, &b, &c] {
        let res = Client::new()
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{base}");
    }
    let refresh = |base: String, rt: String| {
        token(
            base,
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", rt),
                ("client_id", "rolegate-cli".into()),
            ],
        )
    };
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated: Json = refresh(b.clone(), rt.clone()).await.json().await.unwrap();
    let new_access = rotated["access_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        refresh(c.clone(), rt).await.status(),
        400,
        "reuse after the interval"
    );
    let res = Client::new()
        .get(format!("{a}/api/v1/me"))
        .bearer_auth(&new_access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "the whole login is revoked, on every instance"
    );

    // An app's ID token exchanged once (the default limit) on B cannot be replayed on C.
    let id_token = crate::presented_tokens::app_id_token(&s.op, "alice", "alice-pw").await;
    let exchange = |base: String| {
        let id_token = id_token.clone();
        async move {
            Client::new()
                .post(format!("{base}/oauth/token"))
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("client_id", "mobile"),
                    ("subject_token", id_token.as_str()),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:id_token",
                    ),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(exchange(b.clone()).await.status(), 200);
    let replay = exchange(c.clone()).await;
    assert_eq!(replay.status(), 400);
    let err: Json = replay.json().await.unwrap();
    assert_eq!(err["error"], "invalid_grant", "{err}");

    // Signing out on C ends the browser session on A: the old cookie, replayed there,
    // is not a session any more.
    use reqwest::cookie::CookieStore as _;
    let cookie = jar.cookies(&a.parse().unwrap()).expect("session cookie");
    let html = browser
        .get(format!("{c}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let res = browser
        .post(format!("{c}/logout"))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("signed out"));
    let res = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{a}/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed out everywhere");
}

/// A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI), in `dir`.
fn make_tls_files(dir: &std::path::Path, name: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        &format!("{name}-ca.key"),
        "-out",
        &format!("{name}-ca.crt"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &format!("{name}-server.key"),
        "-out",
        &format!("{name}-server.csr"),
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}-server.csr"),
        "-CA",
        &format!("{name}-ca.crt"),
        "-CAkey",
        &format!("{name}-ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        &format!("{name}-server.crt"),
    ]);
}

/// Redis over TLS (`rediss://`, a CA the test makes) with an ACL user whose password
/// comes from a `{ file }`: ready when all three are right, not ready (fail closed) with
/// another CA or a wrong password.
#[tokio::test]
async fn redis_over_tls_with_an_acl_user_and_fail_closed_on_a_wrong_ca_or_password() {
    let dir = tempfile::tempdir().unwrap();
    make_tls_files(dir.path(), "good");
    make_tls_files(dir.path(), "other");
    let port = crate::helpers::free_port();
    let d = dir.path().display();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            &format!("{d}/good-server.crt"),
            "--tls-key-file",
            &format!("{d}/good-server.key"),
            "--tls-ca-cert-file",
            &format!("{d}/good-ca.crt"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--user",
            "default",
            "off",
            "--user",
            "rolegate",
            "on",
            ">s3cret-pw",
            "~*",
            "&*",
            "+@all",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ready = |password: &str, ca: &str| {
        let url_file = dir.path().join(format!("url-{password}-{ca}"));
        std::fs::write(
            &url_file,
            format!("rediss://rolegate:{password}@127.0.0.1:{port}/"),
        )
        .unwrap();
        let session = format!(
            "store = \"redis\"\nredis_url = {{ file = \"{}\" }}\nredis_ca_file = \"{d}/{ca}-ca.crt\"\nkey_prefix = \"{}\"",
            url_file.display(),
            unique_prefix("tls")
        );
        async move {
            let app = crate::helpers::spawn_app(crate::helpers::config_from(&session, "")).await;
            let res = app.get("/readyz").await;
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert!(
                !body.contains("s3cret") && !body.contains("wrong-pw"),
                "{body}"
            );
            app.stop().await;
            status
        }
    };
    assert_eq!(ready("s3cret-pw", "good").await, 200, "TLS + ACL user");
    assert_eq!(
        ready("s3cret-pw", "other").await,
        503,
        "a certificate from another CA"
    );
    assert_eq!(ready("wrong-pw", "good").await, 503, "a wrong password");
    let _ = server.kill();
    let _ = server.wait();
}

/// A Redis Cluster master dies under load: requests whose keys lived on it get 503 (fail
/// closed) for the switch-over only, if at all; once its replica is promoted every request succeeds
/// again without restarting the broker, and a browser session signed in before is still
/// signed in (nobody logged out).
#[tokio::test]
async fn a_cluster_master_failover_means_503s_for_the_switch_over_only() {
    let cluster = crate::helpers::RedisCluster::start();
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            cluster.seed(),
            unique_prefix("failover")
        ),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    let (browser, _) = crate::oidc::signed_in_as_alice(&s).await;
    // Each device authorization writes new keys, spread over all slots.
    for _ in 0..20 {
        assert_eq!(device_start(&s).await, 200);
    }
    let port = cluster.stop_a_master();
    let (refused, took) = requests_until_recovered(&s, 30).await;
    eprintln!(
        "failover of master {port}: {refused} requests refused, recovered {took:.1} s after the stop"
    );
    // Often a few requests are refused; the client's retries may also ride the switch-over
    // out entirely. Either way: only 200 or 503, recovery, and the session kept.
    assert!(
        crate::oidc::is_signed_in(&s, &browser).await,
        "still signed in after the failover"
    );
}

/// What each kind of state costs in Redis (`MEMORY USAGE`, real redis-server), for the
/// capacity notes in the README: printed, and bounded so a change that bloats a record is
/// noticed.
#[tokio::test]
async fn redis_bytes_per_kind_of_state() {
    let prefix = unique_prefix("bytes");
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            crate::helpers::shared_redis()
        ),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    // A browser session; a pending sign-in (started, never finished); a device code; a
    // CLI login (a token family and an access token).
    let _signed_in = crate::oidc::signed_in_as_alice(&s).await;
    let pending = crate::oidc::browser();
    let res = pending
        .get(format!("{}/login/corp", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = Client::new()
        .post(format!("{}/oauth/device_authorization", s.app.address))
        .form(&[("client_id", "rolegate-cli"), ("device_name", "build-box")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _cli = crate::cli_login::logged_in_as(&s, "bob", "bob-pw").await;

    let port = crate::helpers::shared_redis()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut by_kind: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for key in cli(&["--scan", "--pattern", &format!("{prefix}*")]).lines() {
        let bytes: u64 = cli(&["memory", "usage", key]).trim().parse().unwrap_or(0);
        let rest = key.strip_prefix(&prefix).unwrap();
        // A person's records carry their hash tag first: `{tag}:kind:hash`.
        let rest = match rest.split_once("}:") {
            Some((tag, r)) if tag.starts_with('{') => r,
            _ => rest,
        };
        // The kind: the key without its random or hashed last part.
        let kind = rest
            .rsplit_once(':')
            .map(|(k, _)| k)
            .unwrap_or(rest)
            .to_owned();
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 = e.1.max(bytes);
    }
    eprintln!("Redis bytes per key kind (MEMORY USAGE, largest of each):");
    for (kind, (n, bytes)) in &by_kind {
        eprintln!("  {kind:<32} {n:>3} key(s)  {bytes:>5} B");
    }
    assert!(
        by_kind.keys().any(|k| k.starts_with("session")),
        "{by_kind:?}"
    );
    assert!(by_kind.keys().any(|k| k.contains("device")), "{by_kind:?}");
    for (kind, (_, bytes)) in &by_kind {
        assert!(*bytes < 4096, "{kind}: {bytes} B");
    }
}

/// Redis Sentinel: the broker finds the master through three sentinels; when the master
/// stops, requests get 503 (fail closed) until the replica is promoted, then every request
/// succeeds again without a broker restart, and a browser session from before survives.
#[tokio::test]
async fn a_sentinel_failover_means_503s_for_the_switch_over_only() {
    let topo = crate::helpers::RedisSentinel::start();
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis-sentinel\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            topo.url(),
            unique_prefix("sentinel")
        ),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await;
    let ready: Json = reqwest::get(format!("{}/readyz", s.app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let (browser, _) = crate::oidc::signed_in_as_alice(&s).await;
    for _ in 0..10 {
        assert_eq!(device_start(&s).await, 200);
    }
    // Let the replica catch up with the session before its master goes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    topo.stop_master();
    let (refused, took) = requests_until_recovered(&s, 40).await;
    eprintln!(
        "sentinel failover: {refused} requests refused, recovered {took:.1} s after the stop"
    );
    assert!(refused > 0, "the master was gone for a while");
    assert!(
        crate::oidc::is_signed_in(&s, &browser).await,
        "still signed in after the failover"
    );
    // The promoted replica is the master now.
    let info = std::process::Command::new("redis-cli")
        .args(["-p", &topo.replica.to_string(), "info", "replication"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("role:master"));
}

/// A device authorization: new keys in the store on every call.
async fn device_start(s: &crate::helpers::OidcSetup) -> u16 {
    Client::new()
        .post(format!("{}/oauth/device_authorization", s.app.address))
        .form(&[("client_id", "rolegate-cli"), ("device_name", "load")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Requests after a Redis failover began, until 30 succeed in a row: each is 200 or 503
/// (fail closed), never anything else, and no request without a session gets in. Returns the 503s and the seconds to recovery.
async fn requests_until_recovered(s: &crate::helpers::OidcSetup, limit_s: u64) -> (u32, f64) {
    let started = std::time::Instant::now();
    let (mut refused, mut ok_in_a_row) = (0, 0);
    while ok_in_a_row < 30 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(limit_s),
            "no recovery {limit_s} s after the failover began ({refused} refused)"
        );
        // A request without a session never gets the role picker, failover or not.
        let stranger = reqwest::get(format!("{}/", s.app.address)).await.unwrap();
        assert!(
            !stranger
                .text()
                .await
                .unwrap()
                .contains("action=\"/logout\"")
        );
        match device_start(s).await {
            200 => ok_in_a_row += 1,
            503 => {
                refused += 1;
                ok_in_a_row = 0;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            code => panic!("only 200 or 503 during a failover, got {code}"),
        }
    }
    (refused, started.elapsed().as_secs_f64())
}

/// SAML through SimpleSAMLphp with each hop on another instance: the request started on A,
/// the IdP's response posted to B's ACS, the hand-off finished on C; the same response
/// replayed at A's ACS is refused (the replay cache is shared), and the person is signed
/// in everywhere.
#[tokio::test]
async fn a_saml_sign_in_hops_across_instances_and_its_replay_is_refused_on_another() {
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
            shared_cluster().seed(),
            unique_prefix("saml-scale")
        ),
        saml: true,
        ..SetupOptions::default()
    })
    .await;
    let a = s.app.address.clone();
    let b = s.spawn_another_instance().await.address;
    let c = s.spawn_another_instance().await.address;
    let browser = crate::oidc::browser();
    let (response, relay, acs) =
        crate::saml::saml_login_until_acs(&s, &browser, "alice", "alice-pw").await;
    assert_eq!(acs, format!("{a}/saml/ssp/acs"));
    let post = |base: &str| {
        browser
            .post(format!("{base}/saml/ssp/acs"))
            .form(&[("SAMLResponse", &response), ("RelayState", &relay)])
            .send()
    };
    let res = post(&b).await.unwrap();
    assert_eq!(res.status(), 303, "ACS on another instance");
    let finish = crate::oidc::location(&res);
    let res = browser.get(format!("{c}{finish}")).send().await.unwrap();
    assert_eq!(res.status(), 303, "finish on a third");
    for base in [&a, &b, &c] {
        let html = crate::helpers::page(&browser, format!("{base}/")).await;
        assert!(
            html.contains("Hello, alice@example.test"),
            "signed in on {base}"
        );
    }
    let replay = post(&a).await.unwrap();
    assert!(
        replay.status().is_client_error(),
        "replayed at another instance: {}",
        replay.status()
    );
}
