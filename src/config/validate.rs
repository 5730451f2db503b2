//! Converts the raw TOML into a [`Config`], collecting every error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::Glob;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{ConfigError, ConfigErrors, Errors};
use super::raw::*;
use super::*;
use crate::domain::{
    AccountId, Identifier, IdpId, Partition, RoleArn, SessionDuration, SessionPolicy,
};
use crate::mapping::{
    Condition, Effect, GrantSession, MappingRule, MappingRules, RolePattern, RoleTarget, Template,
};

const SECTIONS: [&str; 5] = ["server", "session", "aws", "audit", "web_identity"];
const ARRAYS: [&str; 4] = ["idp", "account", "role", "rule"];

pub(super) fn from_str(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let line_at = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let spanned = toml::de::DeTable::parse(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            key: String::new(),
            line: e.span().map(|s| line_at(s.start)),
            reason: format!("not valid TOML: {}", e.message()),
        }])
    })?;
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            key: String::new(),
            line: e.span().map(|s| line_at(s.start)),
            reason: format!("not valid TOML: {}", e.message()),
        }])
    })?;

    let mut env_errors = Vec::new();
    let overridden = apply_env(&mut table, env, &mut env_errors);
    let locate = |key: &str| -> (String, Option<usize>) {
        for (k, var) in &overridden {
            if key == k || key.starts_with(&format!("{k}.")) {
                return (format!("environment {var}"), None);
            }
        }
        let line = line_of(spanned.get_ref(), key).map(line_at);
        (origin.clone(), line)
    };
    let mut errs = Errors::new(&locate);
    errs.list.extend(env_errors);
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) && !ARRAYS.contains(&key.as_str()) {
            errs.push(
                key.clone(),
                "unknown key (top-level keys are [server], [session], [aws], [audit], [web_identity], [[idp]], [[account]], [[role]], [[rule]])",
            );
        }
    }

    let raw_server: RawServer = section(&table, "server", &mut errs).unwrap_or_default();
    let raw_session: RawSession = section(&table, "session", &mut errs).unwrap_or_default();
    let raw_aws: RawAws = section(&table, "aws", &mut errs).unwrap_or_default();
    let raw_audit: RawAudit = section(&table, "audit", &mut errs).unwrap_or_default();
    let audit = AuditConfig {
        file: raw_audit.file.map(|f| base_dir.join(f)),
    };

    let web_identity = match table.get("web_identity") {
        None => None,
        Some(_) => section::<RawWebIdentity>(&table, "web_identity", &mut errs)
            .and_then(|raw| convert_web_identity(raw, &base_dir, &mut errs)),
    };
    let server = convert_server(raw_server, &mut errs);
    let session = convert_session(raw_session, &base_dir, &mut errs);
    let aws = convert_aws(raw_aws, &mut errs);

    // Ids declared by entries, even entries that failed to parse, so that one broken
    // entry does not cascade into "unknown id" errors everywhere it is referenced.
    let idp_items = array(&table, "idp", &mut errs);
    let account_items = array(&table, "account", &mut errs);
    let role_items = array(&table, "role", &mut errs);
    let rule_items = array(&table, "rule", &mut errs);
    let declared = |items: &[(String, toml::Value)]| -> BTreeSet<String> {
        items
            .iter()
            .filter_map(|(_, v)| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .collect()
    };
    let declared_idps = declared(&idp_items);
    let declared_accounts = declared(&account_items);
    let declared_roles = declared(&role_items);

    let mut idps = Vec::new();
    for (key, value) in idp_items {
        if let Some(idp) = convert_idp(&key, value, &base_dir, &mut errs) {
            if idps.iter().any(|i: &IdpConfig| i.id == idp.id) {
                errs.push(
                    format!("{key}.id"),
                    format!("duplicate IdP id {:?}", idp.id.as_str()),
                );
            } else {
                idps.push(idp);
            }
        }
    }

    let mut accounts: Vec<Account> = Vec::new();
    for (key, value) in account_items {
        let Some(raw) = de::<RawAccount>(value, &key, &mut errs) else {
            continue;
        };
        let id = errs.check(format!("{key}.id"), Identifier::parse(&raw.id));
        let number = errs.check(format!("{key}.number"), AccountId::parse(&raw.number));
        let (Some(id), Some(number)) = (id, number) else {
            continue;
        };
        if accounts.iter().any(|a| a.id == id) {
            errs.push(
                format!("{key}.id"),
                format!("duplicate account id {:?}", id.as_str()),
            );
            continue;
        }
        if let Some(other) = accounts.iter().find(|a| a.number == number) {
            errs.push(
                format!("{key}.number"),
                format!(
                    "account number {number} is already used by account {:?}",
                    other.id.as_str()
                ),
            );
            continue;
        }
        let display_name = raw.display_name.unwrap_or_else(|| id.to_string());
        accounts.push(Account {
            id,
            number,
            display_name,
        });
    }

    let mut roles: Vec<Role> = Vec::new();
    for (key, value) in role_items {
        let Some(raw) = de::<RawRole>(value, &key, &mut errs) else {
            continue;
        };
        if let Some(role) = convert_role(
            aws.as_ref(),
            &key,
            raw,
            &accounts,
            &declared_accounts,
            &base_dir,
            &mut errs,
        ) {
            if roles.iter().any(|r| r.id == role.id) {
                errs.push(
                    format!("{key}.id"),
                    format!("duplicate role id {:?}", role.id.as_str()),
                );
            } else {
                roles.push(role);
            }
        }
    }

    let ctx = RuleContext {
        idps: &idps,
        declared_idps: &declared_idps,
        roles: &roles,
        declared_roles: &declared_roles,
        base_dir: &base_dir,
    };
    let mut rules: Vec<MappingRule> = Vec::new();
    for (key, value) in rule_items {
        let Some(raw) = de::<RawRule>(value, &key, &mut errs) else {
            continue;
        };
        if let Some(rule) = convert_rule(&key, raw, &ctx, &mut errs) {
            if rules.iter().any(|r| r.id == rule.id) {
                errs.push(
                    format!("{key}.id"),
                    format!("duplicate rule id {:?}", rule.id.as_str()),
                );
            } else {
                rules.push(rule);
            }
        }
    }

    if roles.iter().any(|r| r.sts_mode == StsMode::WebIdentity) && web_identity.is_none() {
        errs.push("web_identity", "roles use sts_mode = \"web_identity\", which needs a [web_identity] section with signing keys");
    }
    if let Some(s) = &server
        && web_identity.is_some()
        && s.public_url.scheme() != "https"
        && !is_loopback(&s.public_url)
    {
        errs.push(
            "server.public_url",
            "web_identity needs an https public URL (AWS fetches the broker's JWKS from it)",
        );
    }
    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    let (Some(server), Some(session), Some(aws)) = (server, session, aws) else {
        // Each None above pushed an error; this is unreachable but kept total.
        return Err(ConfigErrors(vec![ConfigError {
            origin,
            key: String::new(),
            line: None,
            reason: "configuration is incomplete".into(),
        }]));
    };
    let targets = roles
        .iter()
        .map(|r| RoleTarget {
            id: r.id.clone(),
            arn: r.arn.clone(),
            max_session_duration: r.max_session_duration,
            session_policy: r.session_policy.clone(),
        })
        .collect();
    Ok(Config {
        source: path.to_path_buf(),
        server,
        session,
        aws,
        audit,
        web_identity,
        idps,
        accounts,
        roles,
        rules: MappingRules::new(rules, targets),
    })
}

