//! The CLI's everyday commands over the broker's JSON API.
//!
//! Credentials are cached per role (and requested duration) and reused until 5 minutes
//! before they expire; fetching happens under a per-role file lock, so concurrent
//! `credential_process` calls fetch once. `configure` writes one AWS CLI profile per
//! granted role into a marked block of `~/.aws/config`, replacing only that block: by
//! default `credential_process` profiles; with `--sso`, profiles for the SDKs' own SSO
//! support against the broker's AWS SSO APIs.

use std::path::PathBuf;

use serde_json::{Value as Json, json};

use super::CliError;
use super::broker;
use super::convert::parse_process_credentials;
use super::settings::{self, now_unix};
use crate::credential_formats::{self, CredentialFormat, FormatOptions};
use crate::domain::TemporaryCredentials;

/// `credential_process` credentials are reused until this close to their expiry.
const REFRESH_BEFORE: u64 = 300;

/// Credentials handed to SDKs through the container endpoint keep at least this long
/// (or half their lifetime, for roles with short sessions): botocore refreshes container
/// credentials with less than 15 minutes left at each use, so serving less would make
/// every SDK call come back.
const SDK_REFRESH_BEFORE: u64 = 15 * 60 + 60;

pub fn whoami() -> Result<String, CliError> {
    let me = broker::api("GET", "/api/v1/me", None)?;
    Ok(format!(
        "{} (subject {}, via {})\ngroups: {}\nlogin ends: {}\n",
        me["username"].as_str().unwrap_or("?"),
        me["subject"].as_str().unwrap_or("?"),
        me["idp"].as_str().unwrap_or("?"),
        me["groups"]
            .as_array()
            .map(|g| g
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        me["session_expires_at"].as_str().unwrap_or("?"),
    ))
}

pub fn roles() -> Result<String, CliError> {
    let roles = broker::api("GET", "/api/v1/roles", None)?;
    let mut out = String::new();
    for a in roles["accounts"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} ({}, {})\n",
            a["name"].as_str().unwrap_or(""),
            a["id"].as_str().unwrap_or(""),
            a["number"].as_str().unwrap_or("")
        ));
        for r in a["roles"].as_array().into_iter().flatten() {
            let elevated = r["elevated_until"]
                .as_u64()
                .map(|u| {
                    format!(
                        "  (elevated, {} left)",
                        humantime::format_duration(std::time::Duration::from_secs(
                            u.saturating_sub(now_unix())
                        ))
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<24} {:<10} {}{elevated}\n",
                r["id"].as_str().unwrap_or(""),
                humantime::format_duration(std::time::Duration::from_secs(
                    r["max_duration_seconds"].as_u64().unwrap_or(0)
                ))
                .to_string(),
                r["arn"].as_str().unwrap_or("")
            ));
        }
    }
    if out.is_empty() {
        out.push_str("No roles: no rule grants you an AWS role.\n");
    }
    Ok(out)
}

/// Credentials for `role` as the broker returns them (JSON with `Region`), from the cache
/// when they last long enough, else fetched (once, under the role's lock).
pub fn credentials_json(role: &str, duration: Option<&str>) -> Result<Json, CliError> {
    cached_or_fetched(role, duration, |_| REFRESH_BEFORE)
}

/// [`credentials_json`] for SDKs reading the container endpoint: refreshed earlier
/// ([`SDK_REFRESH_BEFORE`], at most half the credentials' lifetime).
pub fn credentials_json_for_sdk(role: &str, duration: Option<&str>) -> Result<Json, CliError> {
    cached_or_fetched(role, duration, |lifetime| {
        SDK_REFRESH_BEFORE
            .min(lifetime / 2)
            .max(REFRESH_BEFORE.min(lifetime))
    })
}

/// The cached credentials when they have more than `margin(lifetime)` seconds left
/// (lifetime: from the cache file's write to the expiry), else fetched from the broker.
fn cached_or_fetched(
    role: &str,
    duration: Option<&str>,
    margin: impl Fn(u64) -> u64,
) -> Result<Json, CliError> {
    let path = settings::cache_path(role, duration)?;
    let cached = || -> Option<Json> {
        let text = std::fs::read_to_string(&path).ok()?;
        let written = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        let j: Json = serde_json::from_str(&text).ok()?;
        let expires = j["Expiration"]
            .as_str()
            .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())?
            .as_secs();
        let left = expires.saturating_sub(now_unix());
        (left > margin(expires.saturating_sub(written))).then_some(j)
    };
    if let Some(j) = cached() {
        return Ok(j);
    }
    let _lock = settings::lock(&format!(
        "role-{}",
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
    ))?;
    if let Some(j) = cached() {
        return Ok(j);
    }
    let body = duration.map(|d| json!({ "duration": d }));
    let j = broker::api(
        "POST",
        &format!("/api/v1/roles/{}/credentials", urlencode(role)),
        body.as_ref(),
    )?;
    settings::write_private(&path, &j.to_string())?;
    Ok(j)
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn to_credentials(j: &Json) -> Result<TemporaryCredentials, CliError> {
    let process = json!({
        "Version": 1,
        "AccessKeyId": j["AccessKeyId"],
        "SecretAccessKey": j["SecretAccessKey"],
        "SessionToken": j["SessionToken"],
        "Expiration": j["Expiration"],
    });
    Ok(parse_process_credentials(&process.to_string())?)
}

