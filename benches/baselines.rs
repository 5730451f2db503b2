//! The baselines the whole-broker load benchmark (`benches/load/bench.py table`) measures
//! each broker figure against, in the same run on the same machine:
//!
//! * `saml-make DIR COUNT SP_ENTITY ACS`: signs COUNT distinct IdP-initiated responses with
//!   the real `xmlsec1` (Response and Assertion signed, RSA-2048, as the tests do) and
//!   writes them, one base64 per line, to `DIR/responses.txt`, with the IdP's metadata and
//!   certificate next to them.
//! * `saml-bare DIR SECONDS THREADS`: bare samael (`ServiceProvider::parse_base64_response`,
//!   nothing of the broker's) on those same responses, round-robin, THREADS at a time.
//! * `sts URL SECONDS CONCURRENCY assume_role|web_identity`: the AWS SDK's own cost per STS
//!   call: the same `aws-sdk-sts` client configuration as the broker's, against the same
//!   canned-reply STS, with the process's CPU per call from `/proc/self/stat`.
//! * `hello PORT [REDIS_URL]`: a hello-world actix-web server with the broker's worker
//!   count (2); with REDIS_URL, each request first renews a key with one `GETEX` (what a
//!   request with a session costs at the least: one Redis round trip).
//!
//! Each prints one `key=value` line the benchmark script reads. Under `cargo test` (no
//! arguments) it does nothing, so it cannot fail a test run.

#[path = "../tests/it/saml_fixtures.rs"]
#[allow(dead_code)]
mod saml_fixtures;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime, in clock ticks (100 per second on Linux).
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn saml_make(dir: &Path, count: usize, sp_entity: &str, acs: &str) {
    let k = saml_fixtures::keys();
    std::fs::write(
        dir.join("idp-metadata.xml"),
        saml_fixtures::idp_metadata(&k.idp),
    )
    .unwrap();
    std::fs::copy(&k.idp.cert, dir.join("idp.crt")).unwrap();
    // xmlsec1 is a process per signature: sign on two threads.
    let next = AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let mut f = saml_fixtures::Fixture::new(sp_entity, acs, None);
                    f.sign_response = true;
                    f.not_on_or_after = chrono::Utc::now() + chrono::Duration::hours(1);
                    let b64 = saml_fixtures::b64(&f.signed());
                    out.lock().unwrap().push(b64);
                }
            });
        }
    });
    let lines = out.into_inner().unwrap().join("\n");
    std::fs::write(dir.join("responses.txt"), lines + "\n").unwrap();
    println!("responses={count}");
}

fn saml_bare(dir: &Path, seconds: f64, threads: usize) {
    use samael::metadata::EntityDescriptor;
    use samael::service_provider::ServiceProvider;
    let md: EntityDescriptor = std::fs::read_to_string(dir.join("idp-metadata.xml"))
        .unwrap()
        .parse()
        .unwrap();
    let responses: Vec<String> = std::fs::read_to_string(dir.join("responses.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let sp_entity = std::fs::read_to_string(dir.join("sp-entity")).unwrap();
    let acs = std::fs::read_to_string(dir.join("acs")).unwrap();
    let sp = ServiceProvider {
        entity_id: Some(sp_entity),
        acs_url: Some(acs),
        idp_metadata: md,
        allow_idp_initiated: true,
        ..ServiceProvider::default()
    };
    let (done, failed, next) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let stop = AtomicBool::new(false);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed) % responses.len();
                    match sp.parse_base64_response(&responses[i], None) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("first failure: {e:?}");
                            }
                            0
                        }
                    };
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let n = done.load(Ordering::Relaxed);
    println!(
        "verified={n} failed={} per_second={:.1} cpu_ms_per_op={:.4}",
        failed.load(Ordering::Relaxed),
        n as f64 / wall,
        cpu * 1000.0 / n.max(1) as f64
    );
}

async fn sts(url: String, seconds: f64, concurrency: usize, mode: String) {
    use aws_sdk_sts::config::retry::RetryConfig;
    use aws_sdk_sts::config::timeout::TimeoutConfig;
    use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
    // The broker's client configuration (`sts::Sts::new`), with static credentials.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .load()
        .await;
    let conf = aws_sdk_sts::config::Builder::from(&sdk)
        .region(Region::new("us-east-1"))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_millis(2500))
                .connect_timeout(Duration::from_secs(3))
                .build(),
        )
        .endpoint_url(url.trim_end_matches('/'))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .build();
    let client = aws_sdk_sts::Client::from_conf(conf);
    let web = mode == "web_identity";
    let call = move |client: aws_sdk_sts::Client| async move {
        if web {
            client
                .assume_role_with_web_identity()
                .role_arn("arn:aws:iam::111122223333:role/Admin")
                .role_session_name("alice@example.com")
                .web_identity_token("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
                .duration_seconds(3600)
                .send()
                .await
                .is_ok()
        } else {
            client
                .assume_role()
                .role_arn("arn:aws:iam::111122223333:role/Admin")
                .role_session_name("alice@example.com")
                .source_identity("alice@example.com")
                .duration_seconds(3600)
                .send()
                .await
                .is_ok()
        }
    };
    // Warm-up: connections made, the SDK's lazy state built.
    for _ in 0..concurrency {
        call(client.clone()).await;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, done) = (client.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if call(client.clone()).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let n = done.load(Ordering::Relaxed);
    println!(
        "calls={n} per_second={:.1} cpu_ms_per_op={:.4}",
        n as f64 / wall,
        cpu * 1000.0 / n.max(1) as f64
    );
}

fn hello(port: u16, redis_url: Option<String>) -> std::io::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    actix_web::rt::System::new().block_on(async move {
        let redis = match redis_url {
            Some(url) => {
                let client = redis::Client::open(url).unwrap();
                let mut c = redis::aio::ConnectionManager::new(client).await.unwrap();
                let _: () = redis::cmd("SET")
                    .arg("hello")
                    .arg("x".repeat(400))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                Some(c)
            }
            None => None,
        };
        HttpServer::new(move || {
            let redis = redis.clone();
            App::new().route(
                "/",
                web::get().to(move || {
                    let redis = redis.clone();
                    async move {
                        if let Some(mut c) = redis {
                            let _: Option<String> = redis::cmd("GETEX")
                                .arg("hello")
                                .arg("PX")
                                .arg(600_000)
                                .query_async(&mut c)
                                .await
                                .unwrap();
                        }
                        HttpResponse::Ok()
                            .content_type("text/html; charset=utf-8")
                            .body("hello")
                    }
                }),
            )
        })
        .workers(2)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "saml-make" => {
            let dir = Path::new(&args[1]);
            std::fs::write(dir.join("sp-entity"), arg(3)).unwrap();
            std::fs::write(dir.join("acs"), arg(4)).unwrap();
            saml_make(dir, arg(2).parse().unwrap(), &arg(3), &arg(4));
        }
        "saml-bare" => saml_bare(
            Path::new(&args[1]),
            arg(2).parse().unwrap(),
            arg(3).parse().unwrap(),
        ),
        "sts" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(sts(
                arg(1),
                arg(2).parse().unwrap(),
                arg(3).parse().unwrap(),
                arg(4),
            )),
        "hello" => hello(arg(1).parse().unwrap(), args.get(2).cloned()).unwrap(),
        // `cargo test` runs bench targets with no arguments (or `--bench` filters): nothing.
        _ => {}
    }
}