/// Applies `ROLEGATE_SECTION__KEY` variables to the table. Returns (key path, variable)
/// for every key overridden, so errors about those keys name the variable.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("ROLEGATE_") && k.contains("__"))
        .collect();
    vars.sort();
    let mut overridden = Vec::new();
    for (var, value) in vars {
        let rest = &var["ROLEGATE_".len()..];
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if !SECTIONS.contains(&section.as_str()) || key.is_empty() || key.contains("__") {
            errors.push(ConfigError {
                origin: format!("environment {var}"),
                key: format!("{section}.{key}"),
                line: None,
                reason: "overrides are only for keys of [server], [session], [aws], [audit] and [web_identity] (ROLEGATE_SECTION__KEY)"
                    .into(),
            });
            continue;
        }
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(sec) = entry.as_table_mut() else {
            continue;
        };
        // Coerce to the type the file used for this key, so `..__BODY_LIMIT=1024` stays a number.
        let new = match sec.get(&key) {
            Some(toml::Value::Integer(_)) => value.parse().map(toml::Value::Integer).ok(),
            Some(toml::Value::Boolean(_)) => value.parse().map(toml::Value::Boolean).ok(),
            _ => None,
        }
        .or_else(|| match (key.as_str(), value.parse::<i64>()) {
            ("body_limit" | "workers", Ok(n)) => Some(toml::Value::Integer(n)),
            _ => None,
        })
        .unwrap_or(toml::Value::String(value));
        sec.insert(key.clone(), new);
        overridden.push((format!("{section}.{key}"), var));
    }
    overridden
}

/// The byte offset where `key` (e.g. `rule[2].grant`) is defined, if the parser recorded it.
fn line_of(root: &toml::de::DeTable<'_>, key: &str) -> Option<usize> {
    let mut best = None;
    let mut table = Some(root);
    let mut value: Option<&toml::Spanned<toml::de::DeValue<'_>>> = None;
    for seg in key.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let t = match (table, value) {
            (Some(t), _) => t,
            (None, Some(v)) => match v.get_ref() {
                toml::de::DeValue::Table(t) => t,
                _ => break,
            },
            _ => break,
        };
        let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        best = Some(k.span().start);
        let mut v = v;
        if let Some(i) = index {
            match v.get_ref() {
                toml::de::DeValue::Array(items) => match items.get(i) {
                    Some(item) => {
                        v = item;
                        best = Some(item.span().start);
                    }
                    None => break,
                },
                _ => break,
            }
        }
        table = None;
        value = Some(v);
    }
    best
}

fn section<T: DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    errs: &mut Errors,
) -> Option<T> {
    match table.get(name) {
        None => Some(T::default()),
        Some(v @ toml::Value::Table(_)) => de(v.clone(), name, errs),
        Some(_) => {
            errs.push(name, format!("must be a table ([{name}])"));
            None
        }
    }
}

