//! The `[[idp]]` tables: OIDC and SAML identity providers.

use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

pub(super) fn convert_idp(
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
            let max_token_age = duration(
                errs,
                &format!("{key}.max_token_age"),
                raw.max_token_age.as_deref(),
                "10m",
            );
            if max_token_age
                .is_some_and(|a| a < Duration::from_secs(60) || a > Duration::from_secs(24 * 3600))
            {
                errs.push(format!("{key}.max_token_age"), "must be between 1m and 24h");
            }
            let revalidate = match raw.revalidate.as_deref() {
                None | Some("off") => false,
                Some("on_refresh") => true,
                Some(other) => {
                    errs.push(
                        format!("{key}.revalidate"),
                        format!("{other:?} is not \"on_refresh\" or \"off\""),
                    );
                    false
                }
            };
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
            let (groups_from, scim) =
                convert_provisioning(key, raw.groups_from.as_deref(), raw.scim, base_dir, errs);
            let mut scopes: Vec<String> =
                raw.scopes.into_iter().filter(|s| s != "openid").collect();
            // Re-validation needs the IdP's refresh token: ask for one.
            if revalidate && !scopes.iter().any(|s| s == "offline_access") {
                scopes.push("offline_access".into());
            }
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
                    max_token_age: max_token_age?,
                    revalidate,
                }),
                groups_from,
                scim,
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
            let (groups_from, scim) =
                convert_provisioning(key, raw.groups_from.as_deref(), raw.scim, base_dir, errs);
            let id = id?;
            Some(IdpConfig {
                groups_from,
                scim,
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

/// `groups_from` and `[idp.scim]`, which go together.
fn convert_provisioning(
    key: &str,
    groups_from: Option<&str>,
    raw: Option<RawScim>,
    base_dir: &Path,
    errs: &mut Errors,
) -> (GroupsFrom, Option<ScimSettings>) {
    let from = match groups_from {
        None | Some("token") => GroupsFrom::Token,
        Some("directory") => GroupsFrom::Directory,
        Some("both") => GroupsFrom::Both,
        Some(other) => {
            errs.push(
                format!("{key}.groups_from"),
                format!("{other:?} is not \"token\", \"directory\" or \"both\""),
            );
            GroupsFrom::Token
        }
    };
    let Some(raw) = raw else {
        if from != GroupsFrom::Token {
            errs.push(
                format!("{key}.groups_from"),
                "groups from the directory need SCIM provisioning: add an [idp.scim] table",
            );
        }
        return (from, None);
    };
    let token = resolve_secret(&format!("{key}.scim.token"), &raw.token, base_dir, errs);
    if let Some(t) = &token
        && t.expose_secret().len() < 32
    {
        // The length only: the token itself is never echoed.
        errs.push(
            format!("{key}.scim.token"),
            "must be at least 32 characters (generate one: openssl rand -hex 32)",
        );
    }
    let user_key = raw.user_key.unwrap_or_else(|| "userName".into());
    if crate::scim::filter::AttrPath::parse(&user_key).is_err() {
        errs.push(
            format!("{key}.scim.user_key"),
            format!("{user_key:?} is not a SCIM attribute (\"userName\", \"externalId\", \"emails\", or a path such as \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber\")"),
        );
    }
    let identity_key = match raw.identity_key.as_deref() {
        None | Some("username") => IdentityKey::Username,
        Some("subject") => IdentityKey::Subject,
        Some("email") => IdentityKey::Email,
        Some(other) => {
            errs.push(
                format!("{key}.scim.identity_key"),
                format!("{other:?} is not \"subject\", \"username\" or \"email\""),
            );
            IdentityKey::Username
        }
    };
    let requests_per_minute = raw.requests_per_minute.unwrap_or(1200);
    if !(1..=100_000).contains(&requests_per_minute) {
        errs.push(
            format!("{key}.scim.requests_per_minute"),
            "must be between 1 and 100000",
        );
    }
    let scim = token.map(|token| ScimSettings {
        token,
        user_key,
        identity_key,
        require_provisioned: raw.require_provisioned,
        requests_per_minute,
    });
    (from, scim)
}
