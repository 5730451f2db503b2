//! The `[[role]]` and `[[rule]]` tables: roles with their limits, and the mapping rules
//! compiled into `MappingRules`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use globset::Glob;

use super::*;

pub(super) fn load_policy(
    key: &str,
    file: &str,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<SessionPolicy> {
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

pub(super) fn convert_role(
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
            console_destination(&a.console, raw.console_destination.as_deref()),
        )
    });
    let break_glass = if raw.break_glass {
        let max = duration(
            errs,
            &format!("{key}.break_glass_max"),
            raw.break_glass_max.as_deref(),
            "1h",
        );
        if max.is_some_and(|d| d < Duration::from_secs(60) || d > Duration::from_secs(4 * 3600)) {
            errs.push(
                format!("{key}.break_glass_max"),
                "must be between 1m and 4h",
            );
        }
        Some(max?)
    } else {
        if raw.break_glass_max.is_some() {
            errs.push(
                format!("{key}.break_glass_max"),
                "set break_glass = true too (or leave this out)",
            );
        }
        None
    };
    let arn = arn?;
    Some(Role {
        break_glass,
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

pub(super) struct RuleContext<'a> {
    pub(super) idps: &'a [IdpConfig],
    pub(super) declared_idps: &'a BTreeSet<String>,
    pub(super) roles: &'a [Role],
    pub(super) declared_roles: &'a BTreeSet<String>,
    pub(super) base_dir: &'a Path,
}

pub(super) fn convert_rule(
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
    if raw.elevation.is_some() && raw.eligible.is_none() {
        errs.push(
            format!("{key}.elevation"),
            "only rules with eligible = [..] take elevation settings",
        );
    }
    if let Some(eligible) = &raw.eligible {
        if raw.grant.is_some() || raw.deny.is_some() {
            errs.push(
                key,
                "a rule grants, denies or makes roles eligible: one of them (split it)",
            );
            return None;
        }
        if raw.session.is_some() {
            errs.push(
                format!("{key}.session"),
                "eligible rules take [rule.elevation], not session settings",
            );
        }
        let mut roles = Vec::new();
        if eligible.is_empty() {
            errs.push(format!("{key}.eligible"), "must name at least one role");
        }
        for (i, name) in eligible.iter().enumerate() {
            match ctx.roles.iter().find(|r| r.id.as_str() == name) {
                Some(r) => roles.push(r.id.clone()),
                None if ctx.declared_roles.contains(name) => {}
                None => errs.push(
                    format!("{key}.eligible[{i}]"),
                    format!("unknown role {name:?}"),
                ),
            }
        }
        let policy = super::elevation::convert_elevation(key, raw.elevation, &roles, ctx, errs);
        return Some(MappingRule {
            id: id?,
            description: raw.description,
            idps,
            when: match (&raw.when, when) {
                (Some(_), None) => return None,
                (_, w) => w,
            },
            effect: Effect::Eligible {
                roles,
                policy: policy?,
            },
        });
    }
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
            errs.push(
                key,
                "a rule needs grant = [..], deny = [..] or eligible = [..]",
            );
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

pub(super) fn convert_grant_session(
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