fn array(table: &toml::Table, name: &str, errs: &mut Errors) -> Vec<(String, toml::Value)> {
    match table.get(name) {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let key = format!("{name}[{i}]");
                if v.is_table() {
                    Some((key, v.clone()))
                } else {
                    errs.push(key, format!("must be a table ([[{name}]])"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            errs.push(name, format!("must be an array of tables ([[{name}]])"));
            Vec::new()
        }
    }
}

/// Deserializes one value strictly, recording the failing key path.
fn de<T: DeserializeOwned>(value: toml::Value, key: &str, errs: &mut Errors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let reason = e.into_inner().message().to_owned();
            // For an unknown field the path points at its parent; name the field itself.
            let field = reason
                .strip_prefix("unknown field `")
                .and_then(|r| r.split_once('`'))
                .map(|(f, _)| f.to_owned());
            let mut full = if inner == "." || inner.is_empty() {
                key.to_owned()
            } else {
                format!("{key}.{inner}")
            };
            if let Some(f) = field
                && !full.ends_with(&format!(".{f}"))
            {
                full = format!("{full}.{f}");
            }
            let reason = if reason.starts_with("unknown field") {
                format!("unknown key ({reason})")
            } else {
                reason
            };
            errs.push(full, reason);
            None
        }
    }
}

fn duration(errs: &mut Errors, key: &str, raw: Option<&str>, default: &str) -> Option<Duration> {
    let s = raw.unwrap_or(default);
    errs.check(
        key,
        humantime::parse_duration(s).map_err(|e| {
            format!("invalid duration {s:?} ({e}); write e.g. \"90s\", \"15m\", \"1h\"")
        }),
    )
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a URL that must be https, or http on a loopback host (local development and tests).
fn secure_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{s:?} must use https (plain http is allowed only on loopback)"
            ));
        }
        other => return Err(format!("{s:?} has scheme {other:?}; expected https")),
    }
    if url.host().is_none() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{s:?} must have a host and no fragment or credentials"
        ));
    }
    Ok(url)
}

fn convert_server(raw: RawServer, errs: &mut Errors) -> Option<ServerConfig> {
    let listen_s = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: Option<SocketAddr> = errs.check(
        "server.listen",
        listen_s
            .parse::<SocketAddr>()
            .map_err(|_| format!("{listen_s:?} is not an address such as \"127.0.0.1:8080\"")),
    );
    let public_url = match (&raw.public_url, listen) {
        (Some(u), _) => errs.check(
            "server.public_url",
            secure_url(u).and_then(|u| {
                if u.query().is_some() {
                    Err("public_url must not have a query".into())
                } else {
                    Ok(u)
                }
            }),
        ),
        (None, Some(l)) => Url::parse(&format!("http://{l}")).ok(),
        (None, None) => None,
    };
    let mut trusted = Vec::new();
    for (i, p) in raw.trusted_proxies.iter().enumerate() {
        let net = p
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("{p:?} is not an IP address or CIDR range"));
        if let Some(n) = errs.check(format!("server.trusted_proxies[{i}]"), net) {
            trusted.push(n);
        }
    }
    let log_format = match raw.log_format.as_deref().unwrap_or("json") {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        other => {
            errs.push(
                "server.log_format",
                format!("{other:?} is not \"json\" or \"text\""),
            );
            None
        }
    };
    let log_level = raw.log_level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        errs.push(
            "server.log_level",
            format!(
                "{log_level:?} is not a log filter such as \"info\" or \"rolegate=debug,info\""
            ),
        );
    }
    let shutdown_timeout = duration(
        errs,
        "server.shutdown_timeout",
        raw.shutdown_timeout.as_deref(),
        "30s",
    );
    let body_limit = raw.body_limit.unwrap_or(64 * 1024);
    if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
        errs.push(
            "server.body_limit",
            "must be between 1024 and 16777216 bytes",
        );
    }
    let workers = raw.workers.map(|w| w as usize);
    if workers == Some(0) {
        errs.push("server.workers", "must be at least 1");
    }
    Some(ServerConfig {
        listen: listen?,
        public_url: public_url?,
        trusted_proxies: trusted,
        log_format: log_format?,
        log_level,
        shutdown_timeout: shutdown_timeout?,
        body_limit: body_limit as usize,
        workers,
    })
}

fn resolve_secret(
    key: &str,
    r: &RawSecretRef,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<SecretString> {
    match (&r.env, &r.file) {
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(SecretString::from(v)),
            _ => {
                errs.push(
                    key,
                    format!("environment variable {var} is not set or empty"),
                );
                None
            }
        },
        (None, Some(file)) => {
            let p = base_dir.join(file);
            match std::fs::read_to_string(&p) {
                Ok(v) if !v.trim().is_empty() => Some(SecretString::from(
                    v.trim_end_matches(['\n', '\r']).to_owned(),
                )),
                Ok(_) => {
                    errs.push(key, format!("secret file {} is empty", p.display()));
                    None
                }
                Err(e) => {
                    errs.push(key, format!("cannot read secret file {}: {e}", p.display()));
                    None
                }
            }
        }
        _ => {
            errs.push(
                key,
                "a secret is written as { env = \"VAR\" } or { file = \"path\" }",
            );
            None
        }
    }
}

