//! Converts the raw TOML into a [`Config`], collecting every error.
//!
//! This file reads the TOML (with line numbers), applies environment overrides and
//! holds the shared helpers; each group of sections has its own file: `server`
//! (`[server]`, `[session]`, `[aws]`, `[web_identity]`), `idp` (`[[idp]]`) and `rules`
//! (`[[role]]`, `[[rule]]`).

mod apps;
mod aws;
mod elevation;
mod idp;
mod rules;
mod server;

use apps::*;
use aws::*;
use idp::*;
use rules::*;
use server::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors, Errors};
use super::raw::*;
use super::*;
use crate::domain::{
    AccountId, Identifier, IdpId, Partition, RoleArn, SessionDuration, SessionPolicy,
};
use crate::mapping::{
    Condition, Effect, GrantSession, MappingRule, MappingRules, RolePattern, RoleTarget, Template,
};

const SECTIONS: [&str; 7] = [
    "server",
    "session",
    "aws",
    "audit",
    "web_identity",
    "cli",
    "admin",
];
const ARRAYS: [&str; 6] = ["idp", "account", "role", "rule", "app", "webhook"];

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
                "unknown key (top-level keys are [server], [session], [aws], [audit], [web_identity], [cli], [admin], [[idp]], [[account]], [[role]], [[rule]], [[app]])",
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
    let raw_cli: RawCli = section(&table, "cli", &mut errs).unwrap_or_default();
    let cli = convert_cli(raw_cli, &mut errs);
    let raw_admin: RawAdmin = section(&table, "admin", &mut errs).unwrap_or_default();
    let admin = convert_admin(raw_admin, &mut errs);
    let server = convert_server(raw_server, &mut errs);
    let session = convert_session(raw_session, &base_dir, &mut errs);
    let aws = convert_aws(raw_aws, &mut errs);
    // An issuance in flight when the drain deadline hits has already called STS: the
    // drain must outlast the STS deadline so its outcome is always audited.
    if let (Some(server), Some(aws)) = (&server, &aws)
        && server.shutdown_timeout < aws.sts_timeout
    {
        errs.push(
            "server.shutdown_timeout",
            format!(
                "must be at least aws.sts_timeout ({}): an issuance in flight at shutdown must finish and be audited",
                humantime::format_duration(aws.sts_timeout)
            ),
        );
    }

    // Ids declared by entries, even entries that failed to parse, so that one broken
    // entry does not cascade into "unknown id" errors everywhere it is referenced.
    let idp_items = array(&table, "idp", &mut errs);
    let account_items = array(&table, "account", &mut errs);
    let role_items = array(&table, "role", &mut errs);
    let rule_items = array(&table, "rule", &mut errs);
    let app_items = array(&table, "app", &mut errs);
    let webhook_items = array(&table, "webhook", &mut errs);
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
        let named = raw.display_name.is_some();
        let display_name = raw.display_name.unwrap_or_else(|| id.to_string());
        accounts.push(Account {
            id,
            number,
            display_name,
            named,
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
    if let Some(session) = &session
        && session.encryption_key.is_none()
    {
        for (i, idp) in idps.iter().enumerate() {
            if matches!(&idp.protocol, IdpProtocol::Oidc(o) if o.revalidate) {
                errs.push(
                    format!("idp[{i}].revalidate"),
                    "re-validation keeps the IdP's refresh tokens, sealed with [session] encryption_key: set it ({ env } or { file }, at least 32 characters)",
                );
            }
        }
    }
    // The SCIM token is how a request finds its IdP: two IdPs must not share one.
    for (i, a) in idps.iter().enumerate() {
        let Some(sa) = &a.scim else { continue };
        if idps[..i].iter().any(|b| {
            b.scim
                .as_ref()
                .is_some_and(|sb| sb.token.expose_secret() == sa.token.expose_secret())
        }) {
            errs.push(
                format!("idp[{i}].scim.token"),
                "is the same as another IdP's SCIM token: give each IdP its own",
            );
        }
    }
    let mut apps: Vec<AppConfig> = Vec::new();
    for (key, value) in app_items {
        if let Some(app) = convert_app(&key, value, &idps, &base_dir, &mut errs) {
            if apps.iter().any(|a| a.id == app.id)
                || cli.as_ref().is_some_and(|c| c.is_client(&app.id))
            {
                errs.push(
                    format!("{key}.id"),
                    format!(
                        "{:?} is already a client id (an app or a CLI client)",
                        app.id
                    ),
                );
            } else {
                apps.push(app);
            }
        }
    }
    let webhooks: Vec<Webhook> = webhook_items
        .into_iter()
        .filter_map(|(key, value)| elevation::convert_webhook(&key, value, &base_dir, &mut errs))
        .collect();
    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    let (Some(server), Some(session), Some(aws), Some(cli)) = (server, session, aws, cli) else {
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
        cli,
        idps,
        accounts,
        roles,
        rules: MappingRules::new(rules, targets),
        apps,
        admin,
        webhooks,
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
                reason: "overrides are only for keys of [server], [session], [aws], [audit], [web_identity] and [cli] (ROLEGATE_SECTION__KEY)"
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
        // A secret from the environment stays a secret: the override becomes a reference
        // to its own variable (`{ env = "ROLEGATE_SESSION__REDIS_URL" }`), so it is
        // resolved, checked and redacted like any `{ env }` secret.
        let new = if (section.as_str(), key.as_str()) == ("session", "redis_url") {
            let mut r = toml::Table::new();
            r.insert("env".into(), toml::Value::String(var.clone()));
            toml::Value::Table(r)
        } else {
            new
        };
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
fn de<T: DeserializeOwned>(mut value: toml::Value, key: &str, errs: &mut Errors) -> Option<T> {
    // serde stops at the first problem in a table. To report a typo and a type error in
    // the same table together, each failing key is noted, removed, and the table read
    // again, until it reads or a problem cannot be removed (a missing key).
    let mut failed = false;
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return (!failed).then_some(v),
            Err(e) => e,
        };
        let mut segments: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let reason = e.into_inner().message().to_owned();
        // For an unknown field the path points at its parent; name the field itself.
        if let Some(f) = reason
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
            .map(|(f, _)| f.to_owned())
            && segments.last() != Some(&f)
        {
            segments.push(f);
        }
        let full = segments.iter().fold(key.to_owned(), |acc, s| {
            if s.parse::<usize>().is_ok() {
                format!("{acc}[{s}]")
            } else {
                format!("{acc}.{s}")
            }
        });
        // A key removed for an earlier problem is then "missing": already reported.
        let missing = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.split_once('`'))
            .map(|(f, _)| f.to_owned());
        if let Some(m) = &missing
            && removed
                .iter()
                .any(|r| r == &format!("{full}.{m}") || r == &full)
        {
            return None;
        }
        errs.push(full.clone(), plain_reason(&reason));
        failed = true;
        if missing.is_some() || !remove_path(&mut value, &segments) {
            return None;
        }
        removed.push(full);
    }
    None
}

