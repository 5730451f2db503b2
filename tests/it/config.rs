//! Configuration errors as an operator meets them.

use std::path::Path;

use rolegate::config::{self, ConfigError};

fn errors(text: &str, env: Vec<(&str, &str)>) -> Vec<ConfigError> {
    let env = env
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<Vec<_>>();
    match config::from_str(text, Path::new("broker.toml"), env) {
        Ok(_) => panic!("config unexpectedly valid"),
        Err(e) => e.0,
    }
}

fn find<'a>(errs: &'a [ConfigError], key: &str) -> &'a ConfigError {
    errs.iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no error for {key}; got {errs:#?}"))
}

const ROLES: &str = r#"
[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "admin"
arn = "arn:aws:iam::111122223333:role/Admin"
account = "prod"
max_session_duration = "1h"
"#;

#[test]
fn three_different_mistakes_are_all_reported_with_key_paths_and_lines() {
    let text = r#"[server]
listen = "127.0.0.1:8080"
colour = "blue"

[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "admin"
arn = "arn:aws:iam::11112222333:role/Admin"
account = "prod"

[[rule]]
id = "admins"
grant = ["prod-admin"]
"#;
    let errs = errors(text, vec![]);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let unknown = find(&errs, "server.colour");
    assert!(unknown.reason.contains("unknown key"), "{unknown}");
    assert_eq!(unknown.line, Some(3));
    let arn = find(&errs, "role[0].arn");
    assert!(arn.reason.contains("12 digits"), "{arn}");
    assert_eq!(arn.line, Some(11));
    let grant = find(&errs, "rule[0].grant[0]");
    assert!(
        grant.reason.contains("unknown role \"prod-admin\""),
        "{grant}"
    );
    assert_eq!(grant.origin, "broker.toml");
    assert_eq!(
        grant.to_string(),
        "broker.toml:16: rule[0].grant[0]: unknown role \"prod-admin\""
    );
}

#[test]
fn a_syntax_error_names_its_line() {
    let errs = errors(
        "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \n",
        vec![],
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(3), "{errs:#?}");
    assert!(errs[0].reason.contains("not valid TOML"));
}

#[test]
fn a_broken_role_does_not_cascade_into_unknown_role_errors() {
    let text = format!(
        "{ROLES}\n[[role]]\nid = \"ro\"\narn = \"bad\"\naccount = \"prod\"\n\n[[rule]]\nid = \"r\"\ngrant = [\"ro\"]\n"
    );
    let errs = errors(&text, vec![]);
    assert_eq!(errs.len(), 1, "only the ARN is wrong: {errs:#?}");
    assert_eq!(errs[0].key, "role[1].arn");
}

#[test]
fn environment_overrides_apply_and_errors_name_the_variable() {
    let text = format!("[server]\nbody_limit = 4096\n{ROLES}");
    let env = vec![
        ("ROLEGATE_SERVER__BODY_LIMIT".to_owned(), "2048".to_owned()),
        (
            "ROLEGATE_SESSION__IDLE_TIMEOUT".to_owned(),
            "10m".to_owned(),
        ),
        (
            "ROLEGATE_CONFIG".to_owned(),
            "ignored: not an override".to_owned(),
        ),
    ];
    let c = config::from_str(&text, Path::new("broker.toml"), env).unwrap();
    assert_eq!(c.server.body_limit, 2048);
    assert_eq!(c.session.idle_timeout.as_secs(), 600);

    let errs = errors(
        &text,
        vec![
            ("ROLEGATE_SERVER__LISTEN", "not-an-address"),
            ("ROLEGATE_NOPE__X", "1"),
        ],
    );
    let listen = find(&errs, "server.listen");
    assert_eq!(listen.origin, "environment ROLEGATE_SERVER__LISTEN");
    let nope = find(&errs, "nope.x");
    assert_eq!(nope.origin, "environment ROLEGATE_NOPE__X");
}

#[test]
fn secrets_come_from_env_or_file_and_never_print() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cr3t-value\n").unwrap();
    let text = format!(
        r#"
[[idp]]
id = "corp"
kind = "oidc"
issuer = "https://idp.example.com"
client_id = "broker"
client_secret = {{ file = "secret" }}
{ROLES}"#
    );
    let c = config::from_str(&text, &dir.path().join("broker.toml"), Vec::new()).unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cr3t-value"),
        "secret leaked into Debug output"
    );
    assert!(debug.contains("REDACTED"));

    let missing = text.replace(
        "{ file = \"secret\" }",
        "{ env = \"ROLEGATE_TEST_SURELY_UNSET\" }",
    );
    let errs = errors(&missing, vec![]);
    assert!(
        find(&errs, "idp[0].client_secret")
            .reason
            .contains("ROLEGATE_TEST_SURELY_UNSET")
    );
    let inline = text.replace("{ file = \"secret\" }", "\"inline-secret\"");
    let errs = errors(&inline, vec![]);
    assert!(
        errs.iter()
            .any(|e| e.key.starts_with("idp[0].client_secret")),
        "{errs:#?}"
    );
}

