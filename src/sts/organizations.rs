//! Account names from AWS Organizations (`ListAccounts`): the only code that knows
//! `aws_sdk_organizations`. Called with the broker's own credentials, which must be
//! allowed `organizations:ListAccounts` in the management account or a delegated
//! administrator account.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_organizations::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_organizations::error::{ProvideErrorMetadata, SdkError};
use secrecy::ExposeSecret;

use super::StaticAwsCredentials;
use crate::config::Config;
use crate::domain::Partition;

/// Why the names could not be read, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum OrganizationsError {
    #[error(
        "AWS Organizations refused ListAccounts ({0}): the broker's credentials need organizations:ListAccounts, in the management account or a delegated administrator account"
    )]
    Denied(String),
    #[error(
        "the broker's account is not in an organization with all features (AWS Organizations: {0})"
    )]
    NotInUse(String),
    #[error("AWS Organizations could not be reached: {0}")]
    Unreachable(String),
    #[error("AWS Organizations answered {code}: {message}")]
    Other { code: String, message: String },
}

/// The region Organizations' endpoint is in, per partition.
fn organizations_region(p: Partition) -> &'static str {
    match p {
        Partition::Aws => "us-east-1",
        Partition::AwsUsGov => "us-gov-west-1",
        Partition::AwsCn => "cn-northwest-1",
    }
}

pub struct Organizations {
    client: aws_sdk_organizations::Client,
}

impl Organizations {
    pub async fn new(config: &Config, credentials: Option<&StaticAwsCredentials>) -> Self {
        let region = Region::new(organizations_region(config.aws.partition));
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .load()
            .await;
        let timeouts = aws_sdk_organizations::config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(30))
            .operation_attempt_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build();
        let mut conf = aws_sdk_organizations::config::Builder::from(&sdk)
            .region(region)
            .timeout_config(timeouts);
        if let Some(url) = &config.aws.organizations_endpoint_url {
            conf = conf.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        if let Some(c) = credentials {
            conf = conf.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.expose_secret().to_owned(),
                c.session_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                None,
                "rolegate-static",
            ));
        }
        Self {
            client: aws_sdk_organizations::Client::from_conf(conf.build()),
        }
    }

    /// Every account's name by account number (all pages).
    pub async fn account_names(&self) -> Result<HashMap<String, String>, OrganizationsError> {
        let mut names = HashMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_accounts()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(classify)?;
            for a in page.accounts() {
                if let (Some(id), Some(name)) = (a.id(), a.name()) {
                    names.insert(id.to_owned(), name.to_owned());
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(names),
            }
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: SdkError<E, aws_sdk_organizations::config::http::HttpResponse>,
) -> OrganizationsError {
    // A 403 is a refusal whatever its body says (some answer in another protocol, which
    // the SDK cannot even parse).
    if let Some(raw) = e.raw_response()
        && raw.status().as_u16() == 403
    {
        let code = e.code().unwrap_or("HTTP 403").to_owned();
        return OrganizationsError::Denied(code);
    }
    match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown").to_owned();
            let message = s.err().message().unwrap_or("").to_owned();
            match code.as_str() {
                "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "ExpiredTokenException"
                | "SignatureDoesNotMatch" => OrganizationsError::Denied(code),
                "AWSOrganizationsNotInUseException" => OrganizationsError::NotInUse(code),
                _ => OrganizationsError::Other { code, message },
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            OrganizationsError::Unreachable(format!("{e}"))
        }
        _ => OrganizationsError::Other {
            code: "Unknown".into(),
            message: format!("{e}"),
        },
    }
}