/// `rolegate credentials`: the role's credentials in `format`.
pub fn credentials(
    role: &str,
    format: CredentialFormat,
    duration: Option<&str>,
) -> Result<String, CliError> {
    let j = credentials_json(role, duration)?;
    let creds = to_credentials(&j)?;
    let profile = format!("rolegate-{role}");
    Ok(credential_formats::render(
        format,
        &creds,
        &FormatOptions {
            region: j["Region"].as_str(),
            profile: &profile,
        },
    ))
}

/// `rolegate exec`: runs `command` with the role's credentials (and region) in its
/// environment; returns its exit code.
pub fn exec(role: &str, duration: Option<&str>, command: &[String]) -> Result<i32, CliError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::Login("give a command after `--`".into()))?;
    let j = credentials_json(role, duration)?;
    let creds = to_credentials(&j)?;
    use secrecy::ExposeSecret;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            creds.secret_access_key.expose_secret(),
        )
        .env("AWS_SESSION_TOKEN", creds.session_token.expose_secret())
        .env(
            "AWS_CREDENTIAL_EXPIRATION",
            credential_formats::expiration(&creds),
        )
        .env_remove("AWS_PROFILE");
    if let Some(region) = j["Region"].as_str() {
        cmd.env("AWS_REGION", region)
            .env("AWS_DEFAULT_REGION", region);
    }
    let status = cmd
        .status()
        .map_err(CliError::io(format!("cannot run {program}")))?;
    Ok(status.code().unwrap_or(1))
}

/// `rolegate exec --ecs-server`: runs `command` with a container-credentials endpoint for
/// the role on a loopback port (and no fixed keys) in its environment; the endpoint ends
/// with the command.
pub fn exec_with_endpoint(
    role: &str,
    duration: Option<String>,
    command: &[String],
) -> Result<i32, CliError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::Login("give a command after `--`".into()))?;
    let j = credentials_json_for_sdk(role, duration.as_deref())?;
    let endpoint = super::container::CredentialEndpoint::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![role.to_owned()],
        duration,
    )?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            endpoint.uri(role, None),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", endpoint.token());
    // Fixed keys or a profile would take precedence over the endpoint in the SDKs' chain.
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ] {
        cmd.env_remove(var);
    }
    if let Some(region) = j["Region"].as_str() {
        cmd.env("AWS_REGION", region)
            .env("AWS_DEFAULT_REGION", region);
    }
    let status = cmd
        .status()
        .map_err(CliError::io(format!("cannot run {program}")))?;
    drop(endpoint);
    Ok(status.code().unwrap_or(1))
}

/// Where `rolegate console` should land (all `None`: the role's destination).
#[derive(Default)]
pub struct ConsoleLanding<'a> {
    pub service: Option<&'a str>,
    pub region: Option<&'a str>,
    pub destination: Option<&'a str>,
}

/// `rolegate console`: a sign-in URL for the role's console (the broker checks the
/// destination: anything but the console and its allowed destinations is refused).
pub fn console_url(role: &str, landing: &ConsoleLanding<'_>) -> Result<String, CliError> {
    let mut body = serde_json::Map::new();
    for (k, v) in [
        ("service", landing.service),
        ("region", landing.region),
        ("destination", landing.destination),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), Json::from(v));
        }
    }
    let body = (!body.is_empty()).then_some(Json::Object(body));
    let j = broker::api(
        "POST",
        &format!("/api/v1/roles/{}/console", urlencode(role)),
        body.as_ref(),
    )?;
    j["url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Broker("the broker returned no URL".into()))
}

