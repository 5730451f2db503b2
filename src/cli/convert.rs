//! Converting credentials between the forms of [`crate::credential_formats`] (e.g. the
//! output of a `credential_process` helper or of `aws configure export-credentials` into
//! fish or PowerShell lines), and reading the broker's credential JSON.

use std::time::SystemTime;

use serde::Deserialize;

use crate::credential_formats::{self, CredentialFormat, FormatOptions};
use crate::domain::TemporaryCredentials;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the input is not credential_process JSON: {0}")]
    NotJson(String),
    #[error("the input has \"Version\": {0}; only version 1 is defined")]
    Version(u64),
    #[error("\"Expiration\" is not an RFC 3339 time: {0:?}")]
    Expiration(String),
    #[error(
        "the credentials have no \"Expiration\"; rolegate hands out temporary credentials only"
    )]
    NoExpiration,
}

/// The `credential_process` JSON as the AWS CLI documents it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessCredentials {
    version: u64,
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: Option<String>,
}

/// Reads `credential_process` JSON (Version 1) into credentials.
pub fn parse_process_credentials(input: &str) -> Result<TemporaryCredentials, ConvertError> {
    let p: ProcessCredentials =
        serde_json::from_str(input).map_err(|e| ConvertError::NotJson(e.to_string()))?;
    if p.version != 1 {
        return Err(ConvertError::Version(p.version));
    }
    let expiration_text = p.expiration.ok_or(ConvertError::NoExpiration)?;
    let expiration: SystemTime = humantime::parse_rfc3339_weak(&expiration_text)
        .map_err(|_| ConvertError::Expiration(expiration_text.clone()))?;
    Ok(TemporaryCredentials {
        access_key_id: p.access_key_id,
        secret_access_key: p.secret_access_key.into(),
        session_token: p.session_token.into(),
        expiration,
    })
}

/// Reads `credential_process` JSON (Version 1) and writes it in `format`.
pub fn convert_credentials(
    input: &str,
    format: CredentialFormat,
    options: &FormatOptions<'_>,
) -> Result<String, ConvertError> {
    let creds = parse_process_credentials(input)?;
    Ok(credential_formats::render(format, &creds, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s'k","SessionToken":"t","Expiration":"2027-01-15T08:00:00Z"}"#;
    const OPTS: FormatOptions<'static> = FormatOptions {
        region: Some("eu-west-1"),
        profile: "p",
    };

    #[test]
    fn credential_process_json_round_trips_and_converts() {
        let back = convert_credentials(INPUT, CredentialFormat::CredentialProcess, &OPTS).unwrap();
        let v: serde_json::Value = serde_json::from_str(&back).unwrap();
        let orig: serde_json::Value = serde_json::from_str(INPUT).unwrap();
        assert_eq!(v, orig);
        let bash = convert_credentials(INPUT, CredentialFormat::Bash, &OPTS).unwrap();
        assert!(
            bash.contains("export AWS_SECRET_ACCESS_KEY='s'\\''k'\n"),
            "{bash}"
        );
        assert!(bash.contains("export AWS_REGION='eu-west-1'\n"));
    }

    #[test]
    fn bad_input_is_named() {
        let err = |s: &str| {
            convert_credentials(s, CredentialFormat::Bash, &OPTS)
                .unwrap_err()
                .to_string()
        };
        assert!(err("nope").contains("not credential_process JSON"));
        assert!(err(&INPUT.replace("\"Version\":1", "\"Version\":2")).contains("only version 1"));
        assert!(err(&INPUT.replace("2027-01-15T08:00:00Z", "soon")).contains("not an RFC 3339"));
        assert!(
            err(&INPUT.replace(",\"Expiration\":\"2027-01-15T08:00:00Z\"", ""))
                .contains("no \"Expiration\"")
        );
    }
}