#[test]
fn a_saml_idp_without_a_pinned_signing_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("md.xml"), "<EntityDescriptor/>").unwrap();
    let text = format!("[[idp]]\nid = \"s\"\nkind = \"saml\"\nmetadata_file = \"md.xml\"\n{ROLES}");
    let e = match config::from_str(&text, &dir.path().join("b.toml"), Vec::new()) {
        Err(e) => e.0,
        Ok(_) => panic!("accepted a SAML IdP without pins"),
    };
    assert!(
        find(&e, "idp[0]")
            .reason
            .contains("pinned IdP signing certificate is required")
    );
}

#[test]
fn weak_or_symmetric_oidc_algorithms_and_plain_http_issuers_are_refused() {
    let text = format!(
        "[[idp]]\nid = \"o\"\nkind = \"oidc\"\nissuer = \"http://idp.example.com\"\nclient_id = \"c\"\nallowed_algorithms = [\"HS256\"]\n{ROLES}"
    );
    let errs = errors(&text, vec![]);
    assert!(find(&errs, "idp[0].issuer").reason.contains("https"));
    assert!(
        find(&errs, "idp[0].allowed_algorithms[0]")
            .reason
            .contains("asymmetric")
    );
}

#[test]
fn grant_durations_beyond_the_role_maximum_and_bad_templates_are_refused() {
    let text = format!(
        "{ROLES}\n[[rule]]\nid = \"r\"\ngrant = [\"admin\"]\n[rule.session]\nmax_duration = \"2h\"\ntags = {{ team = \"{{department}}\", \"aws:x\" = \"y\" }}\ntransitive_tag_keys = [\"nope\"]\n"
    );
    let errs = errors(&text, vec![]);
    assert!(
        find(&errs, "rule[0].session.max_duration")
            .reason
            .contains("longer than role \"admin\"")
    );
    assert!(
        find(&errs, "rule[0].session.tags.team")
            .reason
            .contains("unknown placeholder")
    );
    assert!(
        find(&errs, "rule[0].session.tags.aws:x")
            .reason
            .contains("aws:")
    );
    assert!(
        find(&errs, "rule[0].session.transitive_tag_keys[0]")
            .reason
            .contains("not one of this rule's tags")
    );
}