/// serde's message without Rust type names (`expected struct RawOidcIdp` reads
/// `expected a table`) and, for an unknown key, saying so first.
fn plain_reason(reason: &str) -> String {
    let mut out = reason.to_owned();
    for marker in ["struct Raw", "enum Raw"] {
        while let Some(i) = out.find(marker) {
            let rest = &out[i + marker.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            out = format!("{}a table{}", &out[..i], &rest[end..]);
        }
    }
    if out.starts_with("unknown field") {
        out = format!("unknown key ({out})");
    }
    out
}

/// Removes the value at `path` (table keys and array indexes); `false` if it is not there.
fn remove_path(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match cur {
            toml::Value::Table(t) => match t.get_mut(seg) {
                Some(v) => v,
                None => return false,
            },
            toml::Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        toml::Value::Table(t) => t.remove(last).is_some(),
        // Removing from an array would shift the indexes of later errors: replace the
        // element by nothing usable instead is not possible, so stop here.
        _ => false,
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

/// `[admin]`: the condition is compiled with the rules' own compiler (same language, same
/// errors with key paths).
fn convert_admin(raw: RawAdmin, errs: &mut Errors) -> crate::config::AdminConfig {
    let when = raw
        .when
        .as_ref()
        .and_then(|v| match crate::mapping::Condition::from_toml(v) {
            Ok(c) => Some(c),
            Err((path, reason)) => {
                let key = if path.is_empty() {
                    "admin.when".to_owned()
                } else {
                    format!("admin.when.{path}")
                };
                errs.push(key, reason);
                None
            }
        });
    for (i, amr) in raw.require_amr.iter().enumerate() {
        if amr.is_empty() || amr.len() > 64 {
            errs.push(format!("admin.require_amr[{i}]"), "must be 1-64 characters");
        }
    }
    let history = raw.history_per_person.unwrap_or(100);
    if !(1..=10_000).contains(&history) {
        errs.push("admin.history_per_person", "must be between 1 and 10000");
    }
    crate::config::AdminConfig {
        when,
        require_amr: raw.require_amr,
        history_per_person: history as usize,
    }
}
