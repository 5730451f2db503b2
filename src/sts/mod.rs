//! The AWS STS adapter: the only code that knows `aws_sdk_sts` and calls STS.
//!
//! It makes exactly the call the access core decided on ([`StsRequest`]) and turns the
//! SDK's answer into [`IssuedCredentials`] or an [`IssueError`] a person can act on. It
//! does not decide who may have what: authorization, the audit record and metrics belong
//! to the access core (`access::issuer`), the only caller of [`Sts::call`]. The one other
//! STS call is the start-up `GetCallerIdentity` in [`Sts::check_caller`], which mints
//! nothing.
//!
//! Two ways to get credentials, chosen per role: `assume_role` (the broker's own AWS
//! credentials from the SDK's default chain, `AssumeRole`) and `web_identity` (the broker
//! signs a JWT as an OIDC issuer AWS trusts, `AssumeRoleWithWebIdentity`). The SDK retries
//! throttling and 5xx with backoff within `aws.sts_timeout` (shared by the regions of
//! `aws.sts_regions`, which [`regions`] fails over between); access errors are not retried.

pub mod console;
pub mod organizations;
pub mod recall;
pub mod regions;
pub mod web_identity;

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::RequestId;
use secrecy::{ExposeSecret, SecretString};

pub use web_identity::WebIdentitySigner;

use crate::config::{Config, StsMode};
use crate::domain::{
    Identifier, RoleArn, RoleSessionName, SessionDuration, SessionPolicy, SessionTags,
    SourceIdentity, TemporaryCredentials,
};

/// AWS caps sessions obtained by role chaining at one hour.
const ROLE_CHAINING_MAX: u32 = 3600;

/// What STS issued: the temporary credentials (secret parts print as `[REDACTED]` and
/// reach only the page or response that hands them to the user) and facts about them.
pub struct IssuedCredentials {
    pub credentials: TemporaryCredentials,
    pub assumed_role_arn: String,
    pub sts_request_id: Option<String>,
    pub duration: SessionDuration,
    /// Whether AWS will accept a console `SessionDuration` for these credentials
    /// (not for credentials obtained by role chaining).
    pub console_duration_allowed: bool,
    /// The STS region that issued them.
    pub region: String,
}

/// Why no credentials were issued, in words the person (or the role's administrator)
/// can act on. The STS request id, when there is one, is kept for the page and the log.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(
        "the role {role} does not trust this broker (check its trust policy: the principal, and that it allows sts:TagSession and sts:SetSourceIdentity)"
    )]
    AccessDenied {
        role: String,
        sts_request_id: Option<String>,
    },
    /// AWS refused the duration: the role's own `MaxSessionDuration` in IAM is shorter
    /// than the one configured in rolegate.
    #[error(
        "AWS refused a session of {requested} for role {role}: its MaxSessionDuration in IAM is shorter"
    )]
    DurationTooLong {
        role: String,
        requested: SessionDuration,
        sts_request_id: Option<String>,
    },
    #[error(
        "AWS refused the session because its session tags or session policy are too large: {detail}"
    )]
    PackedPolicyTooLarge {
        detail: String,
        sts_request_id: Option<String>,
    },
    #[error("AWS STS is not enabled in region {region} for this account")]
    RegionDisabled {
        region: String,
        sts_request_id: Option<String>,
    },
    #[error("the broker's own AWS credentials have expired or are invalid")]
    BrokerCredentialsInvalid { sts_request_id: Option<String> },
    #[error("the broker has no AWS credentials of its own (needed for assume_role roles)")]
    BrokerCredentialsMissing,
    #[error("AWS STS is throttling requests; try again in a minute")]
    Throttled { sts_request_id: Option<String> },
    #[error("AWS STS could not be reached")]
    Unreachable,
    #[error("AWS STS failed (HTTP {status}, {code})")]
    ServerError {
        status: u16,
        code: String,
        sts_request_id: Option<String>,
    },
    #[error("AWS STS refused the request ({code})")]
    Refused {
        code: String,
        sts_request_id: Option<String>,
    },
    #[error("web_identity is not configured on this broker")]
    WebIdentityNotConfigured,
    #[error("the broker could not sign its web identity token")]
    Signing,
}

