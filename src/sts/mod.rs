//! Credential issuance: the only code that calls AWS STS.
//!
//! **Invariant:** every STS call goes through [`CredentialIssuer::issue`], and no
//! credentials leave it before their audit record (success or failure) is written; if the
//! audit log cannot be written, the credentials are dropped and the caller gets an error.
//! Only this module knows `aws_sdk_sts` types.
//!
//! Two ways to get credentials, chosen per role: `assume_role` (the broker's own AWS
//! credentials from the SDK's default chain, `AssumeRole`) and `web_identity` (the broker
//! signs a JWT as an OIDC issuer AWS trusts, `AssumeRoleWithWebIdentity`). The SDK retries
//! throttling and 5xx with backoff within `aws.sts_timeout`; access errors are not retried.

pub mod console;
pub mod keys;
pub mod web_identity;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::RequestId;
use secrecy::SecretString;
use serde_json::json;

pub use keys::{KeyAlgorithm, SigningKey, generate_pem};
pub use web_identity::WebIdentitySigner;

use crate::audit::{AuditLog, RequestContext};
use crate::config::{Config, Role, StsMode};
use crate::domain::SessionDuration;
use crate::idp::VerifiedIdentity;
use crate::mapping::Grant;
use crate::metrics::{IssuanceLabels, Metrics, ModeLabels};

/// AWS caps sessions obtained by role chaining at one hour.
const ROLE_CHAINING_MAX: u32 = 3600;

/// Which client asked, for the audit record and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPath {
    WebConsole,
    WebCli,
    Cli,
    Mobile,
}

impl ClientPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebConsole => "web_console",
            Self::WebCli => "web_cli",
            Self::Cli => "cli",
            Self::Mobile => "mobile",
        }
    }
}

/// Temporary credentials. The secret parts are `SecretString`s: they print as
/// `[REDACTED]` and reach only the page or response that hands them to the user.
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    pub expiration: SystemTime,
    pub assumed_role_arn: String,
    pub sts_request_id: Option<String>,
    pub duration: SessionDuration,
    /// Whether AWS will accept a console `SessionDuration` for these credentials
    /// (not for credentials obtained by role chaining).
    pub console_duration_allowed: bool,
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
    #[error(
        "the requested session of {requested} is longer than role {role} allows (at most {max})"
    )]
    DurationTooLong {
        role: String,
        requested: SessionDuration,
        max: SessionDuration,
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
    #[error("AWS STS refused the request ({code})")]
    Refused {
        code: String,
        sts_request_id: Option<String>,
    },
    #[error("web_identity is not configured on this broker")]
    WebIdentityNotConfigured,
    #[error("the broker could not sign its web identity token")]
    Signing,
    #[error("the audit log cannot be written, so no credentials are issued")]
    AuditUnavailable,
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
            Self::Refused { .. } => "refused",
            Self::WebIdentityNotConfigured => "web_identity_not_configured",
            Self::Signing => "signing_failed",
            Self::AuditUnavailable => "audit_unavailable",
        }
    }

    /// Whether the failure is on the broker's or AWS's side (5xx) rather than a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable
                | Self::Throttled { .. }
                | Self::AuditUnavailable
                | Self::BrokerCredentialsMissing
        )
    }
}

/// One issuance: who, which granted role, how long, through which client.
pub struct IssueRequest<'a> {
    pub identity: &'a VerifiedIdentity,
    pub grant: &'a Grant,
    pub role: &'a Role,
    /// Requested session length; `None` means the grant's maximum.
    pub duration: Option<SessionDuration>,
    pub path: ClientPath,
    pub ctx: &'a RequestContext,
}

const CALLER_UNKNOWN: u8 = 0;
const CALLER_PLAIN: u8 = 1;
const CALLER_ROLE_SESSION: u8 = 2;

pub struct CredentialIssuer {
    sts: aws_sdk_sts::Client,
    web_identity: Option<WebIdentitySigner>,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    region: String,
    /// Whether the broker's own credentials are a role session (role chaining).
    caller: AtomicU8,
}