fn convert_session(raw: RawSession, base_dir: &Path, errs: &mut Errors) -> Option<SessionConfig> {
    let store_kind = raw.store.clone().unwrap_or_else(|| {
        if raw.redis_url.is_some() {
            "redis".into()
        } else {
            "memory".into()
        }
    });
    let store = match store_kind.as_str() {
        "memory" => Some(StoreConfig::Memory),
        "redis" => {
            let url = match &raw.redis_url {
                None => {
                    errs.push("session.redis_url", "store = \"redis\" needs redis_url");
                    None
                }
                Some(RawSecret::Inline(s)) => Some(SecretString::from(s.clone())),
                Some(RawSecret::Ref(r)) => resolve_secret("session.redis_url", r, base_dir, errs),
            };
            url.and_then(|u| {
                use secrecy::ExposeSecret;
                match Url::parse(u.expose_secret()) {
                    Ok(p) if p.scheme() == "redis" || p.scheme() == "rediss" => {
                        Some(StoreConfig::Redis { url: u })
                    }
                    // The URL may hold a password: describe the problem without echoing it.
                    _ => {
                        errs.push("session.redis_url", "must be a redis:// or rediss:// URL");
                        None
                    }
                }
            })
        }
        other => {
            errs.push(
                "session.store",
                format!("{other:?} is not \"redis\" or \"memory\""),
            );
            None
        }
    };
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "rolegate:".into());
    if key_prefix.len() > 64
        || key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        errs.push(
            "session.key_prefix",
            "must be at most 64 characters without spaces",
        );
    }
    let idle = duration(
        errs,
        "session.idle_timeout",
        raw.idle_timeout.as_deref(),
        "30m",
    );
    let absolute = duration(
        errs,
        "session.absolute_timeout",
        raw.absolute_timeout.as_deref(),
        "8h",
    );
    if let (Some(i), Some(a)) = (idle, absolute) {
        if i < Duration::from_secs(60) {
            errs.push("session.idle_timeout", "must be at least 1m");
        }
        if i > a {
            errs.push(
                "session.idle_timeout",
                "must not be longer than absolute_timeout",
            );
        }
        if a > Duration::from_secs(7 * 24 * 3600) {
            errs.push("session.absolute_timeout", "must be at most 7 days");
        }
    }
    Some(SessionConfig {
        store: store?,
        key_prefix,
        idle_timeout: idle?,
        absolute_timeout: absolute?,
    })
}

fn convert_aws(raw: RawAws, errs: &mut Errors) -> Option<AwsConfig> {
    let partition = errs.check(
        "aws.partition",
        Partition::parse(raw.partition.as_deref().unwrap_or("aws")),
    );
    let region = raw.region.unwrap_or_else(|| "us-east-1".into());
    let region_ok = {
        let parts: Vec<&str> = region.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
    };
    if !region_ok {
        errs.push(
            "aws.region",
            format!("{region:?} is not an AWS region such as \"eu-west-1\""),
        );
    } else if let Some(p) = partition {
        let fits = match p {
            Partition::Aws => !region.starts_with("cn-") && !region.starts_with("us-gov-"),
            Partition::AwsCn => region.starts_with("cn-"),
            Partition::AwsUsGov => region.starts_with("us-gov-"),
        };
        if !fits {
            errs.push(
                "aws.region",
                format!("region {region:?} is not in partition {p}"),
            );
        }
    }
    let sts_endpoint_url = raw
        .sts_endpoint_url
        .as_deref()
        .and_then(|u| errs.check("aws.sts_endpoint_url", secure_url(u)));
    let sts_mode = parse_sts_mode(
        errs,
        "aws.sts_mode",
        raw.sts_mode.as_deref().unwrap_or("assume_role"),
    );
    let sts_timeout = duration(errs, "aws.sts_timeout", raw.sts_timeout.as_deref(), "10s");
    if sts_timeout.is_some_and(|t| t < Duration::from_secs(1) || t > Duration::from_secs(60)) {
        errs.push("aws.sts_timeout", "must be between 1s and 60s");
    }
    let partition = partition?;
    let federation_url = errs.check(
        "aws.federation_url",
        secure_url(
            raw.federation_url
                .as_deref()
                .unwrap_or(partition.federation_url()),
        ),
    );
    let console_url = errs.check(
        "aws.console_url",
        secure_url(
            raw.console_url
                .as_deref()
                .unwrap_or(partition.console_url()),
        ),
    );
    let console_session_duration = duration(
        errs,
        "aws.console_session_duration",
        raw.console_session_duration.as_deref(),
        "1h",
    )
    .and_then(|d| errs.check("aws.console_session_duration", SessionDuration::parse(d)));
    Some(AwsConfig {
        region,
        sts_endpoint_url,
        partition,
        sts_mode: sts_mode?,
        sts_timeout: sts_timeout?,
        federation_url: federation_url?,
        console_url: console_url?,
        console_session_duration: console_session_duration?,
    })
}

