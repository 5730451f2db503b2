//! Renders an [`Evaluation`] for people (`rolegate explain`) and machines
//! (`--format json`). Rendering only: every verdict was decided by `evaluate`.

use std::fmt::Write as _;

use serde_json::json;

use super::{Evaluation, Grant, IdentityClaims, RefusalReason};

fn grant_json(g: &Grant) -> serde_json::Value {
    json!({
        "role": g.role.as_str(),
        "arn": g.arn.as_str(),
        "rules": g.rules.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "max_duration_seconds": g.max_duration.as_secs(),
        "max_duration_capped_by": g.capped_by.as_ref().map(|r| r.as_str()),
        "session_name": g.session_name.as_str(),
        "source_identity": g.source_identity.as_ref().map(|s| s.as_str()),
        "session_policy_file": g.session_policy.as_ref().map(|p| p.file().display().to_string()),
        "tags": g.tags.tags().iter().map(|t| (t.key().to_owned(), json!(t.value()))).collect::<serde_json::Map<_, _>>(),
        "transitive_tag_keys": g.tags.transitive_keys(),
    })
}

pub fn render_json(id: &IdentityClaims, ev: &Evaluation) -> serde_json::Value {
    json!({
        "identity": {
            "idp": id.idp.as_str(),
            "subject": id.subject,
            "username": id.username,
            "email": id.email,
            "groups": id.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        },
        "rules": ev.rules.iter().map(|r| json!({
            "index": r.index,
            "id": r.rule.as_str(),
            "effect": if r.is_deny { "deny" } else { "grant" },
            "roles": r.roles,
            "matched": r.matched,
            "why": r.why,
        })).collect::<Vec<_>>(),
        "grants": ev.grants.iter().map(grant_json).collect::<Vec<_>>(),
        "eligible": ev.eligible.iter().map(|e| json!({
            "role": e.role.as_str(),
            "rules": e.rules.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "approvals": e.policy.approvals,
            "approvers": e.approvers.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "max_elevation_seconds": e.policy.max_elevation.as_secs(),
            "reason_required": e.policy.reason_required,
            "ticket_pattern": e.policy.ticket_pattern.as_ref().map(|p| p.as_str()),
            "auto_approve": e.policy.auto_approve.is_some(),
        })).collect::<Vec<_>>(),
        "refused": ev.refused.iter().map(|r| {
            let (kind, detail) = match &r.reason {
                RefusalReason::Denied(rules) => ("denied", json!(rules.iter().map(|x| x.as_str()).collect::<Vec<_>>())),
                RefusalReason::Invalid(why) => ("invalid", json!(why)),
            };
            json!({
                "role": r.role.as_str(),
                "granted_by": r.granted_by.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "reason": kind,
                "detail": detail,
            })
        }).collect::<Vec<_>>(),
    })
}

pub fn render_text(id: &IdentityClaims, ev: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Identity: idp={} subject={} username={}",
        id.idp, id.subject, id.username
    );
    let groups: Vec<&str> = id.groups.iter().map(|g| g.as_str()).collect();
    let _ = writeln!(
        out,
        "Groups:   {}",
        if groups.is_empty() {
            "(none)".to_owned()
        } else {
            groups.join(", ")
        }
    );
    let _ = writeln!(out, "\nRules (in config order):");
    if ev.rules.is_empty() {
        let _ = writeln!(out, "  (no rules configured)");
    }
    for r in &ev.rules {
        let effect = if r.is_deny { "deny" } else { "grant" };
        let _ = writeln!(
            out,
            "  rule[{}] {} ({} {}): {}",
            r.index,
            r.rule,
            effect,
            r.roles.join(", "),
            if r.matched { "MATCHED" } else { "not matched" }
        );
        let _ = writeln!(out, "      why: {}", r.why);
    }
    let _ = writeln!(out, "\nResult:");
    if ev.grants.is_empty() && ev.refused.is_empty() {
        let _ = writeln!(out, "  no roles granted");
    }
    for g in &ev.grants {
        let rules: Vec<&str> = g.rules.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            out,
            "  GRANTED {} ({}) by {}",
            g.role,
            g.arn,
            rules.join(", ")
        );
        match &g.capped_by {
            Some(rule) => {
                let _ = writeln!(
                    out,
                    "      max duration:    {} (capped at {} by rule {rule}; the most restrictive cap wins)",
                    g.max_duration, g.max_duration
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "      max duration:    {} (the role's maximum)",
                    g.max_duration
                );
            }
        }
        let _ = writeln!(out, "      session name:    {}", g.session_name);
        if let Some(s) = &g.source_identity {
            let _ = writeln!(out, "      source identity: {s}");
        }
        if let Some(p) = &g.session_policy {
            let _ = writeln!(out, "      session policy:  {}", p.file().display());
        }
        if !g.tags.is_empty() {
            let tags: Vec<String> = g
                .tags
                .tags()
                .iter()
                .map(|t| {
                    let transitive = if g.tags.transitive_keys().iter().any(|k| k == t.key()) {
                        " (transitive)"
                    } else {
                        ""
                    };
                    format!("{}={}{}", t.key(), t.value(), transitive)
                })
                .collect();
            let _ = writeln!(out, "      session tags:    {}", tags.join(", "));
        }
    }
    for e in &ev.eligible {
        let rules: Vec<&str> = e.rules.iter().map(|r| r.as_str()).collect();
        let approvers: Vec<String> = e.approvers.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            out,
            "  ELIGIBLE {} by {} (ask for it: rolegate request --role {})",
            e.role,
            rules.join(", "),
            e.role
        );
        let _ = writeln!(
            out,
            "      approved by:     {} {} of {}{}",
            e.policy.approvals,
            if e.policy.approvals == 1 {
                "approver"
            } else {
                "different approvers"
            },
            approvers.join(" or "),
            if e.policy.auto_approve.is_some() {
                " (or automatically, see the rule)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "      at most:         {}{}{}",
            humantime::format_duration(e.policy.max_elevation),
            if e.policy.reason_required {
                "; a reason is required"
            } else {
                ""
            },
            e.policy
                .ticket_pattern
                .as_ref()
                .map(|p| format!("; a ticket matching {}", p.as_str()))
                .unwrap_or_default()
        );
    }
    for r in &ev.refused {
        let by: Vec<&str> = r.granted_by.iter().map(|x| x.as_str()).collect();
        match &r.reason {
            RefusalReason::Denied(rules) => {
                let rules: Vec<&str> = rules.iter().map(|x| x.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  DENIED  {} (granted by {}, denied by {}; deny wins)",
                    r.role,
                    by.join(", "),
                    rules.join(", ")
                );
            }
            RefusalReason::Invalid(why) => {
                let _ = writeln!(
                    out,
                    "  FAILED  {} (granted by {}): {}",
                    r.role,
                    by.join(", "),
                    why
                );
            }
        }
    }
    out
}