impl CredentialIssuer {
    /// Builds the STS client: the SDK's default credential chain (environment, shared
    /// profile, web-identity token file, container and instance metadata) unless
    /// `credentials` is given (tests), regional endpoint or the configured override,
    /// standard retries (3 attempts) within `aws.sts_timeout`.
    pub async fn new(
        config: &Config,
        credentials: Option<Credentials>,
        audit: Arc<AuditLog>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, web_identity::WebIdentityError> {
        let region = Region::new(config.aws.region.clone());
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .load()
            .await;
        let timeout = config.aws.sts_timeout;
        let mut builder = aws_sdk_sts::config::Builder::from(&sdk)
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .operation_attempt_timeout(timeout / 2)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if let Some(url) = &config.aws.sts_endpoint_url {
            builder = builder.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        if let Some(c) = credentials {
            builder = builder.credentials_provider(c);
        }
        let web_identity = match &config.web_identity {
            Some(w) => Some(WebIdentitySigner::new(w, &config.server.public_url)?),
            None => None,
        };
        Ok(Self {
            sts: aws_sdk_sts::Client::from_conf(builder.build()),
            web_identity,
            audit,
            metrics,
            region: config.aws.region.clone(),
            caller: AtomicU8::new(CALLER_UNKNOWN),
        })
    }

    pub fn web_identity(&self) -> Option<&WebIdentitySigner> {
        self.web_identity.as_ref()
    }

    /// Finds out whether the broker's own credentials are a role session; AWS then caps
    /// sessions at 1 h and refuses console `SessionDuration`. Logged loudly once.
    pub async fn check_caller(&self) -> Option<bool> {
        match self.sts.get_caller_identity().send().await {
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

    /// Issues credentials for one granted role. See the module invariant.
    pub async fn issue(&self, r: IssueRequest<'_>) -> Result<IssuedCredentials, IssueError> {
        let mode = r.role.sts_mode;
        let started = Instant::now();
        let result = self.call_sts(&r).await;
        self.metrics
            .sts_latency
            .get_or_create(&ModeLabels {
                mode: mode.as_str().into(),
            })
            .observe(started.elapsed().as_secs_f64());
        let (outcome, reason, sts_request_id, duration) = match &result {
            Ok(c) => (
                "success",
                String::new(),
                c.sts_request_id.clone(),
                Some(c.duration),
            ),
            Err(e) => (
                "failure",
                format!("{}: {e}", e.kind()),
                e.sts_request_id().map(str::to_owned),
                None,
            ),
        };
        let identity = r.identity.claims();
        let record = json!({
            "event": "issuance",
            "idp": identity.idp.as_str(),
            "subject": identity.subject,
            "display_name": identity.username,
            "rules": r.grant.rules.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            "role": r.role.id.as_str(),
            "role_arn": r.grant.arn.as_str(),
            "session_name": r.grant.session_name.as_str(),
            "source_identity": r.grant.source_identity.as_ref().map(|s| s.as_str()),
            "tags": r.grant.tags.tags().iter().map(|t| (t.key().to_owned(), json!(t.value()))).collect::<serde_json::Map<_, _>>(),
            "transitive_tag_keys": r.grant.tags.transitive_keys(),
            "session_policy": r.grant.session_policy.as_ref().map(|p| p.file().display().to_string()),
            "duration_seconds": duration.or(r.duration).unwrap_or(r.grant.max_duration).as_secs(),
            "sts_mode": mode.as_str(),
            "client_path": r.path.as_str(),
            "outcome": outcome,
            "reason": reason,
            "sts_request_id": sts_request_id,
        });
        let audited = self.audit.record(r.ctx, record);
        let outcome = match (&result, &audited) {
            (Ok(_), Err(_)) => "failure",
            _ => outcome,
        };
        self.metrics
            .issuances
            .get_or_create(&IssuanceLabels {
                role: r.role.id.to_string(),
                mode: mode.as_str().into(),
                path: r.path.as_str().into(),
                outcome: outcome.into(),
            })
            .inc();
        if let Err(e) = audited {
            tracing::error!(error = %e, "audit write failed; discarding issued credentials");
            return Err(IssueError::AuditUnavailable);
        }
        match &result {
            Ok(c) => {
                tracing::info!(role = %r.role.id, mode = mode.as_str(), path = r.path.as_str(), sts_request_id = ?c.sts_request_id, "credentials issued")
            }
            Err(e) => {
                tracing::warn!(role = %r.role.id, mode = mode.as_str(), path = r.path.as_str(), error = %e, sts_request_id = ?e.sts_request_id(), "credential issuance failed")
            }
        }
        result
    }

    async fn call_sts(&self, r: &IssueRequest<'_>) -> Result<IssuedCredentials, IssueError> {
        let grant = r.grant;
        let max = grant.max_duration;
        let requested = r.duration.unwrap_or(max);
        if requested > max {
            return Err(IssueError::DurationTooLong {
                role: r.role.id.to_string(),
                requested,
                max,
                sts_request_id: None,
            });
        }
        let tags = grant
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
        let policy = grant.session_policy.as_ref().map(|p| p.json().to_owned());

        match r.role.sts_mode {
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
                let mut call = self
                    .sts
                    .assume_role()
                    .role_arn(grant.arn.as_str())
                    .role_session_name(grant.session_name.as_str())
                    .duration_seconds(duration.as_secs() as i32)
                    .set_source_identity(
                        grant
                            .source_identity
                            .as_ref()
                            .map(|s| s.as_str().to_owned()),
                    )
                    .set_policy(policy);
                if !tags.is_empty() {
                    call = call
                        .set_tags(Some(tags))
                        .set_transitive_tag_keys(Some(grant.tags.transitive_keys().to_vec()));
                }
                let out = call
                    .send()
                    .await
                    .map_err(|e| self.classify(e, r, requested))?;
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
                let identity = r.identity.claims();
                let token = signer
                    .mint(&web_identity::TokenClaims {
                        subject: &format!("{}:{}", identity.idp, identity.subject),
                        tags: &grant.tags,
                        source_identity: grant.source_identity.as_ref(),
                    })
                    .map_err(|e| {
                        tracing::error!(error = %e, "web identity token signing failed");
                        IssueError::Signing
                    })?;
                let out = self
                    .sts
                    .assume_role_with_web_identity()
                    .role_arn(grant.arn.as_str())
                    .role_session_name(grant.session_name.as_str())
                    .web_identity_token(token)
                    .duration_seconds(requested.as_secs() as i32)
                    .set_policy(policy)
                    .send()
                    .await
                    .map_err(|e| self.classify(e, r, requested))?;
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
        r: &IssueRequest<'_>,
        requested: SessionDuration,
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
                role: r.grant.arn.to_string(),
                sts_request_id,
            },
            "ValidationError"
                if message.contains("DurationSeconds")
                    || message.contains("MaxSessionDuration") =>
            {
                IssueError::DurationTooLong {
                    role: r.role.id.to_string(),
                    requested,
                    max: r.grant.max_duration,
                    sts_request_id,
                }
            }
            "PackedPolicyTooLarge" | "PackedPolicyTooLargeException" => {
                IssueError::PackedPolicyTooLarge {
                    detail: format!(
                        "{} session tag(s){}",
                        r.grant.tags.tags().len(),
                        if r.grant.session_policy.is_some() {
                            " and a session policy"
                        } else {
                            ""
                        }
                    ),
                    sts_request_id,
                }
            }
            "RegionDisabledException" | "RegionDisabled" => IssueError::RegionDisabled {
                region: self.region.clone(),
                sts_request_id,
            },
            "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => IssueError::BrokerCredentialsInvalid { sts_request_id },
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                IssueError::Throttled { sts_request_id }
            }
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
        access_key_id: c.access_key_id().to_owned(),
        secret_access_key: SecretString::from(c.secret_access_key().to_owned()),
        session_token: SecretString::from(c.session_token().to_owned()),
        expiration: SystemTime::try_from(*c.expiration())
            .unwrap_or_else(|_| SystemTime::now() + duration.as_duration()),
        assumed_role_arn: arn.unwrap_or_default().to_owned(),
        sts_request_id,
        duration,
        console_duration_allowed,
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
