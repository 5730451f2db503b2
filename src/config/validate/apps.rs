//! The `[[app]]` tables: mobile and single-page apps registered for token exchange.

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::*;

pub(super) fn convert_app(
    key: &str,
    value: toml::Value,
    idps: &[IdpConfig],
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<AppConfig> {
    let raw: RawApp = de(value, key, errs)?;
    let id_ok = !raw.id.is_empty()
        && raw.id.len() <= 64
        && raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !id_ok {
        errs.push(
            format!("{key}.id"),
            "must be 1-64 letters, digits, '-', '_' or '.'",
        );
    }
    let idp = match idps.iter().find(|i| i.id.as_str() == raw.idp) {
        Some(i) if matches!(i.protocol, IdpProtocol::Oidc(_)) => Some(i.id.clone()),
        Some(_) => {
            errs.push(
                format!("{key}.idp"),
                format!(
                    "IdP {:?} is not an OIDC IdP: apps present OIDC tokens",
                    raw.idp
                ),
            );
            None
        }
        None => {
            errs.push(format!("{key}.idp"), format!("unknown IdP {:?}", raw.idp));
            None
        }
    };
    if raw.audience.is_empty() {
        errs.push(
            format!("{key}.audience"),
            "must be the app's client id at the IdP",
        );
    }
    let client_secret = raw
        .client_secret
        .as_ref()
        .and_then(|s| resolve_secret(&format!("{key}.client_secret"), s, base_dir, errs));
    let types = raw
        .subject_token_types
        .clone()
        .unwrap_or_else(|| vec!["id_token".into()]);
    let mut accept_id_tokens = false;
    let mut accept_access_tokens = false;
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "id_token" => accept_id_tokens = true,
            "access_token" | "jwt" => accept_access_tokens = true,
            other => errs.push(
                format!("{key}.subject_token_types[{i}]"),
                format!("{other:?} is not id_token, access_token or jwt"),
            ),
        }
    }
    let dpop_required = match raw.dpop.as_deref() {
        None | Some("optional") => false,
        Some("required") => true,
        Some(other) => {
            errs.push(
                format!("{key}.dpop"),
                format!("{other:?} is not \"required\" or \"optional\""),
            );
            false
        }
    };
    let mut allowed_origins = Vec::new();
    for (i, o) in raw.allowed_origins.iter().enumerate() {
        match Url::parse(o) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.host().is_some()
                    && u.origin().ascii_serialization() == o.trim_end_matches('/') =>
            {
                allowed_origins.push(u.origin().ascii_serialization());
            }
            _ => errs.push(
                format!("{key}.allowed_origins[{i}]"),
                format!("{o:?} must be an origin: scheme://host[:port], no path"),
            ),
        }
    }
    let lifetime = duration(
        errs,
        &format!("{key}.access_token_lifetime"),
        raw.access_token_lifetime.as_deref(),
        "10m",
    );
    if lifetime.is_some_and(|d| d < Duration::from_secs(5) || d > Duration::from_secs(3600)) {
        errs.push(
            format!("{key}.access_token_lifetime"),
            "must be between 5s and 1h",
        );
    }
    let max_age = duration(
        errs,
        &format!("{key}.max_token_age"),
        raw.max_token_age.as_deref(),
        "1h",
    );
    if max_age.is_some_and(|d| d < Duration::from_secs(60) || d > Duration::from_secs(24 * 3600)) {
        errs.push(format!("{key}.max_token_age"), "must be between 1m and 24h");
    }
    let positive = |errs: &mut Errors, name: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if v == 0 {
            errs.push(format!("{key}.{name}"), "must be at least 1");
        }
        v
    };
    let max_exchanges = positive(
        errs,
        "max_exchanges_per_token",
        raw.max_exchanges_per_token,
        1,
    );
    let per_app = positive(
        errs,
        "rate_limit_per_minute",
        raw.rate_limit_per_minute,
        600,
    );
    let per_subject = positive(
        errs,
        "subject_rate_limit_per_minute",
        raw.subject_rate_limit_per_minute,
        30,
    );
    if !id_ok {
        return None;
    }
    Some(AppConfig {
        id: raw.id,
        idp: idp?,
        audience: raw.audience,
        client_secret,
        accept_id_tokens,
        accept_access_tokens,
        dpop_required,
        allowed_origins,
        max_exchanges_per_token: max_exchanges,
        rate_limit_per_minute: per_app,
        subject_rate_limit_per_minute: per_subject,
        access_token_lifetime: lifetime?,
        max_token_age: max_age?,
    })
}
