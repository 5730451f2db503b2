//! Requests the access core refuses before calling AWS: a role the rules do not grant,
//! a role a deny rule takes away, an unknown role, a session longer than the grant. Each
//! gets a precise answer, no credentials, and an audit record with its reason.

use serde_json::Value as Json;

use crate::helpers::{SetupOptions, spawn_with};
use crate::issuance::action;
use crate::oidc::{signed_in_as, signed_in_as_alice};

fn refusals(records: &[Json]) -> Vec<&Json> {
    records
        .iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] == "refused")
        .collect()
}

fn issued(records: &[Json]) -> usize {
    records
        .iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] != "refused")
        .count()
}

#[tokio::test]
async fn a_configured_role_the_rules_do_not_grant_is_refused_and_audited() {
    let s = spawn_with(SetupOptions::default()).await;
    // bob is a developer: dev-admin only. prod-admin exists in the config.
    let (client, csrf) = signed_in_as(&s, "bob", "bob-pw").await;
    for what in ["credentials", "console"] {
        let res = action(&s, &client, "prod-admin", what, &[("csrf", &csrf)]).await;
        assert_eq!(res.status(), 403, "{what}");
        let page = res.text().await.unwrap();
        assert!(page.contains("not allowed to use this role"), "{page}");
        assert!(!page.contains("AccessKeyId") && !page.contains("access-key-id"));
    }
    let records = s.audit_records();
    let refused = refusals(&records);
    assert_eq!(refused.len(), 2, "{records:#?}");
    for (r, path) in refused.iter().zip(["web_cli", "web_console"]) {
        assert_eq!(r["role"], "prod-admin");
        assert_eq!(r["subject"], "bob");
        assert_eq!(r["idp"], "corp");
        assert_eq!(r["client_path"], path);
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .starts_with("not_granted: no rule grants role prod-admin"),
            "{r}"
        );
        assert!(r["request_id"].as_str().is_some_and(|id| id.len() == 32));
    }
    assert_eq!(issued(&records), 0, "nothing reached STS");
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"rolegate_issuances_total{role="prod-admin",mode="none",path="web_cli",outcome="refused"} 1"#),
        "{metrics}"
    );

    // The role bob is granted still works: the refusal was about the role, not him.
    let res = action(&s, &client, "dev-admin", "credentials", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_role_taken_away_by_a_deny_rule_is_refused_naming_the_rule() {
    let s = spawn_with(SetupOptions {
        extra: "\n[[rule]]\nid = \"no-readonly-for-admins\"\nwhen = { group = \"aws-admins\" }\ndeny = [\"prod-readonly\"]\n".into(),
        ..SetupOptions::default()
    })
    .await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(
        &s,
        &client,
        "prod-readonly",
        "credentials",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(res.status(), 403);
    let records = s.audit_records();
    let refused = refusals(&records);
    assert_eq!(refused.len(), 1, "{records:#?}");
    assert_eq!(
        refused[0]["reason"],
        "denied: role prod-readonly is denied by rule(s) no-readonly-for-admins"
    );
    assert_eq!(issued(&records), 0);
}

#[tokio::test]
async fn an_unknown_role_is_refused_like_an_ungranted_one() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = action(
        &s,
        &client,
        "no-such-role",
        "credentials",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("not allowed to use this role")
    );
    let records = s.audit_records();
    let refused = refusals(&records);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unknown_role"),
        "{}",
        refused[0]
    );
}

#[tokio::test]
async fn a_session_longer_than_the_grant_or_unreadable_is_refused_and_audited() {
    let s = spawn_with(SetupOptions::default()).await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    for (duration, reason) in [
        ("7200", "duration_too_long"),
        ("2h", "duration_too_long"),
        ("600", "duration_too_long"),
        ("soon", "duration_unreadable"),
    ] {
        let res = action(
            &s,
            &client,
            "prod-admin",
            "credentials",
            &[("csrf", &csrf), ("duration", duration)],
        )
        .await;
        assert_eq!(res.status(), 400, "{duration}");
        let records = s.audit_records();
        let last = refusals(&records).last().cloned().cloned().unwrap();
        assert!(
            last["reason"].as_str().unwrap().starts_with(reason),
            "{duration}: {last}"
        );
    }
    let records = s.audit_records();
    assert_eq!(refusals(&records).len(), 4);
    assert_eq!(issued(&records), 0);
    // Within the grant, in humantime form, it is issued.
    let res = action(
        &s,
        &client,
        "prod-admin",
        "credentials",
        &[("csrf", &csrf), ("duration", "30m")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let records = s.audit_records();
    assert_eq!(issued(&records), 1);
    assert_eq!(
        records.last().unwrap()["duration_seconds"],
        1800,
        "the requested 30m"
    );
}
