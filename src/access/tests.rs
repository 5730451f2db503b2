//! The core's decisions without HTTP: a real `Access` on the in-memory store with an
//! audit file in a temporary folder. STS is never reached: every case here is decided
//! (and audited) before a call would be made.

use std::sync::Arc;

use super::grant::Refusal;
use super::issuer::IssueFailure;
use super::*;
use crate::domain::{GroupName, IdpId};
use crate::idp::VerifiedIdentity;
use crate::mapping::IdentityClaims;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"

[session]
store = "memory"

[aws]
region = "eu-west-1"
sts_endpoint_url = "http://127.0.0.1:9"

[[idp]]
id = "corp"
kind = "oidc"
issuer = "https://idp.example.com"
client_id = "broker"

[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "admin"
arn = "arn:aws:iam::111122223333:role/Admin"
account = "prod"
max_session_duration = "4h"

[[role]]
id = "readonly"
arn = "arn:aws:iam::111122223333:role/ReadOnly"
account = "prod"
max_session_duration = "4h"

[[role]]
id = "billing"
arn = "arn:aws:iam::111122223333:role/Billing"
account = "prod"
max_session_duration = "4h"

[[rule]]
id = "admins"
when = { group = "admins" }
grant = ["admin", "readonly", "billing"]
[rule.session]
max_duration = "2h"

[[rule]]
id = "cap-admin"
when = { group = "admins" }
grant = ["admin"]
[rule.session]
max_duration = "1h"

[[rule]]
id = "no-billing"
when = { group = "contractors" }
deny = ["billing"]
"#;

struct Fixture {
    access: Arc<Access>,
    audit: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let audit = tempfile::tempdir().unwrap();
        let text = format!(
            "{CONFIG}\n[audit]\nfile = \"{}\"\n",
            audit.path().join("audit.jsonl").display()
        );
        let config = crate::config::from_str(&text, std::path::Path::new("core.toml"), Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let access = Access::build(
            Arc::new(config),
            Arc::new(crate::metrics::Metrics::new()),
            Some(StaticAwsCredentials {
                access_key_id: "AKIDTEST".into(),
                secret_access_key: "secret".to_owned().into(),
                session_token: None,
            }),
        )
        .await
        .unwrap();
        Self { access, audit }
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn person(groups: &[&str]) -> Principal {
    Principal::unchecked(identity(groups))
}

fn identity(groups: &[&str]) -> VerifiedIdentity {
    VerifiedIdentity::verified(IdentityClaims {
        idp: IdpId::parse("corp").unwrap(),
        subject: "s-1".into(),
        username: "pat@example.com".into(),
        email: Some("pat@example.com".into()),
        groups: groups
            .iter()
            .map(|g| GroupName::parse(g).unwrap())
            .collect(),
        claims: serde_json::json!({ "sub": "s-1" }),
    })
}

fn id(s: &str) -> crate::domain::Identifier {
    crate::domain::Identifier::parse(s).unwrap()
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "r-1".into(),
        ..RequestContext::default()
    }
}

#[tokio::test]
async fn the_menu_lists_granted_roles_with_the_most_restrictive_cap() {
    let f = Fixture::new().await;
    let menu = f.access.role_menu(&person(&["admins"]));
    let roles: Vec<(&str, String)> = menu
        .roles()
        .map(|(_, r)| (r.id.as_str(), r.max_duration.to_string()))
        .collect();
    assert_eq!(
        roles,
        [
            ("admin", "1h".to_owned()),
            ("readonly", "2h".to_owned()),
            ("billing", "2h".to_owned())
        ]
    );
    assert!(f.access.role_menu(&person(&["nobody"])).is_empty());
    let contractor = f.access.role_menu(&person(&["admins", "contractors"]));
    assert!(contractor.roles().all(|(_, r)| r.id.as_str() != "billing"));
}

#[tokio::test]
async fn each_refusal_is_typed_and_audited_with_its_reason() {
    let f = Fixture::new().await;
    let path = ClientPath::Cli;
    let cases: Vec<(Principal, &str, Option<&str>, Refusal)> = vec![
        (
            person(&["admins"]),
            "ghost",
            None,
            Refusal::UnknownRole("ghost".into()),
        ),
        (
            person(&["developers"]),
            "admin",
            None,
            Refusal::NotGranted(id("admin")),
        ),
        (
            person(&["admins", "contractors"]),
            "billing",
            None,
            Refusal::Denied {
                role: id("billing"),
                rules: vec![id("no-billing")],
            },
        ),
        (
            person(&["admins"]),
            "admin",
            Some("2h"),
            Refusal::DurationOutOfRange {
                role: id("admin"),
                requested: "2h".into(),
                max: crate::domain::SessionDuration::from_secs(3600).unwrap(),
            },
        ),
        (
            person(&["admins"]),
            "admin",
            Some("300"),
            Refusal::DurationOutOfRange {
                role: id("admin"),
                requested: "300".into(),
                max: crate::domain::SessionDuration::from_secs(3600).unwrap(),
            },
        ),
        (
            person(&["admins"]),
            "admin",
            Some("tomorrow"),
            Refusal::DurationUnreadable {
                requested: "tomorrow".into(),
            },
        ),
    ];
    for (i, (who, role, duration, expected)) in cases.into_iter().enumerate() {
        let got = f
            .access
            .authorize(&who, role, duration, &Requester::web(path), &ctx())
            .err()
            .unwrap_or_else(|| panic!("case {i} ({role}) was authorized"));
        assert_eq!(got, expected, "case {i}");
        let records = f.records();
        assert_eq!(
            records.len(),
            i + 1,
            "case {i}: one audit record per refusal"
        );
        let r = records.last().unwrap();
        assert_eq!(r["event"], "issuance");
        assert_eq!(r["outcome"], "refused");
        assert_eq!(r["client_path"], "cli");
        assert_eq!(r["request_id"], "r-1");
        assert_eq!(
            r["reason"].as_str().unwrap(),
            format!("{}: {expected}", expected.kind()),
            "case {i}"
        );
    }
}

#[tokio::test]
async fn an_authorized_grant_pairs_the_role_with_its_own_grant_and_duration() {
    let f = Fixture::new().await;
    let who = person(&["admins"]);
    let g = f
        .access
        .authorize(
            &who,
            "readonly",
            None,
            &Requester::web(ClientPath::Cli),
            &ctx(),
        )
        .unwrap();
    assert_eq!(g.role().id.as_str(), "readonly");
    assert_eq!(g.grant().role.as_str(), "readonly");
    assert_eq!(
        g.grant().arn.as_str(),
        "arn:aws:iam::111122223333:role/ReadOnly"
    );
    assert_eq!(g.duration().as_secs(), 7200, "default: the grant's maximum");
    let g = f
        .access
        .authorize(
            &who,
            "admin",
            Some("45m"),
            &Requester::web(ClientPath::Cli),
            &ctx(),
        )
        .unwrap();
    assert_eq!(g.duration().as_secs(), 2700);
    assert!(
        f.records().is_empty(),
        "an authorization alone is not audited"
    );
}

#[tokio::test]
async fn a_refused_request_never_reaches_sts() {
    // STS points at a closed port: a request that got that far would fail with
    // `Sts(Unreachable)` instead of the refusal.
    let f = Fixture::new().await;
    let err = f
        .access
        .issue_credentials(
            &person(&["developers"]),
            "admin",
            None,
            &Requester::web(ClientPath::WebCli),
            &ctx(),
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, IssueFailure::Refused(Refusal::NotGranted(_))),
        "{err:?}"
    );
    let err = f
        .access
        .console_sign_in(
            &person(&["admins", "contractors"]),
            "billing",
            None,
            &crate::access::issuer::ConsoleAsk::RoleDefault,
            &Requester::web(ClientPath::WebConsole),
            &ctx(),
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, IssueFailure::Refused(Refusal::Denied { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_sign_in_tail_audits_replaces_the_old_session_and_starts_a_new_one() {
    let f = Fixture::new().await;
    let first = f
        .access
        .complete_sign_in(identity(&["admins"]), None, None, &ctx())
        .await
        .unwrap()
        .into_inner();
    assert!(f.access.session(&first.id, &ctx()).await.unwrap().is_some());
    let second = f
        .access
        .complete_sign_in(identity(&["admins"]), None, Some(&first.id), &ctx())
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.id, second.id);
    assert_ne!(first.csrf, second.csrf);
    assert!(
        f.access.session(&first.id, &ctx()).await.unwrap().is_none(),
        "the old session is gone"
    );
    let loaded = f.access.session(&second.id, &ctx()).await.unwrap().unwrap();
    assert_eq!(loaded.identity.identity(), &identity(&["admins"]));
    let logins: Vec<_> = f
        .records()
        .into_iter()
        .filter(|r| r["event"] == "login")
        .collect();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["outcome"], "success");
    assert_eq!(logins[0]["subject"], "s-1");
}

/// A login approved before the person's access was revoked (an approval in flight while
/// the revocation ran) is not handed out; one approved after it is.
#[tokio::test]
async fn a_login_approved_before_a_revocation_is_not_handed_out() {
    use super::admin::{Actor, ActorSource};
    use super::oauth::Approval;
    use super::session::IdentityRecord;
    let f = Fixture::new().await;
    let who = identity(&["admins"]);
    let tag = crate::store::PersonTag::of("corp", "s-1");
    let actor = Actor {
        name: "ops".into(),
        source: ActorSource::Cli,
    };
    f.access
        .admin()
        .revoke(&tag, None, &actor, "left", &ctx())
        .await
        .unwrap();
    let approval = |approved_at: u64| Approval {
        identity: IdentityRecord::from_identity(&who),
        client_id: "rolegate-cli".into(),
        device_name: "laptop".into(),
        approved_at,
    };
    let now = crate::store::now_unix();
    let refused = f
        .access
        .issue_token_family(approval(now - 5), None, &ctx())
        .await
        .unwrap_err();
    assert_eq!(refused.code, "access_denied");
    assert!(
        refused.description.contains("revoked"),
        "{}",
        refused.description
    );
    assert!(
        f.access
            .issue_token_family(approval(now + 1), None, &ctx())
            .await
            .is_ok(),
        "approved after the revocation"
    );
}
