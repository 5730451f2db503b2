//! Every form in which rolegate hands temporary AWS credentials to a person or a tool:
//! shell `export` lines (bash/zsh, fish, PowerShell), a `~/.aws/credentials` block, the
//! AWS CLI's `credential_process` JSON, and plain JSON.
//!
//! One module for all clients (the web credentials page now, the CLI), so a fix to the
//! quoting or a new variable reaches every client at once. It is part of the client build
//! and imports only `domain`.
//!
//! Shell forms quote every value for their shell (single quotes, with that shell's escape
//! for a quote inside), so a value can never run as code when pasted. They also set the
//! region (`AWS_REGION` for the SDKs, `AWS_DEFAULT_REGION` for the AWS CLI) when one is
//! known: credentials alone leave `aws sts get-caller-identity` asking for one.

use std::fmt::Write as _;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::domain::TemporaryCredentials;

/// The output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialFormat {
    /// `export NAME='value'` lines for bash and zsh (and any POSIX shell).
    Bash,
    /// `set -gx NAME 'value'` lines for fish.
    Fish,
    /// `$Env:NAME = 'value'` lines for PowerShell.
    PowerShell,
    /// A `[profile]` block for `~/.aws/credentials`.
    CredentialsFile,
    /// The `credential_process` protocol: JSON with `"Version": 1` first.
    CredentialProcess,
    /// A JSON object with the credentials, the expiration and the region.
    Json,
}

impl CredentialFormat {
    pub const ALL: [CredentialFormat; 6] = [
        Self::Bash,
        Self::Fish,
        Self::PowerShell,
        Self::CredentialsFile,
        Self::CredentialProcess,
        Self::Json,
    ];

    /// The name used on command lines and in page anchors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bash => "env",
            Self::Fish => "fish",
            Self::PowerShell => "powershell",
            Self::CredentialsFile => "credentials-file",
            Self::CredentialProcess => "credential-process",
            Self::Json => "json",
        }
    }

    /// Parses a name from [`CredentialFormat::as_str`] (`bash` and `zsh` mean `env`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "env" | "bash" | "zsh" | "sh" => Some(Self::Bash),
            other => Self::ALL.into_iter().find(|f| f.as_str() == other),
        }
    }
}

/// What a format needs besides the credentials.
#[derive(Debug, Clone, Copy)]
pub struct FormatOptions<'a> {
    /// The AWS region the credentials are meant for (written by every form that can hold
    /// it); `None` leaves it to the user's own configuration.
    pub region: Option<&'a str>,
    /// The profile name of the `~/.aws/credentials` block.
    pub profile: &'a str,
}

/// The credentials in the given form. Secrets are exposed here, on purpose: the result
/// is meant for the person (or tool) the credentials were issued to.
pub fn render(
    format: CredentialFormat,
    creds: &TemporaryCredentials,
    options: &FormatOptions<'_>,
) -> String {
    let expiration = expiration(creds);
    let vars = environment(creds, &expiration, options.region);
    let mut out = String::new();
    match format {
        CredentialFormat::Bash => {
            for (name, value) in &vars {
                let _ = writeln!(out, "export {name}={}", posix_quote(value));
            }
        }
        CredentialFormat::Fish => {
            for (name, value) in &vars {
                let _ = writeln!(out, "set -gx {name} {}", fish_quote(value));
            }
        }
        CredentialFormat::PowerShell => {
            for (name, value) in &vars {
                let _ = writeln!(out, "$Env:{name} = {}", powershell_quote(value));
            }
        }
        CredentialFormat::CredentialsFile => {
            let _ = writeln!(out, "[{}]", ini_value(options.profile));
            let _ = writeln!(
                out,
                "aws_access_key_id = {}",
                ini_value(&creds.access_key_id)
            );
            let _ = writeln!(
                out,
                "aws_secret_access_key = {}",
                ini_value(creds.secret_access_key.expose_secret())
            );
            let _ = writeln!(
                out,
                "aws_session_token = {}",
                ini_value(creds.session_token.expose_secret())
            );
            if let Some(region) = options.region {
                let _ = writeln!(out, "region = {}", ini_value(region));
            }
        }
        CredentialFormat::CredentialProcess => {
            out = serde_json::to_string_pretty(&CredentialProcessOutput {
                version: 1,
                access_key_id: &creds.access_key_id,
                secret_access_key: creds.secret_access_key.expose_secret(),
                session_token: creds.session_token.expose_secret(),
                expiration: &expiration,
            })
            .unwrap_or_default();
            out.push('\n');
        }
        CredentialFormat::Json => {
            out = serde_json::to_string_pretty(&JsonOutput {
                access_key_id: &creds.access_key_id,
                secret_access_key: creds.secret_access_key.expose_secret(),
                session_token: creds.session_token.expose_secret(),
                expiration: &expiration,
                region: options.region,
            })
            .unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

/// RFC 3339 in UTC with seconds, as the AWS SDKs expect (`2026-11-27T09:00:00Z`).
pub fn expiration(creds: &TemporaryCredentials) -> String {
    humantime::format_rfc3339_seconds(creds.expiration).to_string()
}

/// The environment variables the AWS CLI and SDKs read, in a stable order.
fn environment<'a>(
    creds: &'a TemporaryCredentials,
    expiration: &'a str,
    region: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", creds.access_key_id.as_str()),
        (
            "AWS_SECRET_ACCESS_KEY",
            creds.secret_access_key.expose_secret(),
        ),
        ("AWS_SESSION_TOKEN", creds.session_token.expose_secret()),
        ("AWS_CREDENTIAL_EXPIRATION", expiration),
    ];
    if let Some(region) = region {
        vars.push(("AWS_REGION", region));
        vars.push(("AWS_DEFAULT_REGION", region));
    }
    vars
}

/// Field order matters: the AWS CLI documents `Version` first.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialProcessOutput<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: &'a str,
    expiration: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JsonOutput<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: &'a str,
    expiration: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
}