fn parse_sts_mode(errs: &mut Errors, key: &str, s: &str) -> Option<StsMode> {
    match s {
        "assume_role" => Some(StsMode::AssumeRole),
        "web_identity" => Some(StsMode::WebIdentity),
        other => {
            errs.push(
                key,
                format!("{other:?} is not \"assume_role\" or \"web_identity\""),
            );
            None
        }
    }
}

/// A console destination from config: a path on the console, or a URL on the console's
/// host (or one of its regional subdomains). Never from a request: no open redirect.
fn console_destination(console: &Url, raw: Option<&str>) -> Result<Url, String> {
    let Some(raw) = raw else {
        return Ok(console.clone());
    };
    let url = if raw.starts_with('/') && !raw.starts_with("//") {
        console
            .join(raw)
            .map_err(|e| format!("invalid path {raw:?}: {e}"))?
    } else {
        Url::parse(raw).map_err(|e| format!("invalid URL {raw:?}: {e}"))?
    };
    let host = console.host_str().unwrap_or_default();
    let same_site = url.scheme() == console.scheme()
        && url.port_or_known_default() == console.port_or_known_default()
        && url
            .host_str()
            .is_some_and(|h| h == host || h.ends_with(&format!(".{host}")));
    if !same_site || !url.username().is_empty() {
        return Err(format!("{raw:?} is not on the AWS console ({console})"));
    }
    Ok(url)
}

fn convert_web_identity(
    raw: RawWebIdentity,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<WebIdentityConfig> {
    let audience = raw.audience.unwrap_or_else(|| "sts.amazonaws.com".into());
    if audience.is_empty() {
        errs.push("web_identity.audience", "must not be empty");
    }
    let lifetime = duration(
        errs,
        "web_identity.token_lifetime",
        raw.token_lifetime.as_deref(),
        "5m",
    );
    if lifetime.is_some_and(|l| l > Duration::from_secs(300) || l < Duration::from_secs(30)) {
        errs.push("web_identity.token_lifetime", "must be between 30s and 5m");
    }
    if raw.keys.is_empty() {
        errs.push(
            "web_identity.keys",
            "at least one signing key is needed (rolegate keys generate writes one)",
        );
    }
    if raw.keys.iter().filter(|k| k.active).count() != 1 && !raw.keys.is_empty() {
        errs.push("web_identity.keys", "exactly one key must be active = true");
    }
    let mut keys = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let key = format!("web_identity.keys[{i}].file");
        let path = base_dir.join(&k.file);
        let Some(pem) = errs.check(
            &key,
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        ) else {
            continue;
        };
        if let Err(e) = crate::sts::SigningKey::from_pem(&pem) {
            errs.push(&key, format!("{}: {e}", path.display()));
            continue;
        }
        keys.push(SigningKeyFile {
            path,
            pem: SecretString::from(pem),
            active: k.active,
        });
    }
    Some(WebIdentityConfig {
        audience,
        token_lifetime: lifetime?,
        keys,
    })
}

const JWS_ASYMMETRIC: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
const SAML_ALGS: [&str; 6] = [
    "rsa-sha256",
    "rsa-sha384",
    "rsa-sha512",
    "ecdsa-sha256",
    "ecdsa-sha384",
    "ecdsa-sha512",
];

