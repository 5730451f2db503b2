//! STS in two regions: two STS emulators (moto), the first stopped under load. Issuance
//! goes on in the second region with no refusal and bounded extra latency; the region is
//! in each audit record and in the metrics; once the first region answers again, a trial
//! call after `sts_region_retry_after` brings calls back to it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;

use crate::cli_login::{CLI_CONFIG, logged_in_cli};
use crate::helpers::{SetupOptions, VENV, free_port, spawn_with};

struct Moto(Child);

impl Moto {
    async fn start(port: u16) -> Self {
        let child = Command::new(format!("{VENV}/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("http://127.0.0.1:{port}/moto-api/"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "moto did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self(child)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn issuance_fails_over_to_the_next_region_and_comes_back() {
    let (port_a, port_b) = (free_port(), free_port());
    let a = Moto::start(port_a).await;
    let _b = Moto::start(port_b).await;
    let s = spawn_with(SetupOptions {
        aws_extra: format!(
            "sts_regions = [\"eu-west-1\", \"us-east-1\"]\nsts_region_retry_after = \"2s\"\n[aws.sts_endpoint_urls]\neu-west-1 = \"http://127.0.0.1:{port_a}\"\nus-east-1 = \"http://127.0.0.1:{port_b}\"\n"
        ),
        // The load below is one person's: lift the per-person API limit.
        extra: format!("{CLI_CONFIG}requests_per_minute = 1000000\n"),
        ..SetupOptions::default()
    })
    .await;
    let token = logged_in_cli(&s).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/api/v1/roles/prod-admin/credentials", s.app.address);
    let issue = {
        let (url, token) = (url.clone(), token.clone());
        move || {
            let (url, token) = (url.clone(), token.clone());
            async move {
                let started = Instant::now();
                let res = Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), started.elapsed())
            }
        }
    };
    let region_of_last = |s: &crate::helpers::OidcSetup| {
        s.audit_records()
            .iter()
            .rev()
            .find(|r| r["event"] == "issuance")
            .map(|r| r["sts_region"].as_str().unwrap_or("").to_owned())
            .unwrap()
    };
    assert_eq!(issue().await.0, 200);
    assert_eq!(region_of_last(&s), "eu-west-1", "the first region first");

    // Four clients issuing for 6 s; the first region's STS stops after 2 s.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (issue, stop) = (issue.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.push(issue().await);
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    drop(a);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let refused: Vec<_> = results.iter().filter(|(st, _)| *st != 200).collect();
    let mut statuses = std::collections::BTreeMap::new();
    for (st, _) in &results {
        *statuses.entry(*st).or_insert(0) += 1;
    }
    assert!(
        refused.len() <= 4,
        "at most the requests in flight: {} of {} ({statuses:?})",
        refused.len(),
        results.len()
    );
    assert!(results.len() > 20, "issuance went on: {}", results.len());
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap();
    eprintln!(
        "failover under load: {} issuances, statuses {statuses:?}, slowest {slowest:?}",
        results.len()
    );
    assert!(
        slowest < Duration::from_secs(3),
        "extra latency is bounded: slowest {slowest:?}"
    );
    assert_eq!(
        region_of_last(&s),
        "us-east-1",
        "the second region took over"
    );
    let records = s.audit_records();
    assert!(
        records
            .iter()
            .filter(|r| r["event"] == "issuance")
            .all(|r| r["sts_region"] == "eu-west-1" || r["sts_region"] == "us-east-1"),
        "every record names its region"
    );
    let metrics = reqwest::get(format!("{}/metrics", s.app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "rolegate_sts_region_calls_total{region=\"eu-west-1\",outcome=\"failed_over\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("rolegate_sts_region_calls_total{region=\"us-east-1\",outcome=\"success\"}"),
        "{metrics}"
    );

    // The first region answers again: after the cool-down a trial brings calls back.
    let _a = Moto::start(port_a).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(issue().await.0, 200);
        if region_of_last(&s) == "eu-west-1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "calls did not come back to the first region"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(killed_at.elapsed() > Duration::from_secs(2));
}

#[test]
fn sts_region_settings_are_checked() {
    let base = std::fs::read_to_string("config/dev.toml").unwrap();
    for (extra, key, says) in [
        ("sts_regions = []", "aws.sts_regions", "at least one region"),
        (
            "sts_regions = [\"eu-west-1\", \"eu_west_2\"]",
            "aws.sts_regions[1]",
            "not an AWS region name",
        ),
        (
            "sts_regions = [\"eu-west-1\", \"eu-west-1\"]",
            "aws.sts_regions[1]",
            "listed twice",
        ),
        (
            "sts_regions = [\"cn-north-1\"]",
            "aws.sts_regions[0]",
            "not in partition aws",
        ),
        (
            "sts_region_retry_after = \"0s\"",
            "aws.sts_region_retry_after",
            "between 1s and 1h",
        ),
        (
            "sts_regions = [\"eu-west-1\"]\n[aws.sts_endpoint_urls]\nus-east-1 = \"http://127.0.0.1:1\"",
            "aws.sts_endpoint_urls.us-east-1",
            "not in sts_regions",
        ),
    ] {
        // At the end of [aws] (followed by [audit] in dev.toml).
        let text = base.replacen("\n[audit]", &format!("\n{extra}\n\n[audit]"), 1);
        assert_ne!(text, base);
        let errs = match rolegate::config::from_str(&text, std::path::Path::new("dev.toml"), vec![])
        {
            Ok(_) => panic!("{extra} accepted"),
            Err(e) => e.0,
        };
        let e = errs
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{extra}: {errs:#?}"));
        assert!(e.to_string().contains(says), "{e}");
    }
}
