//! The `[server]`, `[session]`, `[aws]` and `[web_identity]` sections, and secrets.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::*;

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a URL that must be https, or http on a loopback host (local development and tests).
pub(super) fn secure_url(s: &str) -> Result<Url, String> {
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

pub(super) fn convert_server(raw: RawServer, errs: &mut Errors) -> Option<ServerConfig> {
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
    let pre_stop_delay = duration(
        errs,
        "server.pre_stop_delay",
        raw.pre_stop_delay.as_deref(),
        "0s",
    );
    if pre_stop_delay.is_some_and(|d| d > Duration::from_secs(120)) {
        errs.push("server.pre_stop_delay", "must be at most 2m");
    }
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
        pre_stop_delay: pre_stop_delay?,
        body_limit: body_limit as usize,
        workers,
    })
}

pub(super) fn resolve_secret(
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

pub(super) fn convert_session(
    raw: RawSession,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<SessionConfig> {
    let store_kind = raw.store.clone().unwrap_or_else(|| {
        if raw.redis_url.is_some() {
            "redis".into()
        } else {
            "memory".into()
        }
    });
    let store = match store_kind.as_str() {
        "memory" => Some(StoreConfig::Memory),
        "redis-sentinel" => match &raw.redis_url {
            None => {
                errs.push(
                    "session.redis_url",
                    "store = \"redis-sentinel\" needs redis_url = \"redis+sentinel://host:port[,host:port…]/MASTER-NAME\"",
                );
                None
            }
            Some(RawSecret::Inline(s)) if s.contains('@') => {
                errs.push(
                    "session.redis_url",
                    "holds credentials, so it must be given as { env = \"VAR\" } or { file = \"path\" }, not inline",
                );
                None
            }
            Some(raw_url) => {
                let url = match raw_url {
                    RawSecret::Inline(s) => Some(SecretString::from(s.clone())),
                    RawSecret::Ref(r) => resolve_secret("session.redis_url", r, base_dir, errs),
                };
                url.and_then(|u| {
                    use secrecy::ExposeSecret;
                    let target = crate::config::SentinelTarget::parse(u.expose_secret());
                    if target.is_none() {
                        // Never echo it: it may hold a password.
                        errs.push(
                            "session.redis_url",
                            "must be redis+sentinel://[user:password@]host:port[,host:port…]/MASTER-NAME",
                        );
                    }
                    target.map(StoreConfig::RedisSentinel)
                })
            }
        },
        "redis" | "redis-cluster" => {
            let url = match &raw.redis_url {
                None => {
                    errs.push(
                        "session.redis_url",
                        format!("store = {store_kind:?} needs redis_url"),
                    );
                    None
                }
                // A URL without a password is not a secret and may be written inline; one
                // with a password must come from { env } or { file } like every secret.
                Some(RawSecret::Inline(s))
                    if Url::parse(s).is_ok_and(|u| u.password().is_some()) =>
                {
                    errs.push(
                        "session.redis_url",
                        "holds a password, so it must be given as { env = \"VAR\" } or { file = \"path\" }, not inline",
                    );
                    None
                }
                Some(RawSecret::Inline(s)) => Some(SecretString::from(s.clone())),
                Some(RawSecret::Ref(r)) => resolve_secret("session.redis_url", r, base_dir, errs),
            };
            let tls_ca = raw.redis_ca_file.as_ref().and_then(|f| {
                let path = base_dir.join(f);
                match std::fs::read(&path) {
                    Ok(pem)
                        if String::from_utf8_lossy(&pem)
                            .contains("-----BEGIN CERTIFICATE-----") =>
                    {
                        Some(pem)
                    }
                    Ok(_) => {
                        errs.push(
                            "session.redis_ca_file",
                            format!("{} holds no PEM certificate", path.display()),
                        );
                        None
                    }
                    Err(e) => {
                        errs.push(
                            "session.redis_ca_file",
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            });
            url.and_then(|u| {
                use secrecy::ExposeSecret;
                match Url::parse(u.expose_secret()) {
                    Ok(p) if tls_ca.is_some() && p.scheme() != "rediss" => {
                        errs.push(
                            "session.redis_ca_file",
                            "is only used with a rediss:// URL (TLS)",
                        );
                        None
                    }
                    Ok(p)
                        if (p.scheme() == "redis" || p.scheme() == "rediss")
                            && store_kind == "redis" =>
                    {
                        Some(StoreConfig::Redis { url: u, tls_ca })
                    }
                    Ok(p) if p.scheme() == "redis" || p.scheme() == "rediss" => {
                        Some(StoreConfig::RedisCluster { url: u, tls_ca })
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
                format!("{other:?} is not \"memory\", \"redis\", \"redis-cluster\" or \"redis-sentinel\""),
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
    let revalidate_interval = duration(
        errs,
        "session.revalidate_interval",
        raw.revalidate_interval.as_deref(),
        "5m",
    );
    if revalidate_interval
        .is_some_and(|d| d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600))
    {
        errs.push("session.revalidate_interval", "must be between 1s and 24h");
    }
    let revalidate_grace = duration(
        errs,
        "session.revalidate_grace",
        raw.revalidate_grace.as_deref(),
        "15m",
    );
    if revalidate_grace.is_some_and(|d| d > Duration::from_secs(24 * 3600)) {
        errs.push("session.revalidate_grace", "must be at most 24h");
    }
    let encryption_key = raw
        .encryption_key
        .as_ref()
        .and_then(|k| resolve_secret("session.encryption_key", k, base_dir, errs));
    if let Some(k) = &encryption_key {
        use secrecy::ExposeSecret;
        if k.expose_secret().len() < 32 {
            errs.push(
                "session.encryption_key",
                "must be at least 32 characters (e.g. `openssl rand -base64 32`)",
            );
        }
    }
    Some(SessionConfig {
        store: store?,
        key_prefix,
        idle_timeout: idle?,
        absolute_timeout: absolute?,
        revalidate_interval: revalidate_interval?,
        revalidate_grace: revalidate_grace?,
        encryption_key,
    })
}

pub(super) fn convert_web_identity(
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
        if let Err(e) = crate::keys::SigningKey::from_pem(&pem) {
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

pub(super) const JWS_ASYMMETRIC: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
pub(super) const SAML_ALGS: [&str; 6] = [
    "rsa-sha256",
    "rsa-sha384",
    "rsa-sha512",
    "ecdsa-sha256",
    "ecdsa-sha384",
    "ecdsa-sha512",
];

pub(super) fn convert_cli(raw: RawCli, errs: &mut Errors) -> Option<CliConfig> {
    let client_ids = raw
        .client_ids
        .unwrap_or_else(|| vec!["rolegate-cli".to_owned()]);
    for (i, c) in client_ids.iter().enumerate() {
        if c.is_empty()
            || c.len() > 64
            || !c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            errs.push(
                format!("cli.client_ids[{i}]"),
                "must be 1-64 letters, digits, '-', '_' or '.'",
            );
        }
    }
    let mut bounded = |key: &str, raw: Option<&str>, default: &str, min: u64, max: u64| {
        let d = duration(errs, &format!("cli.{key}"), raw, default)?;
        if d < Duration::from_secs(min) || d > Duration::from_secs(max) {
            errs.push(
                format!("cli.{key}"),
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(Duration::from_secs(min)),
                    humantime::format_duration(Duration::from_secs(max))
                ),
            );
            return None;
        }
        Some(d)
    };
    // An hour by default: botocore refreshes a cached SSO token that has less than 15
    // minutes left, so a shorter lifetime makes every new SDK process rotate the refresh
    // token. Access tokens are checked against their login at every use, so revoking a
    // login still ends them at once, whatever their lifetime.
    let access = bounded(
        "access_token_lifetime",
        raw.access_token_lifetime.as_deref(),
        "1h",
        5,
        12 * 3600,
    );
    let session = bounded(
        "session_lifetime",
        raw.session_lifetime.as_deref(),
        // A working day, like the browser's absolute timeout: without re-validation at the
        // IdP, this is how long a person removed there keeps a CLI or SDK login.
        "8h",
        600,
        30 * 24 * 3600,
    );
    let reuse = bounded(
        "refresh_reuse_interval",
        raw.refresh_reuse_interval.as_deref(),
        "30s",
        0,
        300,
    );
    let device = bounded(
        "device_code_lifetime",
        raw.device_code_lifetime.as_deref(),
        "10m",
        5,
        600,
    );
    let poll = bounded(
        "device_poll_interval",
        raw.device_poll_interval.as_deref(),
        "5s",
        1,
        60,
    );
    let registration = bounded(
        "client_registration_lifetime",
        raw.client_registration_lifetime.as_deref(),
        "90d",
        5,
        365 * 24 * 3600,
    );
    let requests_per_minute = raw.requests_per_minute.unwrap_or(600);
    if !(1..=1_000_000).contains(&requests_per_minute) {
        errs.push(
            "cli.requests_per_minute".to_owned(),
            "must be between 1 and 1000000".to_owned(),
        );
    }
    Some(CliConfig {
        client_ids,
        access_token_lifetime: access?,
        session_lifetime: session?,
        refresh_reuse_interval: reuse?,
        device_code_lifetime: device?,
        device_poll_interval: poll?,
        client_registration_lifetime: registration?,
        requests_per_minute,
    })
}
