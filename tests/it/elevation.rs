//! Just-in-time elevation with real components: Chromium (request on one instance,
//! approval on another, the picker with the time left, the console, ending it), the real
//! CLI waiting for an approval given in Chromium and boto3's SSO support listing the role
//! while it lasts, concurrent approvals on two instances, a lock ending an elevation,
//! signed webhooks (and one that hangs), and bad input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::{CLI_CONFIG, api, field};
use crate::helpers::{OidcSetup, SetupOptions, free_port, shared_redis, spawn_with, unique_prefix};
use crate::lifecycle::{ADMIN, cli_tokens, csrf_of, run_node, signed_in};

/// bob (a developer) may ask for prod-admin (one approver, a ticket) and prod-readonly
/// (two approvers); prod-breakglass is break-glass; contractors are denied prod-*.
const JIT: &str = r#"
[[role]]
id = "prod-breakglass"
arn = "arn:aws:iam::111122223333:role/BreakGlass"
account = "prod"
break_glass = true
break_glass_max = "30m"

[[rule]]
id = "devs-prod-admin"
when = { group = "developers" }
eligible = ["prod-admin"]
[rule.elevation]
approvers = { any = [ { group = "aws-admins" }, { group = "rolegate-admins" }, { group = "developers" } ] }
max_elevation = "2h"
ticket_pattern = "INC-[0-9]+"

[[rule]]
id = "devs-readonly-two"
when = { group = "developers" }
eligible = ["prod-readonly", "prod-breakglass"]
[rule.elevation]
approvers = { any = [ { group = "aws-admins" }, { group = "rolegate-admins" } ] }
approvals = 2
max_elevation = "1h"
reason = "optional"

[[rule]]
id = "no-prod-for-contractors"
when = { claim = "email", ends_with = "@contractors.example.com" }
deny = ["prod-*"]
"#;

async fn jit_broker(prefix: &str, extra: &str) -> OidcSetup {
    spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            shared_redis()
        ),
        extra: format!("{CLI_CONFIG}{ADMIN}{JIT}{extra}"),
        ..SetupOptions::default()
    })
    .await
}

/// Runs a browser script off the test's runtime (the broker in this process needs it).
async fn browser_script(script: &'static str, env: &[(&str, &str)]) -> Json {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_node(script, &env)
    })
    .await
    .unwrap()
}