/// POSIX single quotes: nothing inside is special; a `'` becomes `'\''`.
fn posix_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// fish single quotes: only `\` and `'` are special inside, each escaped with `\`.
fn fish_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', r"\\").replace('\'', r"\'"))
}

/// PowerShell single-quoted strings: nothing is expanded; a `'` is doubled.
fn powershell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// INI values end at the line end: a value with a line break would inject keys, so line
/// breaks are dropped (STS never sends any).
fn ini_value(v: &str) -> String {
    v.chars().filter(|c| *c != '\n' && *c != '\r').collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn creds() -> TemporaryCredentials {
        TemporaryCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "se'cr\\et/+=".to_owned().into(),
            session_token: "tok$en`x`".to_owned().into(),
            expiration: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    const OPTS: FormatOptions<'static> = FormatOptions {
        region: Some("eu-west-1"),
        profile: "rolegate-dev",
    };

    #[test]
    fn bash_exports_every_variable_single_quoted_with_the_region() {
        let out = render(CredentialFormat::Bash, &creds(), &OPTS);
        assert_eq!(
            out,
            "export AWS_ACCESS_KEY_ID='ASIAEXAMPLE'\n\
             export AWS_SECRET_ACCESS_KEY='se'\\''cr\\et/+='\n\
             export AWS_SESSION_TOKEN='tok$en`x`'\n\
             export AWS_CREDENTIAL_EXPIRATION='2027-01-15T08:00:00Z'\n\
             export AWS_REGION='eu-west-1'\n\
             export AWS_DEFAULT_REGION='eu-west-1'\n"
        );
    }

    #[test]
    fn fish_escapes_backslashes_and_quotes() {
        let out = render(CredentialFormat::Fish, &creds(), &OPTS);
        assert!(out.contains("set -gx AWS_SECRET_ACCESS_KEY 'se\\'cr\\\\et/+='\n"));
        assert!(out.contains("set -gx AWS_REGION 'eu-west-1'\n"));
        assert!(out.contains("set -gx AWS_DEFAULT_REGION 'eu-west-1'\n"));
    }

    #[test]
    fn powershell_doubles_quotes_and_expands_nothing() {
        let out = render(CredentialFormat::PowerShell, &creds(), &OPTS);
        assert!(out.contains("$Env:AWS_SECRET_ACCESS_KEY = 'se''cr\\et/+='\n"));
        assert!(out.contains("$Env:AWS_SESSION_TOKEN = 'tok$en`x`'\n"));
        assert!(out.contains("$Env:AWS_DEFAULT_REGION = 'eu-west-1'\n"));
    }

    #[test]
    fn the_credentials_file_block_names_the_profile_and_region() {
        let out = render(CredentialFormat::CredentialsFile, &creds(), &OPTS);
        assert_eq!(
            out,
            "[rolegate-dev]\naws_access_key_id = ASIAEXAMPLE\naws_secret_access_key = se'cr\\et/+=\n\
             aws_session_token = tok$en`x`\nregion = eu-west-1\n"
        );
    }

    #[test]
    fn a_line_break_cannot_inject_a_key_into_the_credentials_file() {
        let mut c = creds();
        c.session_token = "a\n[default]\nb".to_owned().into();
        let out = render(CredentialFormat::CredentialsFile, &c, &OPTS);
        assert_eq!(out.lines().count(), 5, "{out}");
        assert!(out.contains("aws_session_token = a[default]b\n"));
    }

    #[test]
    fn credential_process_puts_version_first_and_is_valid_json() {
        let out = render(CredentialFormat::CredentialProcess, &creds(), &OPTS);
        let first_key = out.lines().nth(1).unwrap().trim();
        assert_eq!(first_key, "\"Version\": 1,");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(v["SecretAccessKey"], "se'cr\\et/+=");
        assert_eq!(v["SessionToken"], "tok$en`x`");
        assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
        assert_eq!(v.as_object().unwrap().len(), 5);
    }

    #[test]
    fn plain_json_carries_the_region_when_known() {
        let v: serde_json::Value =
            serde_json::from_str(&render(CredentialFormat::Json, &creds(), &OPTS)).unwrap();
        assert_eq!(v["Region"], "eu-west-1");
        assert_eq!(v["SecretAccessKey"], "se'cr\\et/+=");
        let none = FormatOptions {
            region: None,
            ..OPTS
        };
        let v: serde_json::Value =
            serde_json::from_str(&render(CredentialFormat::Json, &creds(), &none)).unwrap();
        assert!(v.get("Region").is_none());
    }

    #[test]
    fn without_a_region_the_shell_forms_set_none() {
        let none = FormatOptions {
            region: None,
            ..OPTS
        };
        for f in [
            CredentialFormat::Bash,
            CredentialFormat::Fish,
            CredentialFormat::PowerShell,
        ] {
            let out = render(f, &creds(), &none);
            assert!(!out.contains("REGION"), "{f:?}: {out}");
            assert_eq!(out.lines().count(), 4, "{f:?}");
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in CredentialFormat::ALL {
            assert_eq!(CredentialFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(CredentialFormat::parse("zsh"), Some(CredentialFormat::Bash));
        assert_eq!(CredentialFormat::parse("yaml"), None);
    }
}