impl IssueError {
    pub fn sts_request_id(&self) -> Option<&str> {
        match self {
            Self::AccessDenied { sts_request_id, .. }
            | Self::DurationTooLong { sts_request_id, .. }
            | Self::PackedPolicyTooLarge { sts_request_id, .. }
            | Self::RegionDisabled { sts_request_id, .. }
            | Self::BrokerCredentialsInvalid { sts_request_id }
            | Self::Throttled { sts_request_id }
            | Self::ServerError { sts_request_id, .. }
            | Self::Refused { sts_request_id, .. } => sts_request_id.as_deref(),
            _ => None,
        }
    }

    /// A short machine-readable reason for audit records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AccessDenied { .. } => "access_denied",
            Self::DurationTooLong { .. } => "duration_too_long",
            Self::PackedPolicyTooLarge { .. } => "packed_policy_too_large",
            Self::RegionDisabled { .. } => "region_disabled",
            Self::BrokerCredentialsInvalid { .. } => "broker_credentials_invalid",
            Self::BrokerCredentialsMissing => "broker_credentials_missing",
            Self::Throttled { .. } => "throttled",
            Self::Unreachable => "sts_unreachable",
            Self::ServerError { .. } => "sts_server_error",
            Self::Refused { .. } => "refused",
            Self::WebIdentityNotConfigured => "web_identity_not_configured",
            Self::Signing => "signing_failed",
        }
    }

    /// The role does not trust the broker (a 403 for the person).
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Self::AccessDenied { .. })
    }

    /// AWS refused the session length (a 400 for the person).
    pub fn is_duration_refused(&self) -> bool {
        matches!(self, Self::DurationTooLong { .. })
    }

    /// Whether the failure is on the broker's or AWS's side (5xx) rather than a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable
                | Self::Throttled { .. }
                | Self::ServerError { .. }
                | Self::BrokerCredentialsMissing
        )
    }

    /// Whether another region may answer (connection errors, timeouts, 5xx, throttling);
    /// refusals (`AccessDenied`, a session too long, …) would be the same everywhere.
    pub fn fails_over(&self) -> bool {
        matches!(
            self,
            Self::Unreachable | Self::Throttled { .. } | Self::ServerError { .. }
        )
    }
}

/// AWS credentials handed to the broker directly, instead of the SDK's default chain
/// (tests and embedding). Plain values: no SDK type leaves this module.
#[derive(Clone)]
pub struct StaticAwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

/// One STS call, fully decided by the access core: which role, under which session name,
/// for how long, with which tags, source identity and session policy.
pub struct StsRequest<'a> {
    /// The role's id in the config (for messages).
    pub role: &'a Identifier,
    pub role_arn: &'a RoleArn,
    pub mode: StsMode,
    pub session_name: &'a RoleSessionName,
    /// Already checked against the grant's maximum.
    pub duration: SessionDuration,
    pub source_identity: Option<&'a SourceIdentity>,
    pub tags: &'a SessionTags,
    pub policy: Option<&'a SessionPolicy>,
    /// The `sub` of the web identity token (`idp:subject`), for `web_identity` roles.
    pub web_identity_subject: &'a str,
}

const CALLER_UNKNOWN: u8 = 0;
const CALLER_PLAIN: u8 = 1;
const CALLER_ROLE_SESSION: u8 = 2;

/// The STS clients with the broker's settings (endpoints, retries, timeouts), one per
/// region of `[aws] sts_regions` and worker thread ([`regions`]), and, for
/// `web_identity` roles, the broker's token signer.
pub struct Sts {
    clients: regions::PerThreadClients,
    regions: Vec<String>,
    breakers: Vec<regions::Breaker>,
    retry_after: Duration,
    web_identity: Option<WebIdentitySigner>,
    /// Whether the broker's own credentials are a role session (role chaining).
    caller: AtomicU8,
}