/// A blocking call (a child process that talks to the broker) off the test's runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Posts a form with the page's CSRF token; returns the status and body.
async fn post_form(b: &Client, base: &str, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let csrf = csrf_of(b, &format!("{base}/")).await;
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let res = b
        .post(format!("{base}{path}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// The id of the newest request `b`'s person sees on their picker or the queue.
async fn request_ids(b: &Client, url: &str) -> Vec<String> {
    let html = crate::helpers::page(b, url).await;
    let mut ids: Vec<String> = html
        .split("/requests/")
        .skip(1)
        .filter_map(|s| s.split('/').next())
        .filter(|s| s.contains('.'))
        .map(str::to_owned)
        .collect();
    ids.dedup();
    ids
}

async fn ask_api(s: &OidcSetup, token: &str, body: Json) -> (u16, Json) {
    let res = Client::new()
        .post(format!("{}/api/v1/requests", s.app.address))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

fn audit_steps(s: &OidcSetup) -> Vec<Json> {
    s.audit_records()
        .into_iter()
        .filter(|r| r["event"] == "elevation")
        .collect()
}

/// In Chromium: bob asks for prod-admin on one instance, alice approves on another; bob's
/// picker shows it with its time left, the console sign-in works, "End now" ends it.
/// Credentials are capped at the time left; an elevation whose time is up is refused.
#[tokio::test]
async fn an_elevation_is_requested_approved_in_chromium_used_and_ended() {
    let s = jit_broker(&unique_prefix("jit-browser"), "").await;
    let other = s.spawn_another_instance().await;
    let report = browser_script(
        "elevation.mjs",
        &[
            ("BROKER", s.app.address.as_str()),
            ("APPROVER_BROKER", other.address.as_str()),
            ("REQUESTER", "bob"),
            ("REQUESTER_PASSWORD", "bob-pw"),
            ("APPROVER", "alice"),
            ("APPROVER_PASSWORD", "alice-pw"),
            ("ROLE", "prod-admin"),
            ("DURATION", "20m"),
            ("REASON", "INC-42 database failover"),
            ("TICKET", "INC-42"),
            ("SHOT", "elevation"),
        ],
    )
    .await;
    assert_eq!(report["role_before"], false, "{report:#}");
    assert!(
        report["eligible_before"]
            .to_string()
            .contains("ask-prod-admin"),
        "{report:#}"
    );
    assert!(
        report["requested_notice"]
            .as_str()
            .unwrap()
            .contains("sent"),
        "{report:#}"
    );
    assert!(
        report["my_requests"].to_string().contains("pending"),
        "{report:#}"
    );
    assert_eq!(report["to_decide_link"], true, "{report:#}");
    let queue = report["queue"].to_string();
    assert!(
        queue.contains("bob") && queue.contains("INC-42") && queue.contains("20m"),
        "{report:#}"
    );
    let elevated = report["elevated"]
        .as_str()
        .expect("the role shows as elevated");
    assert!(
        elevated.contains("min left")
            && (elevated.contains("(19 min") || elevated.contains("(20 min")),
        "{elevated}"
    );
    assert!(
        report["console_url"]
            .as_str()
            .unwrap()
            .contains("/console/"),
        "{report:#}"
    );
    assert!(
        report["ended_notice"].as_str().unwrap().contains("ended"),
        "{report:#}"
    );
    assert_eq!(report["role_after"], false, "ended: gone from the picker");

    let steps = audit_steps(&s);
    let step = |name: &str| {
        steps
            .iter()
            .find(|r| r["step"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(step("request")["subject"], "bob");
    assert_eq!(step("request")["ticket"], "INC-42");
    assert!(step("decision")["by"].as_str().unwrap().contains("alice"));
    assert_eq!(step("decision")["comment"], "ok for the incident");
    assert_eq!(step("start")["role"], "prod-admin");
    assert_eq!(step("end")["comment"], "ended by the requester");
    let issued = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "issuance" && r["role"] == "prod-admin" && r["subject"] == "bob");
    assert!(issued.is_some(), "the console sign-in issued credentials");

    // Credentials are capped at the time left: 20 minutes, not the role's hour.
    let bob = signed_in(&s, "bob").await;
    let at = cli_tokens(&s, &bob).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, r) = ask_api(&s, &at, json!({ "role": "prod-admin", "duration": "17m", "reason": "INC-43 again", "ticket": "INC-43" })).await;
    assert_eq!(status, 201, "{r}");
    let alice = signed_in(&s, "alice").await;
    let (status, _) = post_form(
        &alice,
        &s.app.address,
        &format!("/requests/{}/decision", r["id"].as_str().unwrap()),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 303);
    let res = api(&s, &at, "POST", "/api/v1/roles/prod-admin/credentials").await;
    assert_eq!(res.status(), 200);
    let creds: Json = res.json().await.unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(creds["Expiration"].as_str().unwrap()).unwrap();
    let lasts = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!(
        (900..=1020).contains(&lasts),
        "capped at the elevation's 17 minutes: {lasts}s"
    );

    // A short elevation: listed, but no credentials (AWS issues none under 15 minutes),
    // and gone once its time is up, with the end recorded.
    let (status, r) = ask_api(
        &s,
        &at,
        json!({ "role": "prod-breakglass", "duration": "12s", "reason": "pager: prod is down" }),
    )
    .await;
    assert_eq!(
        (status, r["status"].as_str()),
        (201, Some("approved")),
        "{r}"
    );
    let roles: Json = api(&s, &at, "GET", "/api/v1/roles")
        .await
        .json()
        .await
        .unwrap();
    assert!(roles.to_string().contains("prod-breakglass"), "{roles}");
    let res = api(&s, &at, "POST", "/api/v1/roles/prod-breakglass/credentials").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("15 minutes"));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let roles: Json = api(&s, &at, "GET", "/api/v1/roles")
        .await
        .json()
        .await
        .unwrap();
    assert!(!roles.to_string().contains("prod-breakglass"), "{roles}");
    let res = api(&s, &at, "POST", "/api/v1/roles/prod-breakglass/credentials").await;
    assert_eq!(res.status(), 403, "refused after its end");
    let steps = audit_steps(&s);
    assert!(
        steps
            .iter()
            .any(|r| r["step"] == "break_glass" && r["reason"] == "pager: prod is down")
    );
    assert!(
        steps.iter().any(|r| r["step"] == "end"
            && r["role"] == "prod-breakglass"
            && r["comment"] == "its time was up"),
        "{steps:#?}"
    );
    let admin_page = crate::helpers::page(
        &signed_in(&s, "dana").await,
        format!("{}/admin", s.app.address),
    )
    .await;
    assert!(
        admin_page.contains("id=\"break-glass\"") && admin_page.contains("pager: prod is down"),
        "break-glass uses listed for review"
    );
}

/// The rules: nobody decides their own request, two approvals need two people, a deny
/// rule wins over eligibility; and every piece of bad input is refused, nothing granted.
#[tokio::test]
async fn elevation_rules_hold_and_bad_input_grants_nothing() {
    let s = jit_broker(&unique_prefix("jit-rules"), "").await;
    let base = s.app.address.clone();
    let bob = signed_in(&s, "bob").await;
    let alice = signed_in(&s, "alice").await;
    let dana = signed_in(&s, "dana").await;
    let carl = signed_in(&s, "carl").await;

    // Bad input: each refused with its reason, nothing pending.
    for (fields, want) in [
        (
            vec![
                ("role", "prod-admin"),
                ("duration", "3h"),
                ("reason", "x"),
                ("ticket", "INC-1"),
            ],
            "between",
        ),
        (
            vec![
                ("role", "prod-admin"),
                ("duration", "soonish"),
                ("reason", "x"),
                ("ticket", "INC-1"),
            ],
            "not a duration",
        ),
        (
            vec![
                ("role", "prod-admin"),
                ("duration", "5s"),
                ("reason", "x"),
                ("ticket", "INC-1"),
            ],
            "between",
        ),
        (
            vec![
                ("role", "prod-admin"),
                ("duration", "1h"),
                ("reason", ""),
                ("ticket", "INC-1"),
            ],
            "reason is required",
        ),
        (
            vec![
                ("role", "prod-admin"),
                ("duration", "1h"),
                ("reason", &"x".repeat(501)),
                ("ticket", "INC-1"),
            ],
            "longer than 500",
        ),
        (
            vec![("role", "prod-admin"), ("duration", "1h"), ("reason", "x")],
            "ticket reference is required",
        ),
        (
            vec![
                ("role", "prod-admin"),
                ("duration", "1h"),
                ("reason", "x"),
                ("ticket", "JIRA-1"),
            ],
            "does not have the form",
        ),
        (
            vec![("role", "dev-admin"), ("duration", "1h"), ("reason", "x")],
            "not eligible",
        ),
        (
            vec![
                ("role", "no-such-role"),
                ("duration", "1h"),
                ("reason", "x"),
            ],
            "no role",
        ),
        (
            vec![
                ("role", "prod-breakglass"),
                ("duration", "1h"),
                ("reason", "x"),
            ],
            "between",
        ),
        (
            vec![
                ("role", "prod-breakglass"),
                ("duration", "10m"),
                ("reason", ""),
            ],
            "reason is required",
        ),
    ] {
        let (status, body) = post_form(&bob, &base, "/requests", &fields).await;
        assert!(status == 400 || status == 403, "{fields:?}: {status}");
        assert!(body.contains(want), "{fields:?}: {body}");
    }
    // Without the CSRF token (a cross-site form): refused.
    let res = bob
        .post(format!("{base}/requests"))
        .form(&[
            ("role", "prod-admin"),
            ("duration", "1h"),
            ("reason", "x"),
            ("ticket", "INC-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        request_ids(&bob, &format!("{base}/")).await.is_empty(),
        "nothing was requested"
    );

    // A deny rule wins over eligibility: carl (a contractor) cannot ask for prod-*.
    let (status, body) = post_form(
        &carl,
        &base,
        "/requests",
        &[
            ("role", "prod-admin"),
            ("duration", "1h"),
            ("reason", "x"),
            ("ticket", "INC-1"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        !crate::helpers::page(&carl, format!("{base}/"))
            .await
            .contains("ask-prod-admin")
    );

    // Nobody decides their own request (bob is an approver of prod-admin by group).
    let (status, _) = post_form(
        &bob,
        &base,
        "/requests",
        &[
            ("role", "prod-admin"),
            ("duration", "1h"),
            ("reason", "INC-7 fix"),
            ("ticket", "INC-7"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = request_ids(&bob, &format!("{base}/"))
        .await
        .pop()
        .expect("bob's request");
    let (status, body) = post_form(
        &bob,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("own request"));
    assert!(
        !crate::helpers::page(&bob, format!("{base}/requests"))
            .await
            .contains(&id),
        "not in his own queue"
    );
    // A second pending request for the same role: refused.
    let (status, _) = post_form(
        &bob,
        &base,
        "/requests",
        &[
            ("role", "prod-admin"),
            ("duration", "1h"),
            ("reason", "again"),
            ("ticket", "INC-8"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    // Denied, with a comment; then a decision on a decided request, and on unknown ones.
    let (status, _) = post_form(
        &dana,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "deny"), ("comment", "use the runbook")],
    )
    .await;
    assert_eq!(status, 303);
    let (status, body) = post_form(
        &alice,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    for bogus in [
        "nope",
        "0123456789abcdef.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "../../etc",
    ] {
        let (status, _) = post_form(
            &alice,
            &base,
            &format!("/requests/{bogus}/decision"),
            &[("decision", "approve")],
        )
        .await;
        assert!(status == 404 || status == 400, "{bogus}: {status}");
    }
    let (status, _) = post_form(
        &alice,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "maybe")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        crate::helpers::page(&bob, format!("{base}/"))
            .await
            .contains("use the runbook")
    );

    // Someone the rule does not name cannot decide (carol is in no group).
    let carol = signed_in(&s, "carol").await;
    let (status, _) = post_form(
        &bob,
        &base,
        "/requests",
        &[
            ("role", "prod-readonly"),
            ("duration", "30m"),
            ("reason", "audit"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = request_ids(&alice, &format!("{base}/requests"))
        .await
        .pop()
        .expect("in alice's queue");
    assert!(
        request_ids(&carol, &format!("{base}/requests"))
            .await
            .is_empty(),
        "not in carol's queue"
    );
    let (status, body) = post_form(
        &carol,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not an approver"), "{body}");
    let (status, _) = post_form(
        &dana,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "deny")],
    )
    .await;
    assert_eq!(status, 303);

    // Two approvals need two different approvers.
    let (status, _) = post_form(
        &bob,
        &base,
        "/requests",
        &[
            ("role", "prod-readonly"),
            ("duration", "30m"),
            ("reason", "audit"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = request_ids(&alice, &format!("{base}/requests"))
        .await
        .pop()
        .expect("in alice's queue");
    let (status, _) = post_form(
        &alice,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        !crate::helpers::page(&bob, format!("{base}/"))
            .await
            .contains("id=\"role-prod-readonly\""),
        "one approval is not enough"
    );
    let (status, _) = post_form(
        &alice,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 409, "alice counts once");
    let (status, _) = post_form(
        &dana,
        &base,
        &format!("/requests/{id}/decision"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        crate::helpers::page(&bob, format!("{base}/"))
            .await
            .contains("id=\"role-prod-readonly\""),
        "two approvers"
    );
    // Ending: not by someone else (not an administrator), without CSRF neither.
    let (status, _) = post_form(&alice, &base, &format!("/requests/{id}/end"), &[]).await;
    assert_eq!(status, 404);
    let res = bob
        .post(format!("{base}/requests/{id}/end"))
        .form(&[("from", "another site")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (status, _) = post_form(&bob, &base, &format!("/requests/{id}/end"), &[]).await;
    assert_eq!(status, 303);
    let (status, _) = post_form(&bob, &base, &format!("/requests/{id}/end"), &[]).await;
    assert_eq!(status, 409, "ended already");

    // `rolegate explain` shows what is eligible and who approves.
    let dir = tempfile::tempdir().unwrap();
    let config = s.config_file(dir.path());
    let claims = dir.path().join("bob.json");
    std::fs::write(
        &claims,
        r#"{"sub": "bob", "email": "bob@example.com", "groups": ["developers"]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolegate"))
        .args([
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--idp",
            "corp",
            "--claims",
            claims.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ELIGIBLE prod-admin by devs-prod-admin"),
        "{text}"
    );
    assert!(
        text.contains("group aws-admins or group rolegate-admins or group developers")
            || text.contains("(group aws-admins or group rolegate-admins or group developers)"),
        "{text}"
    );
    assert!(text.contains("2 different approvers"), "{text}");
    assert!(text.contains("a ticket matching"), "{text}");
    let refused = audit_steps(&s)
        .iter()
        .filter(|r| r["step"] == "refused")
        .count();
    assert!(refused >= 14, "every refusal is audited: {refused}");
}

/// Two approvers at once on two instances: one decision. A lock placed during an
/// elevation ends it (and it does not come back when the lock is lifted).
#[tokio::test]
async fn concurrent_approvals_decide_once_and_a_lock_ends_an_elevation() {
    let s = jit_broker(&unique_prefix("jit-race"), "").await;
    let a = s.app.address.clone();
    let b = s.spawn_another_instance().await.address;
    let bob = signed_in(&s, "bob").await;
    let alice = signed_in(&s, "alice").await;
    let dana = signed_in(&s, "dana").await;
    let mut decided = 0;
    for round in 0..5 {
        let (status, _) = post_form(
            &bob,
            &a,
            "/requests",
            &[
                ("role", "prod-admin"),
                ("duration", "1h"),
                ("reason", "race"),
                ("ticket", "INC-9"),
            ],
        )
        .await;
        assert_eq!(status, 303, "round {round}");
        let id = request_ids(&alice, &format!("{a}/requests"))
            .await
            .pop()
            .unwrap();
        let path = format!("/requests/{id}/decision");
        let ca = csrf_of(&alice, &format!("{a}/")).await;
        let cd = csrf_of(&dana, &format!("{b}/")).await;
        let (ra, rd) = tokio::join!(
            alice
                .post(format!("{a}{path}"))
                .form(&[("csrf", ca.as_str()), ("decision", "approve")])
                .send(),
            dana.post(format!("{b}{path}"))
                .form(&[("csrf", cd.as_str()), ("decision", "deny")])
                .send(),
        );
        let statuses = [ra.unwrap().status().as_u16(), rd.unwrap().status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 303).count(),
            1,
            "one decision: {statuses:?}"
        );
        assert!(statuses.contains(&409), "{statuses:?}");
        decided += 1;
        // End any elevation before the next round.
        for id in request_ids(&bob, &format!("{a}/")).await {
            let _ = post_form(&bob, &a, &format!("/requests/{id}/end"), &[]).await;
        }
    }
    assert_eq!(decided, 5);
    let decisions = audit_steps(&s)
        .iter()
        .filter(|r| r["step"] == "decision")
        .count();
    assert_eq!(decisions, 5, "one decision recorded per request");

    // A lock during an elevation ends it.
    let (status, _) = post_form(
        &bob,
        &a,
        "/requests",
        &[
            ("role", "prod-admin"),
            ("duration", "1h"),
            ("reason", "lock me"),
            ("ticket", "INC-10"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = request_ids(&alice, &format!("{a}/requests"))
        .await
        .pop()
        .unwrap();
    assert_eq!(
        post_form(
            &alice,
            &a,
            &format!("/requests/{id}/decision"),
            &[("decision", "approve")]
        )
        .await
        .0,
        303
    );
    assert!(
        crate::helpers::page(&bob, format!("{a}/"))
            .await
            .contains("id=\"role-prod-admin\"")
    );
    let csrf = csrf_of(&dana, &format!("{a}/admin")).await;
    let res = dana
        .post(format!("{a}/admin/locks"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("kind", "person"),
            ("idp", "corp"),
            ("subject", "bob"),
            ("reason", "suspicious"),
            ("expires", "3s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        audit_steps(&s)
            .iter()
            .any(|r| r["step"] == "end"
                && r["comment"].as_str().unwrap_or("").contains("suspicious"))
    );
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let page = crate::helpers::page(&bob, format!("{a}/")).await;
    assert!(
        page.contains("Hello,") && !page.contains("id=\"role-prod-admin\""),
        "the lock ended it for good"
    );
}

/// The CLI asks and waits; the approval comes from Chromium; credential_process works
/// for the role, and boto3's SSO support lists it while the elevation lasts, not after.
#[tokio::test]
async fn the_cli_waits_for_an_approval_and_sdks_see_the_role_while_it_lasts() {
    use crate::lifecycle::{SdkLogin, cli_login, rolegate, sdk_login, sso_client};
    let s = jit_broker(&unique_prefix("jit-cli"), "").await;
    let public = s.app.address.clone();
    let bob = signed_in(&s, "bob").await;
    let home = tempfile::tempdir().unwrap();
    cli_login(home.path(), &public, &bob).await;
    let SdkLogin {
        dir: sdk, token, ..
    } = sdk_login(&public, &bob).await;
    let sdk_dir = sdk.path().to_owned();
    let list = || {
        let (dir, public, token) = (sdk_dir.clone(), public.clone(), token.clone());
        blocking(move || -> Json {
            serde_json::from_str(&sso_client(&dir, &["list", &public, &token, "10"])).unwrap()
        })
    };
    let sdk_call = |role: &'static str| {
        let (dir, public, token) = (sdk_dir.clone(), public.clone(), token.clone());
        blocking(move || {
            sso_client(
                &dir,
                &["call", "credentials", &public, &token, role, "111122223333"],
            )
        })
    };
    let cli = |args: &'static [&'static str]| {
        let home = home.path().to_owned();
        blocking(move || rolegate(&home, args))
    };
    assert!(!list().await.to_string().contains("prod-admin"));
    let waiting = {
        let home = home.path().to_owned();
        std::thread::spawn(move || {
            rolegate(
                &home,
                &[
                    "request",
                    "--role",
                    "prod-admin",
                    "--for",
                    "16m",
                    "--reason",
                    "INC-77 deploy",
                    "--ticket",
                    "INC-77",
                ],
            )
        })
    };
    // The approver acts once the request is there.
    let alice = signed_in(&s, "alice").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while request_ids(&alice, &format!("{public}/requests"))
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the CLI's request arrived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let report = browser_script(
        "elevation.mjs",
        &[
            ("MODE", "approve"),
            ("BROKER", public.as_str()),
            ("APPROVER_BROKER", public.as_str()),
            ("APPROVER", "alice"),
            ("APPROVER_PASSWORD", "alice-pw"),
        ],
    )
    .await;
    assert!(report["queue"].to_string().contains("INC-77"), "{report:#}");
    let (code, out, err) = tokio::task::spawn_blocking(move || waiting.join().unwrap())
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("prod-admin is yours until"), "{out}");
    let (code, out, err) = cli(&[
        "credentials",
        "--role",
        "prod-admin",
        "--format",
        "credential-process",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("AccessKeyId"));
    let (_, out, _) = cli(&["requests"]).await;
    assert!(
        out.contains("prod-admin") && out.contains("approved"),
        "{out}"
    );
    let (_, out, _) = cli(&["roles"]).await;
    assert!(out.contains("elevated"), "{out}");
    assert!(
        list().await.to_string().contains("prod-admin"),
        "boto3 lists it while it lasts"
    );
    assert_eq!(sdk_call("prod-admin").await, "ok");
    // Ended: the SDK no longer sees it.
    let id = request_ids(&bob, &format!("{public}/"))
        .await
        .pop()
        .unwrap();
    assert_eq!(
        post_form(&bob, &public, &format!("/requests/{id}/end"), &[])
            .await
            .0,
        303
    );
    assert!(
        !list().await.to_string().contains("prod-admin"),
        "not after"
    );
    assert_ne!(sdk_call("prod-admin").await, "ok");
}

/// What a local webhook receiver got: (path, headers, body).
type Received = Arc<Mutex<Vec<(String, HashMap<String, String>, String)>>>;

/// A receiver on `port`: answers 200 (or hangs, for `/hang`), keeping what it got.
async fn receiver(port: u16, got: Received) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let mut lines = head.lines();
                    let path = lines
                        .next()
                        .unwrap_or("")
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(": "))
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    got.lock()
                        .unwrap()
                        .push((path.clone(), headers, body[..len].to_owned()));
                    if path == "/hang" {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    return;
                }
            }
        });
    }
}

/// Webhooks: the JSON form signed with HMAC-SHA256 over its timestamp and body, the Slack
/// form as text; a receiver that hangs, and one that is down, delay and fail nothing.
#[tokio::test]
async fn webhooks_are_signed_and_a_hanging_receiver_delays_nothing() {
    let (port, hang) = (free_port(), free_port());
    let down = free_port();
    let got: Received = Arc::default();
    tokio::spawn(receiver(port, got.clone()));
    tokio::spawn(receiver(hang, got.clone()));
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = "webhook-test-secret-0123456789abcdef-0123";
    let secret_file = secret_dir.path().join("webhook-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let hooks = format!(
        "\n[[webhook]]\nurl = \"http://127.0.0.1:{port}/json\"\nformat = \"json\"\nsecret = {{ file = \"{}\" }}\n\
         \n[[webhook]]\nurl = \"http://127.0.0.1:{port}/slack\"\nformat = \"slack\"\nevents = [\"request\", \"break_glass\"]\n\
         \n[[webhook]]\nurl = \"http://127.0.0.1:{hang}/hang\"\nformat = \"slack\"\ntimeout = \"20s\"\n\
         \n[[webhook]]\nurl = \"http://127.0.0.1:{down}/down\"\nformat = \"slack\"\n",
        secret_file.display()
    );
    let s = jit_broker(&unique_prefix("jit-hooks"), &hooks).await;
    let base = s.app.address.clone();
    let bob = signed_in(&s, "bob").await;
    let alice = signed_in(&s, "alice").await;
    let started = Instant::now();
    let (status, _) = post_form(
        &bob,
        &base,
        "/requests",
        &[
            ("role", "prod-admin"),
            ("duration", "1h"),
            ("reason", "INC-5 hooks"),
            ("ticket", "INC-5"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = request_ids(&alice, &format!("{base}/requests"))
        .await
        .pop()
        .unwrap();
    assert_eq!(
        post_form(
            &alice,
            &base,
            &format!("/requests/{id}/decision"),
            &[("decision", "approve")]
        )
        .await
        .0,
        303
    );
    let (status, _) = post_form(
        &bob,
        &base,
        "/requests",
        &[
            ("role", "prod-breakglass"),
            ("duration", "10m"),
            ("reason", "sev1"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nothing waited for the receivers: {:?}",
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "/json")
            .count();
        if n >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "json notices arrived: {n}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = got.lock().unwrap().clone();
    let json: Vec<&(String, HashMap<String, String>, String)> =
        got.iter().filter(|(p, _, _)| p == "/json").collect();
    let events: Vec<String> = json
        .iter()
        .map(|(_, h, body)| {
            let ts = h["x-rolegate-timestamp"].clone();
            let sig = h["x-rolegate-signature"].clone();
            // Recomputed with openssl: HMAC-SHA256 of "v1:TS:BODY".
            let out = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-hmac", secret])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .unwrap()
                        .write_all(format!("v1:{ts}:{body}").as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            let hex = String::from_utf8_lossy(&out.stdout)
                .rsplit(' ')
                .next()
                .unwrap()
                .trim()
                .to_owned();
            assert_eq!(sig, format!("v1={hex}"), "the signature");
            let v: Json = serde_json::from_str(body).unwrap();
            assert_eq!(v["data"]["subject"], "bob");
            v["event"].as_str().unwrap().to_owned()
        })
        .collect();
    for e in ["request", "decision", "start", "break_glass"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    let slack: Vec<Json> = got
        .iter()
        .filter(|(p, _, _)| p == "/slack")
        .map(|(_, _, b)| serde_json::from_str(b).unwrap())
        .collect();
    assert!(slack.iter().all(|m| m["text"].is_string()));
    assert!(
        slack
            .iter()
            .any(|m| m["text"].as_str().unwrap().contains("BREAK-GLASS"))
    );
    assert!(
        slack
            .iter()
            .all(|m| !m["text"].as_str().unwrap().contains("approved")),
        "only the events it asked for"
    );
    assert!(
        got.iter().any(|(p, _, _)| p == "/hang"),
        "the hanging receiver was called"
    );
    let metrics = crate::helpers::page(&Client::new(), format!("{base}/metrics")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics = metrics;
    while !metrics.contains("webhook_failures_total") {
        assert!(
            Instant::now() < deadline,
            "the receiver that is down is counted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        metrics = crate::helpers::page(&Client::new(), format!("{base}/metrics")).await;
    }
    let _ = field;
}

/// The rules decide at every request: an elevated role goes away when its holder stops
/// being eligible (here: the IdP drops them from the group, seen at the next refresh).
#[tokio::test]
async fn an_elevation_counts_only_while_its_holder_is_eligible() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("upstream-key");
    std::fs::write(&key, "an-encryption-key-of-more-than-32-characters").unwrap();
    let s = spawn_with(SetupOptions {
        session: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nencryption_key = {{ file = \"{}\" }}",
            shared_redis(),
            unique_prefix("jit-eligible"),
            key.display()
        ),
        corp_extra: "revalidate = \"on_refresh\"\n".into(),
        extra: format!("{CLI_CONFIG}{ADMIN}{JIT}"),
        ..SetupOptions::default()
    })
    .await;
    let bob = signed_in(&s, "bob").await;
    let tokens = cli_tokens(&s, &bob).await;
    let (status, r) = ask_api(
        &s,
        tokens["access_token"].as_str().unwrap(),
        json!({ "role": "prod-admin", "duration": "1h", "reason": "INC-3", "ticket": "INC-3" }),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let alice = signed_in(&s, "alice").await;
    let (status, _) = post_form(
        &alice,
        &s.app.address,
        &format!("/requests/{}/decision", r["id"].as_str().unwrap()),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(status, 303);
    let roles: Json = api(
        &s,
        tokens["access_token"].as_str().unwrap(),
        "GET",
        "/api/v1/roles",
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(roles.to_string().contains("\"prod-admin\""), "{roles}");
    // The IdP takes bob out of "developers"; his next refresh brings the new groups.
    s.op.change_user("bob", json!({ "groups": ["qa"] })).await;
    // (Re-validation asks the IdP at most every 2 s per person.)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh: Json = Client::new()
        .post(format!("{}/oauth/token", s.app.address))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "rolegate-cli"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = fresh["access_token"].as_str().expect("refreshed");
    let roles: Json = api(&s, at, "GET", "/api/v1/roles")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !roles.to_string().contains("\"prod-admin\""),
        "no longer eligible, no longer elevated: {roles}"
    );
    let res = api(&s, at, "POST", "/api/v1/roles/prod-admin/credentials").await;
    assert_eq!(res.status(), 403);
}