#[test]
fn cross_references_are_checked() {
    let text = r#"
[aws]
partition = "aws"

[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "a"
arn = "arn:aws:iam::999999999999:role/A"
account = "prod"

[[role]]
id = "b"
arn = "arn:aws-cn:iam::111122223333:role/B"
account = "prod"

[[role]]
id = "c"
arn = "arn:aws:iam::111122223333:role/C"
account = "staging"

[[rule]]
id = "r"
idp = ["ghost"]
deny = ["zz-*"]
"#;
    let errs = errors(text, vec![]);
    assert!(
        find(&errs, "role[0].arn")
            .reason
            .contains("account 999999999999")
    );
    assert!(
        find(&errs, "role[1].arn")
            .reason
            .contains("partition aws-cn")
    );
    assert!(
        find(&errs, "role[2].account")
            .reason
            .contains("unknown account")
    );
    assert!(find(&errs, "rule[0].idp[0]").reason.contains("unknown IdP"));
    assert!(
        find(&errs, "rule[0].deny[0]")
            .reason
            .contains("matches no configured role")
    );
}

#[test]
fn the_shipped_configs_are_valid() {
    for path in ["config/rolegate.example.toml", "config/dev.toml"] {
        if let Err(e) = config::load(Path::new(path)) {
            panic!("{path} is invalid:\n{e}");
        }
    }
}

/// A secret written inline is refused without its value ever being printed, and the
/// message names the forms a secret takes, not a Rust type.
#[test]
fn an_inline_secret_is_refused_without_echoing_it() {
    for (what, value) in [
        ("a string", "\"hunter2-very-secret\""),
        ("a number", "12345678"),
        ("a table with a typo", "{ evn = \"X\" }"),
    ] {
        let text = format!(
            "[[idp]]\nid = \"corp\"\nkind = \"oidc\"\nissuer = \"https://idp.example.com\"\nclient_id = \"broker\"\nclient_secret = {value}\n{ROLES}"
        );
        let errs = errors(&text, vec![]);
        let e = find(&errs, "idp[0].client_secret");
        let all = format!("{errs:?}");
        assert!(
            e.reason
                .contains("give it as { env = \"VAR\" } or { file = \"path\" }"),
            "{what}: {e}"
        );
        assert!(
            !all.contains("hunter2") && !all.contains("12345678"),
            "{what}: {all}"
        );
        assert!(!all.contains("Raw"), "{what}: a Rust type name: {all}");
        assert_eq!(e.line, Some(6), "{what}");
    }
}

/// A typo and a type error (and another typo) in one table come out in one run, each
/// with its own key and line.
#[test]
fn every_mistake_in_one_table_is_reported_together() {
    let text = format!(
        r#"[[idp]]
id = "corp"
kind = "oidc"
isuer = "https://idp.example.com"
client_id = "broker"
use_userinfo = "yes"
scope = ["email"]
{ROLES}"#
    );
    let errs = errors(&text, vec![]);
    let typo = find(&errs, "idp[0].isuer");
    assert!(typo.reason.contains("unknown key"), "{typo}");
    assert_eq!(typo.line, Some(4));
    let kind = find(&errs, "idp[0].use_userinfo");
    assert!(kind.reason.contains("expected a boolean"), "{kind}");
    assert_eq!(kind.line, Some(6));
    let typo2 = find(&errs, "idp[0].scope");
    assert_eq!(typo2.line, Some(7));
    let all = format!("{errs:?}");
    assert!(!all.contains("Raw"), "{all}");
}

#[test]
fn a_drain_shorter_than_the_sts_deadline_is_refused() {
    let errs = errors(
        "[server]\nlisten = \"127.0.0.1:8080\"\nshutdown_timeout = \"5s\"\n\n[aws]\nsts_timeout = \"10s\"\n",
        vec![],
    );
    let e = find(&errs, "server.shutdown_timeout");
    assert_eq!(e.line, Some(3), "{errs:#?}");
    assert!(
        e.reason.contains("at least aws.sts_timeout (10s)"),
        "{}",
        e.reason
    );
}

/// The configuration shipped in the Kubernetes ConfigMap is valid as written, with its
/// secret files where the Deployment mounts them (here: a temporary folder).
#[test]
fn the_kubernetes_configmap_holds_a_valid_config() {
    let yaml = std::fs::read_to_string("deploy/kubernetes/base/configmap.yaml").unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("redis-url"),
        "rediss://rolegate:pw@redis.example.com:6379/",
    )
    .unwrap();
    std::fs::write(secrets.path().join("oidc-client-secret"), "s").unwrap();
    let toml: String = yaml
        .split("rolegate.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect::<String>()
        .replace(
            "/etc/rolegate-secrets",
            &secrets.path().display().to_string(),
        );
    if let Err(e) = config::from_str(&toml, Path::new("configmap.toml"), Vec::new()) {
        panic!("deploy/kubernetes/base/configmap.yaml:\n{e}");
    }
}

#[test]
fn sentinel_urls_are_parsed_and_bad_ones_refused_without_echoing_them() {
    use rolegate::config::SentinelTarget;
    let t = SentinelTarget::parse("redis+sentinel://app:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster")
        .unwrap();
    assert_eq!(
        t.sentinels,
        ["redis://10.0.0.1:26379/", "redis://10.0.0.2:26379/"]
    );
    assert_eq!(
        (t.service.as_str(), t.username.as_deref()),
        ("mymaster", Some("app"))
    );
    assert!(t.password.is_some());
    for bad in [
        "redis://10.0.0.1:26379/mymaster",
        "redis+sentinel://10.0.0.1/mymaster",
        "redis+sentinel://10.0.0.1:26379/",
        "redis+sentinel://10.0.0.1:26379,:1/m",
    ] {
        assert!(SentinelTarget::parse(bad).is_none(), "{bad}");
    }
    let errs = errors(
        "[session]\nstore = \"redis-sentinel\"\nredis_url = \"redis+sentinel://secret-host-name/\"\n",
        vec![],
    );
    let e = find(&errs, "session.redis_url");
    assert!(
        e.reason
            .contains("redis+sentinel://[user:password@]host:port"),
        "{}",
        e.reason
    );
    assert!(!e.reason.contains("secret-host-name"));
    let errs = errors(
        "[session]\nstore = \"redis-sentinel\"\nredis_url = \"redis+sentinel://u:hunter2@h:1/m\"\n",
        vec![],
    );
    assert!(
        find(&errs, "session.redis_url")
            .reason
            .contains("not inline")
    );
    assert!(!format!("{errs:?}").contains("hunter2"));
}

/// `config/rolegate.example.toml` is the reference: every key any table of the file
/// accepts (read from the parser's own structs) is shown there, set or commented.
#[test]
fn the_example_config_shows_every_key_the_parser_accepts() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/rolegate.example.toml"
    ))
    .unwrap();
    let shown = |key: &str| {
        let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let setting = text.match_indices(key).any(|(i, _)| {
            let before_ok = !text[..i].ends_with(is_ident);
            let after = text[i + key.len()..].trim_start_matches(' ');
            before_ok && after.starts_with('=')
        });
        // A key that is a table of its own (`[rule.session]`).
        setting || text.contains(&format!(".{key}]"))
    };
    let mut missing = Vec::new();
    for (table, keys) in rolegate::config::accepted_keys() {
        assert!(!keys.is_empty(), "{table}: no keys read");
        for key in keys {
            if !shown(key) {
                missing.push(format!("{table}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the config accepts but the example does not show: {missing:?}"
    );
}

#[test]
fn elevation_settings_webhooks_and_break_glass_are_checked() {
    let text = format!(
        r#"{ROLES}
[[role]]
id = "bg"
arn = "arn:aws:iam::111122223333:role/BreakGlass"
account = "prod"
break_glass_max = "10m"

[[rule]]
id = "jit"
eligible = ["admin", "nope"]
[rule.elevation]
approvers = {{ grop = "x" }}
approvals = 3
max_elevation = "13h"
reason = "maybe"
ticket_pattern = "(["
auto_approve_window = {{ days = ["mon", "funday"], from = "18:00", to = "09:00" }}

[[rule]]
id = "both"
grant = ["admin"]
eligible = ["admin"]

[[rule]]
id = "stray"
grant = ["admin"]
[rule.elevation]
approvers = {{ group = "x" }}

[[rule]]
id = "no-policy"
eligible = ["admin"]

[[webhook]]
url = "http://hooks.example.com/x"
format = "json"
events = ["sometimes"]
timeout = "5m"
"#
    );
    let errs = errors(&text, vec![]);
    let has = |key: &str, words: &str| {
        let e = find(&errs, key);
        assert!(e.reason.contains(words), "{key}: {}", e.reason);
        assert!(e.line.is_some(), "{key} names its line");
    };
    has("role[1].break_glass_max", "break_glass = true");
    has("rule[0].eligible[1]", "unknown role");
    has("rule[0].elevation.approvals", "1 or 2");
    has("rule[0].elevation.max_elevation", "between 1m and 12h");
    has("rule[0].elevation.reason", "\"required\" or \"optional\"");
    has("rule[0].elevation.ticket_pattern", "invalid regex");
    has("rule[0].elevation.auto_approve_window.days[1]", "not a day");
    has("rule[0].elevation.auto_approve_window.to", "after from");
    assert!(
        errs.iter()
            .any(|e| e.key.starts_with("rule[0].elevation.approvers")),
        "{errs:#?}"
    );
    has("rule[1]", "one of them");
    has("rule[2].elevation", "only rules with eligible");
    has("rule[3].elevation", "need [rule.elevation]");
    has("webhook[0].url", "https");
    has("webhook[0].secret", "signed");
    has("webhook[0].events[0]", "not one of");
    has("webhook[0].timeout", "between");
}