fn convert_idp(
    key: &str,
    value: toml::Value,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<IdpConfig> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .map(str::to_owned);
    match kind.as_deref() {
        Some("oidc") => {
            let raw = de::<RawOidcIdp>(value, key, errs)?;
            let id = errs.check(format!("{key}.id"), IdpId::parse(&raw.id));
            let issuer = errs.check(format!("{key}.issuer"), secure_url(&raw.issuer));
            if raw.client_id.is_empty() {
                errs.push(format!("{key}.client_id"), "must not be empty");
            }
            let client_secret = raw
                .client_secret
                .as_ref()
                .and_then(|s| resolve_secret(&format!("{key}.client_secret"), s, base_dir, errs));
            let mut algs = raw.allowed_algorithms.clone();
            if algs.is_empty() {
                algs.push("RS256".into());
            }
            for (i, a) in algs.iter().enumerate() {
                if !JWS_ASYMMETRIC.contains(&a.as_str()) {
                    errs.push(
                        format!("{key}.allowed_algorithms[{i}]"),
                        format!(
                            "{a:?} is not allowed; use asymmetric algorithms only ({})",
                            JWS_ASYMMETRIC.join(", ")
                        ),
                    );
                }
            }
            let leeway = duration(errs, &format!("{key}.leeway"), raw.leeway.as_deref(), "60s");
            if leeway.is_some_and(|l| l > Duration::from_secs(300)) {
                errs.push(format!("{key}.leeway"), "must be at most 5m");
            }
            let id = id?;
            let redirect_path = raw
                .redirect_path
                .unwrap_or_else(|| format!("/oidc/{id}/callback"));
            if !redirect_path.starts_with('/')
                || redirect_path.contains("//")
                || redirect_path.contains('?')
            {
                errs.push(
                    format!("{key}.redirect_path"),
                    "must be an absolute path such as /oidc/corp/callback",
                );
            }
            let scopes = raw.scopes.into_iter().filter(|s| s != "openid").collect();
            Some(IdpConfig {
                display_name: raw.display_name.unwrap_or_else(|| id.to_string()),
                groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
                username_claim: raw.username_claim.unwrap_or_else(|| "email".into()),
                id,
                protocol: IdpProtocol::Oidc(OidcSettings {
                    issuer: issuer?,
                    issuer_id: raw.issuer.clone(),
                    client_id: raw.client_id,
                    client_secret,
                    scopes,
                    redirect_path,
                    use_userinfo: raw.use_userinfo,
                    allowed_algorithms: algs,
                    leeway: leeway?,
                }),
            })
        }
        Some("saml") => {
            let raw = de::<RawSamlIdp>(value, key, errs)?;
            let id = errs.check(format!("{key}.id"), IdpId::parse(&raw.id));
            let metadata = match (&raw.metadata_file, &raw.metadata_url) {
                (Some(f), None) => {
                    let p = base_dir.join(f);
                    if p.is_file() {
                        Some(MetadataSource::File(p))
                    } else {
                        errs.push(
                            format!("{key}.metadata_file"),
                            format!("{} does not exist", p.display()),
                        );
                        None
                    }
                }
                (None, Some(u)) => {
                    let url = errs.check(format!("{key}.metadata_url"), secure_url(u));
                    let refresh = duration(
                        errs,
                        &format!("{key}.metadata_refresh"),
                        raw.metadata_refresh.as_deref(),
                        "1h",
                    );
                    Some(MetadataSource::Url {
                        url: url?,
                        refresh: refresh?,
                    })
                }
                _ => {
                    errs.push(key, "give exactly one of metadata_file or metadata_url");
                    None
                }
            };
            let mut fingerprints = Vec::new();
            for (i, f) in raw.signing_cert_sha256.iter().enumerate() {
                let hex: String = f
                    .chars()
                    .filter(|c| *c != ':')
                    .collect::<String>()
                    .to_ascii_lowercase();
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    fingerprints.push(hex);
                } else {
                    errs.push(
                        format!("{key}.signing_cert_sha256[{i}]"),
                        "must be a SHA-256 fingerprint (64 hex digits, colons allowed)",
                    );
                }
            }
            let mut pems = Vec::new();
            for (i, f) in raw.signing_cert_files.iter().enumerate() {
                let p = base_dir.join(f);
                match std::fs::read_to_string(&p) {
                    Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => pems.push(t),
                    Ok(_) => errs.push(
                        format!("{key}.signing_cert_files[{i}]"),
                        format!("{} holds no PEM certificate", p.display()),
                    ),
                    Err(e) => errs.push(
                        format!("{key}.signing_cert_files[{i}]"),
                        format!("cannot read {}: {e}", p.display()),
                    ),
                }
            }
            if raw.signing_cert_sha256.is_empty() && raw.signing_cert_files.is_empty() {
                errs.push(
                    key,
                    "at least one pinned IdP signing certificate is required (signing_cert_sha256 or signing_cert_files); without one, assertion signatures could not be checked",
                );
            }
            let mut algs = raw.allowed_algorithms.clone();
            if algs.is_empty() {
                algs = SAML_ALGS.iter().map(|s| s.to_string()).collect();
            }
            for (i, a) in algs.iter().enumerate() {
                if !SAML_ALGS.contains(&a.as_str()) {
                    errs.push(
                        format!("{key}.allowed_algorithms[{i}]"),
                        format!("{a:?} is not allowed (allowed: {})", SAML_ALGS.join(", ")),
                    );
                }
            }
            let skew = duration(
                errs,
                &format!("{key}.clock_skew"),
                raw.clock_skew.as_deref(),
                "60s",
            );
            if skew.is_some_and(|s| s > Duration::from_secs(300)) {
                errs.push(format!("{key}.clock_skew"), "must be at most 5m");
            }
            let sp_key = raw
                .sp_key
                .as_ref()
                .and_then(|s| resolve_secret(&format!("{key}.sp_key"), s, base_dir, errs));
            let sp_cert_pem = raw.sp_cert_file.as_ref().and_then(|f| {
                let p = base_dir.join(f);
                errs.check(
                    format!("{key}.sp_cert_file"),
                    std::fs::read_to_string(&p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display())),
                )
            });
            if sp_key.is_some() != sp_cert_pem.is_some() {
                errs.push(key, "sp_key and sp_cert_file go together");
            }
            let id = id?;
            Some(IdpConfig {
                display_name: raw.display_name.unwrap_or_else(|| id.to_string()),
                groups_claim: raw.groups_attribute.unwrap_or_else(|| "groups".into()),
                username_claim: raw.username_attribute.unwrap_or_else(|| "NameID".into()),
                id,
                protocol: IdpProtocol::Saml(SamlSettings {
                    entity_id: raw.entity_id,
                    metadata: metadata?,
                    signing_cert_sha256: fingerprints,
                    signing_cert_pems: pems,
                    allowed_algorithms: algs,
                    clock_skew: skew?,
                    allow_idp_initiated: raw.allow_idp_initiated,
                    sp_key,
                    sp_cert_pem,
                }),
            })
        }
        Some(other) => {
            errs.push(
                format!("{key}.kind"),
                format!("{other:?} is not \"oidc\" or \"saml\""),
            );
            None
        }
        None => {
            errs.push(
                format!("{key}.kind"),
                "missing: set kind = \"oidc\" or kind = \"saml\"",
            );
            None
        }
    }
}

