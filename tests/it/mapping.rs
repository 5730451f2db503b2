//! Mapping tests: every operator table-driven through the real config parser, plus
//! properties that must hold for any rule set. (Here rather than next to `mapping`:
//! they go through `config`, a higher layer.)

use proptest::prelude::*;
use serde_json::json;

use rolegate::config;
use rolegate::domain::*;
use rolegate::mapping::*;

const BASE: &str = r#"
[[idp]]
id = "corp"
kind = "oidc"
issuer = "https://idp.example.com"
client_id = "broker"

[[idp]]
id = "other"
kind = "oidc"
issuer = "https://other.example.com"
client_id = "broker"

[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "prod-admin"
arn = "arn:aws:iam::111122223333:role/Admin"
account = "prod"
max_session_duration = "2h"

[[role]]
id = "prod-ro"
arn = "arn:aws:iam::111122223333:role/ReadOnly"
account = "prod"
"#;

fn rules(extra: &str) -> MappingRules {
    let text = format!("{BASE}\n{extra}");
    match config::from_str(&text, std::path::Path::new("test.toml"), Vec::new()) {
        Ok(c) => c.rules,
        Err(e) => panic!("test config invalid:\n{e}"),
    }
}

fn identity(claims: serde_json::Value) -> IdentityClaims {
    let groups = claims
        .get("groups")
        .and_then(|g| g.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str())
                .map(|g| GroupName::parse(g).unwrap())
                .collect()
        })
        .unwrap_or_default();
    IdentityClaims {
        idp: IdpId::parse("corp").unwrap(),
        subject: "alice".into(),
        username: "alice@example.com".into(),
        email: claims
            .get("email")
            .and_then(|e| e.as_str())
            .map(str::to_owned),
        groups,
        claims,
    }
}

fn granted(ev: &Evaluation) -> Vec<&str> {
    ev.grants.iter().map(|g| g.role.as_str()).collect()
}