/// `rolegate logout`: revokes the login at the broker and forgets it here.
pub fn logout() -> Result<String, CliError> {
    let Some(t) = settings::load_tokens()? else {
        return Ok("not logged in\n".into());
    };
    let url = format!("{}/oauth/revoke", t.broker);
    let revoked = broker::http()
        .post(&url)
        .form(&[
            ("token", t.refresh_token.as_str()),
            ("client_id", t.client_id.as_str()),
        ])
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    settings::forget_login()?;
    Ok(if revoked {
        "logged out (the login is revoked at the broker)\n".into()
    } else {
        "logged out here; the broker could not be reached to revoke the login (it ends by itself)\n"
            .into()
    })
}

const BEGIN: &str =
    "# >>> rolegate: profiles managed by `rolegate configure`; edits in here are replaced >>>";
const END: &str = "# <<< rolegate <<<";

/// The AWS CLI config file (`$AWS_CONFIG_FILE`, else `~/.aws/config`).
pub fn aws_config_path() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("AWS_CONFIG_FILE") {
        return Ok(PathBuf::from(p));
    }
    dirs::home_dir()
        .map(|h| h.join(".aws").join("config"))
        .ok_or_else(|| CliError::Login("cannot find the home folder; set AWS_CONFIG_FILE".into()))
}

