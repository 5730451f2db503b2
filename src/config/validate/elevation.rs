//! `[rule.elevation]` (just-in-time access) and `[[webhook]]`.

use std::time::Duration;

use super::*;
use crate::mapping::elevation::{AutoApprove, ElevationPolicy, Window};

/// The longest elevation any rule may allow.
const MAX_ELEVATION: Duration = Duration::from_secs(12 * 3600);

fn condition(key: &str, v: &toml::Value, errs: &mut Errors) -> Option<Condition> {
    match Condition::from_toml(v) {
        Ok(c) => Some(c),
        Err((path, reason)) => {
            let k = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{key}.{path}")
            };
            errs.push(k, reason);
            None
        }
    }
}

fn minute_of_day(key: &str, s: &str, errs: &mut Errors) -> Option<u16> {
    let parsed = s.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    });
    if parsed.is_none() {
        errs.push(key, format!("{s:?} is not a time such as \"09:00\" (UTC)"));
    }
    parsed
}

fn window(key: &str, raw: RawWindow, errs: &mut Errors) -> Option<Window> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut days = Vec::new();
    for (i, d) in raw.days.iter().enumerate() {
        match DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)) {
            Some(p) => days.push(p as u8),
            None => errs.push(
                format!("{key}.days[{i}]"),
                format!("{d:?} is not a day (mon..sun)"),
            ),
        }
    }
    if raw.days.is_empty() {
        errs.push(format!("{key}.days"), "must name at least one day");
    }
    let from = minute_of_day(&format!("{key}.from"), &raw.from, errs);
    let to = minute_of_day(&format!("{key}.to"), &raw.to, errs);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        errs.push(
            format!("{key}.to"),
            "must be after from (the window is within one day, UTC)",
        );
    }
    Some(Window {
        days,
        from: from?,
        to: to?,
    })
}

pub(super) fn convert_elevation(
    key: &str,
    raw: Option<RawElevation>,
    roles: &[Identifier],
    ctx: &RuleContext,
    errs: &mut Errors,
) -> Option<ElevationPolicy> {
    let k = |s: &str| format!("{key}.elevation.{s}");
    let Some(raw) = raw else {
        errs.push(
            format!("{key}.elevation"),
            "eligible roles need [rule.elevation] with at least approvers = { .. } (who approves)",
        );
        return None;
    };
    let approvers = match &raw.approvers {
        Some(v) => condition(&k("approvers"), v, errs),
        None => {
            errs.push(
                k("approvers"),
                "missing: who approves, e.g. approvers = { group = \"sre-leads\" }",
            );
            None
        }
    };
    let approvals = match raw.approvals.unwrap_or(1) {
        n @ (1 | 2) => n as u8,
        _ => {
            errs.push(k("approvals"), "must be 1 or 2");
            1
        }
    };
    let max_elevation = duration(
        errs,
        &k("max_elevation"),
        raw.max_elevation.as_deref(),
        "1h",
    );
    if max_elevation.is_some_and(|d| d < Duration::from_secs(60) || d > MAX_ELEVATION) {
        errs.push(k("max_elevation"), "must be between 1m and 12h");
    }
    let reason_required = match raw.reason.as_deref() {
        None | Some("required") => true,
        Some("optional") => false,
        Some(other) => {
            errs.push(
                k("reason"),
                format!("{other:?} is not \"required\" or \"optional\""),
            );
            true
        }
    };
    let ticket_pattern = raw.ticket_pattern.as_deref().and_then(|p| {
        errs.check(
            k("ticket_pattern"),
            regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("invalid regex {p:?}: {e}")),
        )
    });
    let auto_condition = raw
        .auto_approve
        .as_ref()
        .and_then(|v| condition(&k("auto_approve"), v, errs));
    let auto_window = raw
        .auto_approve_window
        .and_then(|w| window(&k("auto_approve_window"), w, errs));
    let auto_approve = (auto_condition.is_some() || auto_window.is_some()).then(|| AutoApprove {
        condition: auto_condition,
        window: auto_window,
    });
    // A role's own grant limit still applies when elevated: an elevation longer than the
    // role's sessions gives several sessions, never a longer one.
    let _ = (roles, ctx);
    Some(ElevationPolicy {
        approvers: approvers?,
        approvals,
        max_elevation: max_elevation?,
        reason_required,
        ticket_pattern,
        auto_approve,
    })
}

pub(super) fn convert_webhook(
    key: &str,
    value: toml::Value,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<Webhook> {
    let raw = de::<RawWebhook>(value, key, errs)?;
    let url = errs.check(format!("{key}.url"), secure_url(&raw.url));
    let format = match raw.format.as_deref() {
        None | Some("json") => WebhookFormat::Json,
        Some("slack") => WebhookFormat::Slack,
        Some(other) => {
            errs.push(
                format!("{key}.format"),
                format!("{other:?} is not \"json\" or \"slack\""),
            );
            WebhookFormat::Json
        }
    };
    let secret = raw
        .secret
        .as_ref()
        .and_then(|s| resolve_secret(&format!("{key}.secret"), s, base_dir, errs));
    if format == WebhookFormat::Json && raw.secret.is_none() {
        errs.push(
            format!("{key}.secret"),
            "the JSON form is signed: give a secret ({ env } or { file }, at least 32 characters)",
        );
    }
    if let Some(s) = &secret {
        use secrecy::ExposeSecret;
        if s.expose_secret().len() < 32 {
            errs.push(format!("{key}.secret"), "must be at least 32 characters");
        }
    }
    const EVENTS: [&str; 5] = ["request", "decision", "start", "end", "break_glass"];
    for (i, e) in raw.events.iter().enumerate() {
        if !EVENTS.contains(&e.as_str()) {
            errs.push(
                format!("{key}.events[{i}]"),
                format!("{e:?} is not one of {}", EVENTS.join(", ")),
            );
        }
    }
    let timeout = duration(
        errs,
        &format!("{key}.timeout"),
        raw.timeout.as_deref(),
        "5s",
    );
    if timeout.is_some_and(|t| t < Duration::from_millis(100) || t > Duration::from_secs(60)) {
        errs.push(format!("{key}.timeout"), "must be between 100ms and 60s");
    }
    Some(Webhook {
        url: url?,
        format,
        secret,
        events: raw.events,
        timeout: timeout?,
    })
}