impl Sts {
    /// Builds the STS client: the SDK's default credential chain (environment, shared
    /// profile, web-identity token file, container and instance metadata) unless
    /// `credentials` is given (tests), regional endpoint or the configured override,
    /// standard retries (3 attempts) within `aws.sts_timeout`.
    pub async fn new(
        config: &Config,
        credentials: Option<&StaticAwsCredentials>,
    ) -> Result<Self, web_identity::WebIdentityError> {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.aws.region.clone()))
            .load()
            .await;
        let regions = &config.aws.sts_regions;
        // The whole deadline is shared by the regions a call may try, so a drain still
        // waits at most `sts_timeout` for it; with one region, retries as before.
        let n = regions.len().max(1) as u32;
        let timeout = (config.aws.sts_timeout / n).max(Duration::from_millis(500));
        let attempts = if n == 1 { 3 } else { 2 };
        let configs = regions
            .iter()
            .map(|r| {
                let mut builder = aws_sdk_sts::config::Builder::from(&sdk)
                    .region(Region::new(r.name.clone()))
                    .retry_config(RetryConfig::standard().with_max_attempts(attempts))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(timeout)
                            .operation_attempt_timeout(timeout / 2)
                            .connect_timeout(Duration::from_secs(3).min(timeout / 2))
                            .build(),
                    );
                if let Some(url) = &r.endpoint_url {
                    builder = builder.endpoint_url(url.as_str().trim_end_matches('/'));
                }
                if let Some(c) = credentials {
                    builder = builder.credentials_provider(Credentials::new(
                        c.access_key_id.clone(),
                        c.secret_access_key.expose_secret().to_owned(),
                        c.session_token
                            .as_ref()
                            .map(|t| t.expose_secret().to_owned()),
                        None,
                        "rolegate-static",
                    ));
                }
                builder.build()
            })
            .collect();
        let web_identity = match &config.web_identity {
            Some(w) => Some(WebIdentitySigner::new(w, &config.server.public_url)?),
            None => None,
        };
        Ok(Self {
            clients: regions::PerThreadClients::new(configs),
            regions: regions.iter().map(|r| r.name.clone()).collect(),
            breakers: regions
                .iter()
                .map(|_| regions::Breaker::default())
                .collect(),
            retry_after: config.aws.sts_region_retry_after,
            web_identity,
            caller: AtomicU8::new(CALLER_UNKNOWN),
        })
    }

    /// The regions calls go to, in order of preference.
    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    pub fn web_identity(&self) -> Option<&WebIdentitySigner> {
        self.web_identity.as_ref()
    }

    /// Finds out whether the broker's own credentials are a role session; AWS then caps
    /// sessions at 1 h and refuses console `SessionDuration`. Logged loudly once.
    pub async fn check_caller(&self) -> Option<bool> {
        match self.clients.get(0).get_caller_identity().send().await {
            Ok(out) => {
                let arn = out.arn().unwrap_or_default();
                let chained = arn.contains(":assumed-role/");
                self.caller.store(
                    if chained {
                        CALLER_ROLE_SESSION
                    } else {
                        CALLER_PLAIN
                    },
                    Ordering::Relaxed,
                );
                if chained {
                    tracing::warn!(
                        caller = arn,
                        "the broker's AWS credentials are a role session: assume_role sessions are capped at 1h (role chaining) and console SessionDuration is not sent; consider sts_mode = \"web_identity\""
                    );
                } else {
                    tracing::info!(caller = arn, "broker AWS identity");
                }
                Some(chained)
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "cannot determine the broker's AWS identity (GetCallerIdentity)");
                None
            }
        }
    }

    /// Makes the STS call the access core decided on, in the first region that answers
    /// ([`regions::in_order`]): the region used, and the answer. Only `access::issuer`
    /// calls this, after authorizing the grant and before writing the audit record.
    pub async fn call(
        &self,
        r: &StsRequest<'_>,
    ) -> (String, Vec<String>, Result<IssuedCredentials, IssueError>) {
        let breakers: Vec<&regions::Breaker> = self.breakers.iter().collect();
        let outcome = regions::in_order(&breakers, self.retry_after, IssueError::fails_over, |i| {
            self.call_in(i, r)
        })
        .await;
        for (i, opened) in &outcome.failed {
            if *opened {
                tracing::warn!(
                    region = %self.regions[*i],
                    retry_in_s = self.retry_after.as_secs(),
                    "STS failed in this region: calls go to the next region until it is tried again"
                );
            }
        }
        let region = self.regions[outcome.region].clone();
        if let Err(e) = &outcome.result
            && e.fails_over()
            && self.regions.len() > 1
        {
            tracing::warn!(error = %e, "STS failed in every region");
        }
        let failed_over = outcome
            .failed
            .iter()
            .map(|(i, _)| self.regions[*i].clone())
            .collect();
        (
            region.clone(),
            failed_over,
            outcome.result.map(|mut c| {
                c.region = region;
                c
            }),
        )
    }

    /// The call in region `i`.
    async fn call_in(&self, i: usize, r: &StsRequest<'_>) -> Result<IssuedCredentials, IssueError> {
        let sts = self.clients.get(i);
        let requested = r.duration;
        let tags = r
            .tags
            .tags()
            .iter()
            .map(|t| {
                aws_sdk_sts::types::Tag::builder()
                    .key(t.key())
                    .value(t.value())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IssueError::Refused {
                code: e.to_string(),
                sts_request_id: None,
            })?;
        let policy = r.policy.map(|p| p.json().to_owned());

        match r.mode {
            StsMode::AssumeRole => {
                let chained = match self.caller.load(Ordering::Relaxed) {
                    CALLER_UNKNOWN => self.check_caller().await.unwrap_or(true),
                    c => c == CALLER_ROLE_SESSION,
                };
                let duration = if chained {
                    SessionDuration::from_secs(requested.as_secs().min(ROLE_CHAINING_MAX))
                        .unwrap_or(requested)
                } else {
                    requested
                };
                let mut call = sts
                    .assume_role()
                    .role_arn(r.role_arn.as_str())
                    .role_session_name(r.session_name.as_str())
                    .duration_seconds(duration.as_secs() as i32)
                    .set_source_identity(r.source_identity.map(|s| s.as_str().to_owned()))
                    .set_policy(policy);
                if !tags.is_empty() {
                    call = call
                        .set_tags(Some(tags))
                        .set_transitive_tag_keys(Some(r.tags.transitive_keys().to_vec()));
                }
                let out = call
                    .send()
                    .await
                    .map_err(|e| self.classify(e, r, requested, i))?;
                let request_id = out.request_id().map(str::to_owned);
                credentials(
                    out.credentials(),
                    out.assumed_role_user().map(|u| u.arn()),
                    request_id,
                    duration,
                    !chained,
                )
            }
            StsMode::WebIdentity => {
                let signer = self
                    .web_identity
                    .as_ref()
                    .ok_or(IssueError::WebIdentityNotConfigured)?;
                let token = signer
                    .mint(&web_identity::TokenClaims {
                        subject: r.web_identity_subject,
                        tags: r.tags,
                        source_identity: r.source_identity,
                    })
                    .map_err(|e| {
                        tracing::error!(error = %e, "web identity token signing failed");
                        IssueError::Signing
                    })?;
                let out = sts
                    .assume_role_with_web_identity()
                    .role_arn(r.role_arn.as_str())
                    .role_session_name(r.session_name.as_str())
                    .web_identity_token(token)
                    .duration_seconds(requested.as_secs() as i32)
                    .set_policy(policy)
                    .send()
                    .await
                    .map_err(|e| self.classify(e, r, requested, i))?;
                let request_id = out.request_id().map(str::to_owned);
                credentials(
                    out.credentials(),
                    out.assumed_role_user().map(|u| u.arn()),
                    request_id,
                    requested,
                    true,
                )
            }
        }
    }

    fn classify<E>(
        &self,
        e: SdkError<E, HttpResponse>,
        r: &StsRequest<'_>,
        requested: SessionDuration,
        region: usize,
    ) -> IssueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        tracing::debug!(error = %crate::telemetry::error_chain(&e), "STS error");
        let sts_request_id = match &e {
            SdkError::ServiceError(s) => s.err().meta().request_id().map(str::to_owned),
            _ => None,
        };
        let SdkError::ServiceError(service) = &e else {
            if matches!(e, SdkError::ConstructionFailure(_))
                && crate::telemetry::error_chain(&e).contains("credentials")
            {
                return IssueError::BrokerCredentialsMissing;
            }
            let text = crate::telemetry::error_chain(&e);
            if text.contains("no credentials")
                || text.contains("credentials provider")
                || text.contains("CredentialsNotLoaded")
            {
                return IssueError::BrokerCredentialsMissing;
            }
            return IssueError::Unreachable;
        };
        let code = service
            .err()
            .code()
            .map(str::to_owned)
            .or_else(|| service.raw().body().bytes().and_then(error_code_from_body))
            .unwrap_or_else(|| "Unknown".into());
        let message = service.err().message().unwrap_or_default().to_owned();
        match code.as_str() {
            "AccessDenied" | "AccessDeniedException" => IssueError::AccessDenied {
                role: r.role_arn.to_string(),
                sts_request_id,
            },
            "ValidationError"
                if message.contains("DurationSeconds")
                    || message.contains("MaxSessionDuration") =>
            {
                IssueError::DurationTooLong {
                    role: r.role.to_string(),
                    requested,
                    sts_request_id,
                }
            }
            "PackedPolicyTooLarge" | "PackedPolicyTooLargeException" => {
                IssueError::PackedPolicyTooLarge {
                    detail: format!(
                        "{} session tag(s){}",
                        r.tags.tags().len(),
                        if r.policy.is_some() {
                            " and a session policy"
                        } else {
                            ""
                        }
                    ),
                    sts_request_id,
                }
            }
            "RegionDisabledException" | "RegionDisabled" => IssueError::RegionDisabled {
                region: self.regions[region].clone(),
                sts_request_id,
            },
            "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => IssueError::BrokerCredentialsInvalid { sts_request_id },
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                IssueError::Throttled { sts_request_id }
            }
            _ if service.raw().status().is_server_error() => IssueError::ServerError {
                status: service.raw().status().as_u16(),
                code,
                sts_request_id,
            },
            _ => IssueError::Refused {
                code,
                sts_request_id,
            },
        }
    }
}