/// How the profiles `configure` writes get their credentials.
pub enum ProfileForm<'a> {
    /// `credential_process` calling this rolegate executable.
    CredentialProcess { exe: &'a str },
    /// The AWS SDKs' own SSO support against the broker's AWS SSO APIs: an `sso-session`
    /// named [`SSO_SESSION`], a `services` section pointing the `sso-oidc` and `sso`
    /// clients at the broker, and `sso_account_id`/`sso_role_name` profiles. No rolegate
    /// binary is needed to use them.
    Sso { broker: &'a str },
}

/// The `sso-session` (and `services` section) `configure --sso` writes.
pub const SSO_SESSION: &str = "rolegate";

/// The managed block: one profile per granted role.
pub fn profiles_block(roles: &Json, naming: &str, form: &ProfileForm<'_>) -> String {
    let mut out = format!("{BEGIN}\n");
    if let ProfileForm::Sso { broker } = form {
        let broker = broker.trim_end_matches('/');
        // sso_region only has to be a valid region name: both endpoints are overridden.
        // The SDKs disagree on the services key of the "SSO OIDC" service: botocore (boto3,
        // AWS CLI) reads `sso_oidc`, the Rust SDK `sso-oidc`; each ignores the other.
        let region = roles["region"].as_str().unwrap_or("us-east-1");
        out.push_str(&format!(
            "[sso-session {SSO_SESSION}]\nsso_start_url = {broker}/\nsso_region = {region}\nsso_registration_scopes = sso:account:access\n\n[services {SSO_SESSION}]\nsso_oidc =\n  endpoint_url = {broker}/sso-oidc\nsso-oidc =\n  endpoint_url = {broker}/sso-oidc\nsso =\n  endpoint_url = {broker}/sso-portal\n\n"
        ));
    }
    for a in roles["accounts"].as_array().into_iter().flatten() {
        for r in a["roles"].as_array().into_iter().flatten() {
            let role = r["id"].as_str().unwrap_or("");
            let name = naming
                .replace("{account}", a["id"].as_str().unwrap_or(""))
                .replace("{account_number}", a["number"].as_str().unwrap_or(""))
                .replace("{role}", role);
            match form {
                ProfileForm::CredentialProcess { exe } => out.push_str(&format!(
                    "[profile {name}]\ncredential_process = \"{exe}\" credentials --role {role} --format credential-process\n"
                )),
                ProfileForm::Sso { .. } => out.push_str(&format!(
                    "[profile {name}]\nsso_session = {SSO_SESSION}\nsso_account_id = {}\nsso_role_name = {role}\nservices = {SSO_SESSION}\n",
                    a["number"].as_str().unwrap_or("")
                )),
            }
            if let Some(region) = roles["region"].as_str() {
                out.push_str(&format!("region = {region}\n"));
            }
            out.push('\n');
        }
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// How many profiles the managed block in `text` holds (`None`: no block).
pub fn profiles_in_block(text: &str) -> Option<usize> {
    match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if e > b => Some(text[b..e].matches("\n[profile ").count()),
        _ => None,
    }
}

/// `text` with its managed block replaced by `block` (appended when there is none).
pub fn replace_block(text: &str, block: &str) -> String {
    match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if e > b => {
            let after = &text[e + END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{block}{after}", &text[..b])
        }
        _ => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(block);
            out
        }
    }
}

/// A line diff of the change (`-` removed, `+` added), for `--dry-run`.
fn diff(old: &str, new: &str) -> String {
    let (o, n): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = String::new();
    for l in &o {
        if !n.contains(l) {
            out.push_str(&format!("-{l}\n"));
        }
    }
    for l in &n {
        if !o.contains(l) {
            out.push_str(&format!("+{l}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("(no change)\n");
    }
    out
}

/// `rolegate configure [--sso] [--dry-run]`.
pub fn configure(sso: bool, dry_run: bool) -> Result<String, CliError> {
    let roles = broker::api("GET", "/api/v1/roles", None)?;
    let naming = settings::load_config()?.profile_name;
    let exe = std::env::current_exe()
        .map_err(CliError::io("cannot find the rolegate executable"))?
        .display()
        .to_string();
    let broker_url = broker::session()?.broker;
    let form = if sso {
        ProfileForm::Sso {
            broker: &broker_url,
        }
    } else {
        ProfileForm::CredentialProcess { exe: &exe }
    };
    let path = aws_config_path()?;
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(CliError::io(format!("cannot read {}", path.display()))(e)),
    };
    let new = replace_block(&old, &profiles_block(&roles, &naming, &form));
    if dry_run {
        return Ok(format!(
            "{} (dry run)\n{}",
            path.display(),
            diff(&old, &new)
        ));
    }
    if new != old {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(CliError::io(format!("cannot create {}", parent.display())))?;
        }
        let tmp = path.with_extension("rolegate-tmp");
        std::fs::write(&tmp, &new)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(CliError::io(format!("cannot write {}", path.display())))?;
    }
    let profiles: Vec<&str> = new[new.find(BEGIN).unwrap_or(0)..]
        .lines()
        .filter_map(|l| {
            l.strip_prefix("[profile ")
                .and_then(|l| l.strip_suffix(']'))
        })
        .collect();
    let first = profiles.first().copied().unwrap_or("PROFILE");
    let next = if sso {
        format!(
            "Log the AWS SDKs in once with: aws sso login --sso-session {SSO_SESSION} (AWS CLI v2)\nThen: aws --profile {first} sts get-caller-identity\n"
        )
    } else {
        format!("Use them with: aws --profile {first} sts get-caller-identity\n")
    };
    Ok(format!(
        "{}: {} profile(s): {}\n{next}",
        path.display(),
        profiles.len(),
        profiles.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Json {
        json!({ "region": "eu-west-1", "accounts": [
            { "id": "prod", "number": "111122223333", "roles": [{ "id": "admin" }, { "id": "ro" }] }
        ]})
    }

    #[test]
    fn configure_replaces_only_its_block_and_is_idempotent() {
        let block = profiles_block(
            &roles(),
            "{account}-{role}",
            &ProfileForm::CredentialProcess {
                exe: "/usr/bin/rolegate",
            },
        );
        assert!(block.contains("[profile prod-admin]\ncredential_process = \"/usr/bin/rolegate\" credentials --role admin --format credential-process\nregion = eu-west-1\n"));
        let mine = "[default]\nregion = us-east-1\n\n[profile other]\noutput = json\n";
        let once = replace_block(mine, &block);
        assert!(once.starts_with(mine), "other profiles untouched");
        let twice = replace_block(&once, &block);
        assert_eq!(once, twice, "idempotent");
        let fewer = profiles_block(
            &json!({ "accounts": [{ "id": "prod", "number": "1", "roles": [{ "id": "ro" }] }] }),
            "{account_number}-{role}",
            &ProfileForm::CredentialProcess { exe: "rg" },
        );
        let changed = replace_block(&twice, &fewer);
        assert!(changed.starts_with(mine));
        assert!(changed.contains("[profile 1-ro]") && !changed.contains("prod-admin"));
        assert_eq!(changed.matches(BEGIN).count(), 1);
    }

    #[test]
    fn the_sso_form_writes_a_session_a_services_section_and_one_profile_per_role() {
        let block = profiles_block(
            &roles(),
            "{account}-{role}",
            &ProfileForm::Sso {
                broker: "https://rg.example.com/",
            },
        );
        assert!(block.contains("[sso-session rolegate]\nsso_start_url = https://rg.example.com/\nsso_region = eu-west-1\n"), "{block}");
        assert!(block.contains("[services rolegate]\nsso_oidc =\n  endpoint_url = https://rg.example.com/sso-oidc\nsso-oidc =\n  endpoint_url = https://rg.example.com/sso-oidc\nsso =\n  endpoint_url = https://rg.example.com/sso-portal\n"), "{block}");
        assert!(block.contains("[profile prod-ro]\nsso_session = rolegate\nsso_account_id = 111122223333\nsso_role_name = ro\nservices = rolegate\nregion = eu-west-1\n"), "{block}");
        assert!(!block.contains("credential_process"));
        assert_eq!(block.matches("[sso-session").count(), 1);
    }
}