#[test]
fn every_operator_matches_and_fails_as_documented() {
    let claims = json!({
        "sub": "alice",
        "email": "alice@example.com",
        "email_verified": true,
        "level": 3,
        "groups": ["aws-prod-admins", "developers"],
        "amr": ["pwd", "mfa"],
        "realm_access": { "roles": ["ops", "viewer"] },
    });
    // (condition, expected match, description)
    let cases: &[(&str, bool, &str)] = &[
        (r#"{ group = "developers" }"#, true, "exact group"),
        (
            r#"{ group = "Developers" }"#,
            false,
            "exact group is case-sensitive",
        ),
        (r#"{ group_glob = "aws-*-admins" }"#, true, "glob"),
        (r#"{ group_glob = "aws-dev-*" }"#, false, "glob miss"),
        (
            r#"{ group_regex = "aws-(prod|dev)-admins" }"#,
            true,
            "regex",
        ),
        (
            r#"{ group_regex = "prod" }"#,
            false,
            "regex is anchored: no substring match",
        ),
        (
            r#"{ claim = "email", equals = "alice@example.com" }"#,
            true,
            "equals string",
        ),
        (
            r#"{ claim = "email_verified", equals = true }"#,
            true,
            "equals bool",
        ),
        (r#"{ claim = "level", equals = 3 }"#, true, "equals number"),
        (
            r#"{ claim = "level", equals = "3" }"#,
            false,
            "equals is typed",
        ),
        (
            r#"{ claim = "amr", equals = "mfa" }"#,
            true,
            "equals on an array matches any element",
        ),
        (
            r#"{ claim = "email", in = ["bob@example.com", "alice@example.com"] }"#,
            true,
            "in",
        ),
        (
            r#"{ claim = "email", in = ["bob@example.com"] }"#,
            false,
            "in miss",
        ),
        (
            r#"{ claim = "email", starts_with = "alice@" }"#,
            true,
            "starts_with",
        ),
        (
            r#"{ claim = "email", starts_with = "bob@" }"#,
            false,
            "starts_with miss",
        ),
        (
            r#"{ claim = "email", ends_with = "@example.com" }"#,
            true,
            "ends_with",
        ),
        (
            r#"{ claim = "email", ends_with = "@evil.com" }"#,
            false,
            "ends_with miss",
        ),
        (
            r#"{ claim = "email", regex = "[a-z]+@example\\.com" }"#,
            true,
            "claim regex",
        ),
        (
            r#"{ claim = "email", regex = "example" }"#,
            false,
            "claim regex is anchored",
        ),
        (
            r#"{ claim = "realm_access.roles", equals = "ops" }"#,
            true,
            "nested path into array",
        ),
        (
            r#"{ claim = "realm_access.roles", exists = true }"#,
            true,
            "exists",
        ),
        (
            r#"{ claim = "department", exists = false }"#,
            true,
            "exists = false on absent",
        ),
        (
            r#"{ claim = "department", exists = true }"#,
            false,
            "exists on absent",
        ),
        (
            r#"{ claim = "department", equals = "x" }"#,
            false,
            "absent claim never equals",
        ),
        (
            r#"{ all = [ { group = "developers" }, { claim = "amr", equals = "mfa" } ] }"#,
            true,
            "all",
        ),
        (
            r#"{ all = [ { group = "developers" }, { group = "nope" } ] }"#,
            false,
            "all with one failing",
        ),
        (
            r#"{ any = [ { group = "nope" }, { group = "developers" } ] }"#,
            true,
            "any",
        ),
        (
            r#"{ any = [ { group = "nope" }, { group = "nada" } ] }"#,
            false,
            "any with none",
        ),
        (r#"{ not = { group = "nope" } }"#, true, "not"),
    ];
    for (cond, expected, what) in cases {
        let r = rules(&format!(
            "[[rule]]\nid = \"r\"\nwhen = {cond}\ngrant = [\"prod-ro\"]\n"
        ));
        let ev = r.evaluate(&identity(claims.clone()));
        assert_eq!(
            ev.rules[0].matched, *expected,
            "{what}: {cond} -> {}",
            ev.rules[0].why
        );
        assert_eq!(
            !ev.grants.is_empty(),
            *expected,
            "{what}: grant follows the match"
        );
    }
}

#[test]
fn a_rule_restricted_to_another_idp_does_not_apply() {
    let r = rules("[[rule]]\nid = \"r\"\nidp = [\"other\"]\ngrant = [\"prod-ro\"]\n");
    let ev = r.evaluate(&identity(json!({})));
    assert!(ev.grants.is_empty());
    assert!(
        ev.rules[0].why.contains("applies only to IdP other"),
        "{}",
        ev.rules[0].why
    );
}

#[test]
fn deny_overrides_grant_and_says_so() {
    let r = rules(
        r#"
[[rule]]
id = "deny-prod"
when = { group = "contractors" }
deny = ["prod-*"]

[[rule]]
id = "all"
grant = ["prod-admin", "prod-ro"]
"#,
    );
    let ev = r.evaluate(&identity(json!({ "groups": ["contractors"] })));
    assert!(ev.grants.is_empty());
    assert_eq!(ev.refused.len(), 2);
    assert!(
        matches!(&ev.refused[0].reason, RefusalReason::Denied(by) if by[0].as_str() == "deny-prod")
    );
}

#[test]
fn session_parameters_merge_to_the_most_restrictive_and_render_templates() {
    let r = rules(
        r#"
[[rule]]
id = "a"
grant = ["prod-admin"]
[rule.session]
max_duration = "1h"
tags = { team = "{claims.department}", who = "{username}" }
transitive_tag_keys = ["team"]
source_identity = "{email}"

[[rule]]
id = "b"
grant = ["prod-admin"]
[rule.session]
max_duration = "30m"
tags = { team = "{claims.department}" }
"#,
    );
    let ev = r.evaluate(&identity(
        json!({ "department": "platform", "email": "alice@example.com" }),
    ));
    let g = ev.grant("prod-admin").expect("granted");
    assert_eq!(g.max_duration.as_secs(), 1800, "shortest duration wins");
    assert_eq!(
        g.capped_by.as_ref().map(|r| r.as_str()),
        Some("b"),
        "explain names the rule that capped it"
    );
    let text = render_text(
        &identity(json!({ "department": "platform", "email": "alice@example.com" })),
        &ev,
    );
    assert!(
        text.contains("max duration:    30m (capped at 30m by rule b"),
        "{text}"
    );
    assert_eq!(
        g.rules.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let tags: Vec<(&str, &str)> = g.tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("team", "platform"), ("who", "alice@example.com")]);
    assert_eq!(g.tags.transitive_keys(), ["team"]);
    assert_eq!(
        g.source_identity.as_ref().unwrap().as_str(),
        "alice@example.com"
    );
}

#[test]
fn grants_fail_with_a_reason_when_templates_break_aws_limits_or_conflict() {
    let r = rules(
        r#"
[[rule]]
id = "a"
grant = ["prod-admin"]
[rule.session]
tags = { team = "{claims.department}" }

[[rule]]
id = "b"
grant = ["prod-ro"]
[rule.session]
tags = { team = "{claims.department}" }

[[rule]]
id = "c"
when = { group = "x" }
grant = ["prod-ro"]
[rule.session]
tags = { team = "fixed" }
"#,
    );
    let long = "d".repeat(300);
    let ev = r.evaluate(&identity(json!({ "department": long })));
    assert!(ev.grants.is_empty());
    let why = |role: &str| match &ev
        .refused
        .iter()
        .find(|r| r.role.as_str() == role)
        .unwrap()
        .reason
    {
        RefusalReason::Invalid(w) => w.clone(),
        other => panic!("{other:?}"),
    };
    assert!(why("prod-admin").contains("256"), "{}", why("prod-admin"));

    let ev = r.evaluate(&identity(json!({ "groups": ["x"], "department": "ops" })));
    let refused = ev
        .refused
        .iter()
        .find(|r| r.role.as_str() == "prod-ro")
        .unwrap();
    assert!(matches!(&refused.reason, RefusalReason::Invalid(w) if w.contains("different values")));

    let ev = r.evaluate(&identity(json!({})));
    assert!(
        matches!(&ev.refused[0].reason, RefusalReason::Invalid(w) if w.contains("claim department is missing"))
    );
}

#[test]
fn explain_text_shows_each_rule_and_the_deny() {
    let r = rules(
        r#"
[[rule]]
id = "grant-all"
grant = ["prod-admin"]

[[rule]]
id = "deny-admin"
when = { group = "contractors" }
deny = ["prod-admin"]
"#,
    );
    let id = identity(json!({ "groups": ["contractors"] }));
    let text = render_text(&id, &r.evaluate(&id));
    assert!(
        text.contains("rule[0] grant-all (grant prod-admin): MATCHED"),
        "{text}"
    );
    assert!(
        text.contains("rule[1] deny-admin (deny prod-admin): MATCHED"),
        "{text}"
    );
    assert!(
        text.contains("DENIED  prod-admin (granted by grant-all, denied by deny-admin; deny wins)"),
        "{text}"
    );
    let json = render_json(&id, &r.evaluate(&id));
    assert_eq!(json["refused"][0]["reason"], "denied");
}

// ---- properties -------------------------------------------------------------------

const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const ROLES: [&str; 4] = ["r0", "r1", "r2", "r3"];

#[derive(Debug, Clone)]
struct RuleSpec {
    group: usize,
    deny: bool,
    roles: Vec<usize>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        0..GROUPS.len(),
        prop::bool::weighted(0.3),
        prop::collection::btree_set(0..ROLES.len(), 1..3),
    )
        .prop_map(|(group, deny, roles)| RuleSpec {
            group,
            deny,
            roles: roles.into_iter().collect(),
        })
}

fn build(specs: &[RuleSpec]) -> MappingRules {
    let mut text = String::from("[[account]]\nid = \"a\"\nnumber = \"111122223333\"\n");
    for r in ROLES {
        text += &format!(
            "[[role]]\nid = \"{r}\"\narn = \"arn:aws:iam::111122223333:role/{r}\"\naccount = \"a\"\n"
        );
    }
    for (i, s) in specs.iter().enumerate() {
        let roles: Vec<String> = s
            .roles
            .iter()
            .map(|r| format!("\"{}\"", ROLES[*r]))
            .collect();
        text += &format!(
            "[[rule]]\nid = \"rule{i}\"\nwhen = {{ group = \"{}\" }}\n{} = [{}]\n",
            GROUPS[s.group],
            if s.deny { "deny" } else { "grant" },
            roles.join(", ")
        );
    }
    config::from_str(&text, std::path::Path::new("p.toml"), Vec::new())
        .expect("generated config is valid")
        .rules
}

fn member_of(groups: &[usize]) -> IdentityClaims {
    let names: Vec<&str> = groups.iter().map(|g| GROUPS[*g]).collect();
    identity(json!({ "groups": names }))
}

proptest! {
    #[test]
    fn a_matching_deny_always_wins(specs in prop::collection::vec(rule_spec(), 0..8), groups in prop::collection::btree_set(0..GROUPS.len(), 0..4)) {
        let groups: Vec<usize> = groups.into_iter().collect();
        let ev = build(&specs).evaluate(&member_of(&groups));
        for s in specs.iter().filter(|s| s.deny && groups.contains(&s.group)) {
            for r in &s.roles {
                prop_assert!(ev.grant(ROLES[*r]).is_none(), "role {} denied but granted", ROLES[*r]);
            }
        }
    }

    #[test]
    fn rule_order_does_not_change_the_result(
        (specs, shuffled) in prop::collection::vec(rule_spec(), 0..8)
            .prop_flat_map(|specs| (Just(specs.clone()), Just(specs).prop_shuffle())),
        groups in prop::collection::btree_set(0..GROUPS.len(), 0..4),
    ) {
        let groups: Vec<usize> = groups.into_iter().collect();
        let id = member_of(&groups);
        let (a, b) = (build(&specs).evaluate(&id), build(&shuffled).evaluate(&id));
        // Rule ids follow position, so compare the roles granted and refused.
        prop_assert_eq!(granted(&a), granted(&b));
        let refused = |e: &Evaluation| e.refused.iter().map(|r| r.role.to_string()).collect::<Vec<_>>();
        prop_assert_eq!(refused(&a), refused(&b));
    }

    #[test]
    fn no_role_is_granted_without_a_matching_grant_rule(specs in prop::collection::vec(rule_spec(), 0..8), groups in prop::collection::btree_set(0..GROUPS.len(), 0..4)) {
        let groups: Vec<usize> = groups.into_iter().collect();
        let ev = build(&specs).evaluate(&member_of(&groups));
        for g in &ev.grants {
            let role = ROLES.iter().position(|r| *r == g.role.as_str()).unwrap();
            prop_assert!(specs.iter().any(|s| !s.deny && groups.contains(&s.group) && s.roles.contains(&role)),
                "{} granted without a matching grant rule", g.role);
        }
    }
}