/// The `<Code>` of an STS error body, for emulators whose error XML the SDK does not
/// parse (moto nests `<Error>` in `<Errors>`; real STS does not). A search for one
/// element, not an XML parse; the result must look like an AWS error code.
fn error_code_from_body(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    (!code.is_empty()
        && code.len() <= 64
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    .then(|| code.to_owned())
}

fn credentials(
    c: Option<&aws_sdk_sts::types::Credentials>,
    arn: Option<&str>,
    sts_request_id: Option<String>,
    duration: SessionDuration,
    console_duration_allowed: bool,
) -> Result<IssuedCredentials, IssueError> {
    let c = c.ok_or_else(|| IssueError::Refused {
        code: "NoCredentialsInResponse".into(),
        sts_request_id: sts_request_id.clone(),
    })?;
    Ok(IssuedCredentials {
        credentials: TemporaryCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: SecretString::from(c.secret_access_key().to_owned()),
            session_token: SecretString::from(c.session_token().to_owned()),
            expiration: SystemTime::try_from(*c.expiration())
                .unwrap_or_else(|_| SystemTime::now() + duration.as_duration()),
        },
        assumed_role_arn: arn.unwrap_or_default().to_owned(),
        sts_request_id,
        duration,
        console_duration_allowed,
        region: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::error_code_from_body;

    #[test]
    fn error_codes_are_read_from_nested_error_bodies_only_when_well_formed() {
        let moto = b"<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>no</Message></Error></Errors></ErrorResponse>";
        assert_eq!(error_code_from_body(moto).as_deref(), Some("AccessDenied"));
        assert_eq!(error_code_from_body(b"<Code>bad code<x></Code>"), None);
        assert_eq!(error_code_from_body(b"not xml"), None);
    }
}