fn load_policy(key: &str, file: &str, base_dir: &Path, errs: &mut Errors) -> Option<SessionPolicy> {
    let p: PathBuf = base_dir.join(file);
    let text = errs.check(
        key,
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display())),
    )?;
    errs.check(
        key,
        SessionPolicy::parse(p.clone(), &text).map_err(|e| format!("{}: {e}", p.display())),
    )
}

fn convert_role(
    aws: Option<&AwsConfig>,
    key: &str,
    raw: RawRole,
    accounts: &[Account],
    declared_accounts: &BTreeSet<String>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<Role> {
    let partition = aws.map(|a| a.partition);
    let id = errs.check(format!("{key}.id"), Identifier::parse(&raw.id));
    let arn = errs.check(format!("{key}.arn"), RoleArn::parse(&raw.arn));
    let account = accounts.iter().find(|a| a.id.as_str() == raw.account);
    if account.is_none() && !declared_accounts.contains(&raw.account) {
        errs.push(
            format!("{key}.account"),
            format!("unknown account {:?}", raw.account),
        );
    }
    if let (Some(arn), Some(acct)) = (&arn, account)
        && arn.account() != &acct.number
    {
        errs.push(
            format!("{key}.arn"),
            format!(
                "the ARN is in account {} but account {:?} is {}",
                arn.account(),
                acct.id.as_str(),
                acct.number
            ),
        );
    }
    if let (Some(arn), Some(p)) = (&arn, partition)
        && arn.partition() != p
    {
        errs.push(
            format!("{key}.arn"),
            format!(
                "the ARN is in partition {} but [aws] partition is {p}",
                arn.partition()
            ),
        );
    }
    let max = duration(
        errs,
        &format!("{key}.max_session_duration"),
        raw.max_session_duration.as_deref(),
        "1h",
    )
    .and_then(|d| {
        errs.check(
            format!("{key}.max_session_duration"),
            SessionDuration::parse(d),
        )
    });
    let policy = match &raw.session_policy_file {
        Some(f) => Some(load_policy(
            &format!("{key}.session_policy_file"),
            f,
            base_dir,
            errs,
        )?),
        None => None,
    };
    let sts_mode = match &raw.sts_mode {
        Some(m) => parse_sts_mode(errs, &format!("{key}.sts_mode"), m),
        None => aws.map(|a| a.sts_mode),
    };
    let console_destination = aws.and_then(|a| {
        errs.check(
            format!("{key}.console_destination"),
            console_destination(&a.console_url, raw.console_destination.as_deref()),
        )
    });
    let arn = arn?;
    Some(Role {
        sts_mode: sts_mode?,
        console_destination: console_destination?,
        display_name: raw
            .display_name
            .unwrap_or_else(|| arn.role_name().to_owned()),
        id: id?,
        arn,
        account: account?.id.clone(),
        max_session_duration: max?,
        session_policy: policy,
    })
}

struct RuleContext<'a> {
    idps: &'a [IdpConfig],
    declared_idps: &'a BTreeSet<String>,
    roles: &'a [Role],
    declared_roles: &'a BTreeSet<String>,
    base_dir: &'a Path,
}

fn convert_rule(
    key: &str,
    raw: RawRule,
    ctx: &RuleContext,
    errs: &mut Errors,
) -> Option<MappingRule> {
    let id = errs.check(format!("{key}.id"), Identifier::parse(&raw.id));
    let idps = raw.idp.as_ref().map(|list| {
        let mut out = Vec::new();
        if list.is_empty() {
            errs.push(
                format!("{key}.idp"),
                "must not be empty (leave it out to apply to every IdP)",
            );
        }
        for (i, name) in list.iter().enumerate() {
            match ctx.idps.iter().find(|c| c.id.as_str() == name) {
                Some(c) => out.push(c.id.clone()),
                None if ctx.declared_idps.contains(name) => {}
                None => errs.push(format!("{key}.idp[{i}]"), format!("unknown IdP {name:?}")),
            }
        }
        out
    });
    let when = match &raw.when {
        None => None,
        Some(v) => match Condition::from_toml(v) {
            Ok(c) => Some(c),
            Err((path, reason)) => {
                let k = if path.is_empty() {
                    format!("{key}.when")
                } else {
                    format!("{key}.when.{path}")
                };
                errs.push(k, reason);
                None
            }
        },
    };
    let effect = match (&raw.grant, &raw.deny) {
        (Some(grant), None) => {
            if grant.is_empty() {
                errs.push(format!("{key}.grant"), "must name at least one role");
            }
            let mut roles = Vec::new();
            for (i, name) in grant.iter().enumerate() {
                match ctx.roles.iter().find(|r| r.id.as_str() == name) {
                    Some(r) => roles.push(r.id.clone()),
                    None if ctx.declared_roles.contains(name) => {}
                    None => errs.push(
                        format!("{key}.grant[{i}]"),
                        format!("unknown role {name:?}"),
                    ),
                }
            }
            let session =
                convert_grant_session(key, raw.session.unwrap_or_default(), &roles, ctx, errs);
            Some(Effect::Grant {
                roles,
                session: session?,
            })
        }
        (None, Some(deny)) => {
            if raw.session.is_some() {
                errs.push(
                    format!("{key}.session"),
                    "deny rules take no session settings",
                );
            }
            if deny.is_empty() {
                errs.push(
                    format!("{key}.deny"),
                    "must name at least one role or pattern",
                );
            }
            let mut patterns = Vec::new();
            for (i, p) in deny.iter().enumerate() {
                let k = format!("{key}.deny[{i}]");
                if p.contains(['*', '?', '[']) {
                    match Glob::new(p) {
                        Ok(g) => {
                            let m = g.compile_matcher();
                            if !ctx.roles.iter().any(|r| m.is_match(r.id.as_str()))
                                && !ctx.declared_roles.iter().any(|r| m.is_match(r))
                            {
                                errs.push(k, format!("pattern {p:?} matches no configured role"));
                            } else {
                                patterns.push(RolePattern::Glob(p.clone(), m));
                            }
                        }
                        Err(e) => errs.push(k, format!("invalid glob {p:?}: {e}")),
                    }
                } else {
                    match ctx.roles.iter().find(|r| r.id.as_str() == p) {
                        Some(r) => patterns.push(RolePattern::Exact(r.id.clone())),
                        None if ctx.declared_roles.contains(p) => {}
                        None => errs.push(k, format!("unknown role {p:?}")),
                    }
                }
            }
            Some(Effect::Deny { roles: patterns })
        }
        (Some(_), Some(_)) => {
            errs.push(
                key,
                "a rule either grants or denies, not both (split it into two rules)",
            );
            None
        }
        (None, None) => {
            errs.push(key, "a rule needs grant = [..] or deny = [..]");
            None
        }
    };
    Some(MappingRule {
        id: id?,
        description: raw.description,
        idps,
        when: match (&raw.when, when) {
            (Some(_), None) => return None,
            (_, w) => w,
        },
        effect: effect?,
    })
}

fn convert_grant_session(
    key: &str,
    raw: RawGrantSession,
    roles: &[Identifier],
    ctx: &RuleContext,
    errs: &mut Errors,
) -> Option<GrantSession> {
    let k = |s: &str| format!("{key}.session.{s}");
    let mut ok = true;
    let max_duration = match raw.max_duration.as_deref() {
        None => None,
        Some(s) => {
            let d = duration(errs, &k("max_duration"), Some(s), "1h")
                .and_then(|d| errs.check(k("max_duration"), SessionDuration::parse(d)));
            if let Some(d) = d {
                for r in ctx.roles.iter().filter(|r| roles.contains(&r.id)) {
                    if d > r.max_session_duration {
                        errs.push(
                            k("max_duration"),
                            format!(
                                "{d} is longer than role {:?} allows ({})",
                                r.id.as_str(),
                                r.max_session_duration
                            ),
                        );
                        ok = false;
                    }
                }
            } else {
                ok = false;
            }
            d
        }
    };
    let session_policy = match &raw.session_policy_file {
        None => None,
        Some(f) => {
            let p = load_policy(&k("session_policy_file"), f, ctx.base_dir, errs);
            ok &= p.is_some();
            p
        }
    };
    let mut tags = Vec::new();
    let mut keys_lower = BTreeMap::new();
    if raw.tags.len() > crate::domain::MAX_SESSION_TAGS {
        errs.push(
            k("tags"),
            format!(
                "{} tags; AWS allows at most {}",
                raw.tags.len(),
                crate::domain::MAX_SESSION_TAGS
            ),
        );
        ok = false;
    }
    for (tag, v) in &raw.tags {
        let tk = format!("{}.{tag}", k("tags"));
        // Validate the key now; values are checked per identity after templating.
        if let Err(e) = crate::domain::SessionTag::parse(tag, "") {
            errs.push(tk, e.to_string());
            ok = false;
            continue;
        }
        if let Some(prev) = keys_lower.insert(tag.to_lowercase(), tag.clone()) {
            errs.push(
                tk,
                format!("differs from tag {prev:?} only in case; AWS treats them as one key"),
            );
            ok = false;
            continue;
        }
        match v.as_str().map(Template::parse) {
            Some(Ok(t)) => tags.push((tag.clone(), t)),
            Some(Err(e)) => {
                errs.push(tk, e);
                ok = false;
            }
            None => {
                errs.push(
                    tk,
                    "must be a string (a template such as \"{claims.department}\")",
                );
                ok = false;
            }
        }
    }
    for (i, t) in raw.transitive_tag_keys.iter().enumerate() {
        if !raw.tags.contains_key(t) {
            errs.push(
                format!("{}[{i}]", k("transitive_tag_keys")),
                format!("{t:?} is not one of this rule's tags"),
            );
            ok = false;
        }
    }
    let source_identity = match raw.source_identity.as_deref().map(Template::parse) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            errs.push(k("source_identity"), e);
            ok = false;
            None
        }
    };
    ok.then_some(GrantSession {
        max_duration,
        session_policy,
        tags,
        transitive_tag_keys: raw.transitive_tag_keys,
        source_identity,
    })
}
