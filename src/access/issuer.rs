//! The one audited path to AWS credentials, and the console sign-in built on it.
//!
//! [`CredentialIssuer::issue`] takes an [`AuthorizedGrant`] (only `grant` can build one),
//! calls STS through the `sts` adapter, and releases the credentials only as an
//! [`Audited`] value, after their record was written: if it cannot be written, the
//! credentials are dropped and the caller gets [`IssueFailure::AuditUnavailable`].
//! Refusals decided before STS is called are audited here too
//! ([`CredentialIssuer::audit_refusal`]).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use url::Url;

use super::admin::AdminCore;
use super::grant::{AuthorizedGrant, Refusal};
use super::locks::Principal;
use super::session::person_of;
use super::{Access, RequestContext, Requester};
use crate::audit::{Audited, Event, IssuanceFacts, Outcome};
use crate::config::StsMode;
use crate::domain::SourceIdentity;
use crate::idp::VerifiedIdentity;
use crate::metrics::{IssuanceLabels, Metrics, ModeLabels};
use crate::sts::console::{ConsoleError, ConsoleSignIn};
use crate::sts::web_identity::WebIdentitySigner;
use crate::sts::{IssueError, IssuedCredentials, Sts, StsRequest};

/// Why a request ended without credentials (or without a console sign-in).
#[derive(Debug, thiserror::Error)]
pub enum IssueFailure {
    /// Refused by the rules or the duration check; nothing was sent to AWS.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// AWS (or the way to it) did not issue credentials.
    #[error(transparent)]
    Sts(#[from] IssueError),
    #[error("the audit log cannot be written, so no credentials are issued")]
    AuditUnavailable,
    /// Recall is on and the issuance could not be noted for it: nothing was sent to AWS.
    #[error("the state store is unavailable, so no credentials are issued")]
    StoreUnavailable,
    /// Credentials were issued, but the federation endpoint refused the console sign-in.
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

pub(super) struct CredentialIssuer {
    sts: Sts,
    console: ConsoleSignIn,
    /// The audit log, through the core's auditor (records also go to the person's history).
    audit: Arc<AdminCore>,
    metrics: Arc<Metrics>,
}

impl CredentialIssuer {
    pub(super) fn new(
        sts: Sts,
        console: ConsoleSignIn,
        audit: Arc<AdminCore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sts,
            console,
            audit,
            metrics,
        }
    }

    pub(super) fn web_identity(&self) -> Option<&WebIdentitySigner> {
        self.sts.web_identity()
    }

    pub(super) fn federation_origin(&self) -> String {
        self.console.federation_origin()
    }

    pub(super) async fn check_caller(&self) -> Option<bool> {
        self.sts.check_caller().await
    }

    fn count(&self, role: &str, mode: StsMode, requester: &Requester, outcome: &str) {
        self.metrics
            .issuances
            .get_or_create(&IssuanceLabels {
                role: role.to_owned(),
                mode: mode.as_str().into(),
                path: requester.path.as_str().into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Audits a request refused before STS (see `grant`). The refusal stands whether
    /// or not the record could be written; a failed write is logged.
    pub(super) fn audit_refusal(
        &self,
        identity: &VerifiedIdentity,
        role: &str,
        requester: &Requester,
        refusal: &Refusal,
        ctx: &RequestContext,
    ) {
        let c = identity.claims();
        let role: String = role.chars().take(64).collect();
        let path = requester.path;
        tracing::warn!(role = %role, path = path.as_str(), reason = refusal.kind(), "credential request refused: {refusal}");
        let event = Event::IssuanceRefused {
            person: person_of(identity),
            display_name: c.username.clone(),
            role: role.clone(),
            client: requester.audit(),
            outcome: Outcome::Refused,
            reason: format!("{}: {refusal}", refusal.kind()),
        };
        if let Err(e) = self.audit.record(ctx, &event) {
            tracing::error!(error = %e, "audit log write failed for a refused request");
        }
        self.metrics
            .issuances
            .get_or_create(&IssuanceLabels {
                // Unknown role ids come from the request: keep them out of label values.
                role: if matches!(refusal, Refusal::UnknownRole(_)) {
                    "unknown".into()
                } else {
                    role
                },
                // No STS call was made.
                mode: "none".into(),
                path: path.as_str().into(),
                outcome: "refused".into(),
            })
            .inc();
    }

    /// Issues credentials for an authorized grant. See the module invariant.
    pub(super) async fn issue(
        &self,
        authorized: AuthorizedGrant,
        ctx: &RequestContext,
    ) -> Result<Audited<IssuedCredentials>, IssueFailure> {
        let (role, grant, requester) = (
            authorized.role(),
            authorized.grant(),
            authorized.requester(),
        );
        let identity = authorized.identity().claims();
        let mode = role.sts_mode;
        let subject = format!("{}:{}", identity.idp, identity.subject);
        // With recall on, every credential names its person (`SourceIdentity`): the rule's
        // value, else the user name, else the person's tag.
        let recall = self.audit.recalls_on();
        let source_identity = grant.source_identity.clone().or_else(|| {
            recall.then(|| {
                SourceIdentity::parse(&identity.username).unwrap_or_else(|_| {
                    let tag = crate::store::PersonTag::of(identity.idp.as_str(), &identity.subject);
                    SourceIdentity::parse(&format!("rg-{tag}"))
                        .expect("hex is a valid source identity")
                })
            })
        });
        let request = StsRequest {
            role: &role.id,
            role_arn: &grant.arn,
            mode,
            session_name: &grant.session_name,
            duration: authorized.duration(),
            source_identity: source_identity.as_ref(),
            tags: &grant.tags,
            policy: grant.session_policy.as_ref(),
            web_identity_subject: &subject,
        };
        let facts = |duration: u32| IssuanceFacts {
            role: role.id.to_string(),
            role_arn: grant.arn.to_string(),
            session_name: grant.session_name.to_string(),
            duration_seconds: duration,
            sts_mode: mode.as_str(),
        };
        // The attempt is audited before STS is called: once the call leaves, AWS may mint
        // credentials even if this process dies or is drained before the answer, and
        // such credentials must still have a record. No record, no call.
        let attempt_id = super::session::random_token()[..22].to_owned();
        let attempt = Event::IssuanceAttempt {
            attempt_id: attempt_id.clone(),
            person: person_of(authorized.identity()),
            issued: facts(authorized.duration().as_secs()),
            client: requester.audit(),
        };
        if let Err(e) = self.audit.record(ctx, &attempt) {
            tracing::error!(error = %e, "audit write failed; not calling STS");
            self.count(role.id.as_str(), mode, requester, "failure");
            return Err(IssueFailure::AuditUnavailable);
        }
        if let (true, Some(si)) = (recall, &source_identity) {
            // No note, no call: credentials rolegate could not recall are not issued.
            let expires =
                crate::store::now_unix() + u64::from(authorized.duration().as_secs()) + 60;
            if let Err(e) = self
                .audit
                .note_issuance(identity, &grant.arn, si.as_str(), expires)
                .await
            {
                tracing::error!(error = %e, "cannot note the issuance for recall; not calling STS");
                self.count(role.id.as_str(), mode, requester, "failure");
                return Err(IssueFailure::StoreUnavailable);
            }
        }
        let started = Instant::now();
        let (sts_region, failed_over, result) = self.sts.call(&request).await;
        for region in failed_over {
            self.metrics
                .sts_regions
                .get_or_create(&crate::metrics::StsRegionLabels {
                    region,
                    outcome: "failed_over".into(),
                })
                .inc();
        }
        self.metrics
            .sts_regions
            .get_or_create(&crate::metrics::StsRegionLabels {
                region: sts_region.clone(),
                outcome: match &result {
                    Ok(_) => "success",
                    Err(e) if e.fails_over() => "failed",
                    Err(_) => "refused",
                }
                .into(),
            })
            .inc();
        self.metrics
            .sts_latency
            .get_or_create(&ModeLabels {
                mode: mode.as_str().into(),
            })
            .observe(started.elapsed().as_secs_f64());
        let (outcome, reason, sts_request_id, duration) = match &result {
            Ok(c) => (
                Outcome::Success,
                String::new(),
                c.sts_request_id.clone(),
                c.duration,
            ),
            Err(e) => (
                Outcome::Failure,
                format!("{}: {e}", e.kind()),
                e.sts_request_id().map(str::to_owned),
                authorized.duration(),
            ),
        };
        let event = Event::Issuance {
            attempt_id,
            person: person_of(authorized.identity()),
            display_name: identity.username.clone(),
            rules: grant.rules.iter().map(|x| x.as_str().to_owned()).collect(),
            issued: facts(duration.as_secs()),
            source_identity: source_identity.as_ref().map(|s| s.as_str().to_owned()),
            tags: grant
                .tags
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), json!(t.value())))
                .collect(),
            transitive_tag_keys: grant
                .tags
                .transitive_keys()
                .iter()
                .map(|k| k.to_string())
                .collect(),
            session_policy: grant
                .session_policy
                .as_ref()
                .map(|p| p.file().display().to_string()),
            client: requester.audit(),
            outcome,
            reason,
            sts_request_id,
            sts_region,
        };
        let released = self.audit.release(ctx, &event, result);
        let counted = match &released {
            Ok(r) if r.get().is_ok() => "success",
            _ => "failure",
        };
        self.count(role.id.as_str(), mode, requester, counted);
        let released = match released {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "audit write failed; discarding issued credentials");
                return Err(IssueFailure::AuditUnavailable);
            }
        };
        let path = requester.path;
        match released.get() {
            Ok(c) => {
                tracing::info!(role = %role.id, mode = mode.as_str(), path = path.as_str(), sts_request_id = ?c.sts_request_id, evaluated_ms = authorized.age().as_millis() as u64, "credentials issued")
            }
            Err(e) => {
                tracing::warn!(role = %role.id, mode = mode.as_str(), path = path.as_str(), error = %e, sts_request_id = ?e.sts_request_id(), "credential issuance failed")
            }
        }
        Ok(released.try_map(|r| r)?)
    }
}

impl Access {
    /// Issues credentials for one role: authorizes (rules evaluated now, duration
    /// checked, refusals audited), then the audited STS call.
    pub async fn issue_credentials(
        &self,
        identity: &Principal,
        role: &str,
        requested_duration: Option<&str>,
        requester: &Requester,
        ctx: &RequestContext,
    ) -> Result<Audited<IssuedCredentials>, IssueFailure> {
        let authorized = self.authorize(identity, role, requested_duration, requester, ctx)?;
        self.issuer.issue(authorized, ctx).await
    }

    /// As [`Access::issue_credentials`] for a role named with its account (the AWS SSO
    /// API's `role_name` + `account_id`): a role of another account is an unknown role
    /// (refused and audited).
    pub async fn issue_credentials_in_account(
        &self,
        identity: &Principal,
        role: &str,
        account_number: &str,
        requester: &Requester,
        ctx: &RequestContext,
    ) -> Result<Audited<IssuedCredentials>, IssueFailure> {
        let in_account = self.config.role(role).is_some_and(|r| {
            self.config
                .account(&r.account)
                .is_some_and(|a| a.number.as_str() == account_number)
        });
        if !in_account {
            let refusal = Refusal::UnknownRole(format!(
                "{}/{}",
                account_number.chars().take(12).collect::<String>(),
                role.chars().take(64).collect::<String>()
            ));
            self.issuer
                .audit_refusal(identity.identity(), role, requester, &refusal, ctx);
            return Err(IssueFailure::Refused(refusal));
        }
        self.issue_credentials(identity, role, None, requester, ctx)
            .await
    }

    /// Where a console sign-in for `role` lands: the role's configured destination, or
    /// what was asked if the console's one rule allows it
    /// ([`crate::domain::ConsoleSite::destination`]); a refusal is a bad request.
    pub fn console_landing(&self, role: &str, ask: &ConsoleAsk<'_>) -> Result<Url, Refusal> {
        let site = &self.config.aws.console;
        let landed = match ask {
            ConsoleAsk::RoleDefault => {
                return Ok(self
                    .config
                    .role(role)
                    .map_or_else(|| site.home().clone(), |r| r.console_destination.clone()));
            }
            ConsoleAsk::Destination(d) => site.destination(d),
            ConsoleAsk::Service { service, region } => {
                site.service(service, region.unwrap_or(&self.config.aws.region))
            }
        };
        landed.map_err(|e| Refusal::ConsoleDestination(e.to_string()))
    }

    /// A console sign-in for one role: checks the destination asked for (refused and
    /// audited before anything is issued), issues credentials as
    /// [`Access::issue_credentials`] does (for the requested duration, default the grant's
    /// maximum), then trades them at the federation endpoint for a sign-in URL.
    pub async fn console_sign_in(
        &self,
        identity: &Principal,
        role: &str,
        requested_duration: Option<&str>,
        ask: &ConsoleAsk<'_>,
        requester: &Requester,
        ctx: &RequestContext,
    ) -> Result<Audited<Url>, IssueFailure> {
        let destination = match self.console_landing(role, ask) {
            Ok(d) => d,
            Err(refusal) => {
                self.issuer
                    .audit_refusal(identity.identity(), role, requester, &refusal, ctx);
                return Err(IssueFailure::Refused(refusal));
            }
        };
        let authorized = self.authorize(identity, role, requested_duration, requester, ctx)?;
        let max = authorized.grant().max_duration;
        let creds = self.issuer.issue(authorized, ctx).await?;
        let url = self
            .issuer
            .console
            .signin_url(creds.get(), &destination, max)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "console sign-in failed");
                IssueFailure::Console(e)
            })?;
        Ok(creds.map(|_| url))
    }

    /// The display details of a role (for pages that show what was issued).
    pub fn role_details(&self, role: &str) -> Option<RoleDetails<'_>> {
        let r = self.config.role(role)?;
        let account = self.config.account(&r.account);
        Some(RoleDetails {
            id: r.id.as_str(),
            display_name: &r.display_name,
            account_name: account.map(|a| self.account_name(a)).unwrap_or_default(),
            account_number: account.map(|a| a.number.as_str()).unwrap_or(""),
        })
    }
}

/// Where a console sign-in should land, as the request asked.
#[derive(Debug, Clone, Copy)]
pub enum ConsoleAsk<'a> {
    /// The role's `console_destination` (the console's home by default).
    RoleDefault,
    /// A console URL or a path on the console.
    Destination(&'a str),
    /// A service's page (`s3`, `ec2`, …) in a region (default: `[aws] region`).
    Service {
        service: &'a str,
        region: Option<&'a str>,
    },
}

impl<'a> ConsoleAsk<'a> {
    /// From a request's optional fields: a destination wins; empty fields are absent.
    pub fn from_fields(
        destination: Option<&'a str>,
        service: Option<&'a str>,
        region: Option<&'a str>,
    ) -> Self {
        let present = |v: Option<&'a str>| v.map(str::trim).filter(|v| !v.is_empty());
        match (present(destination), present(service)) {
            (Some(d), _) => Self::Destination(d),
            (None, Some(service)) => Self::Service {
                service,
                region: present(region),
            },
            (None, None) => Self::RoleDefault,
        }
    }
}

/// A role's names, for showing issued credentials.
pub struct RoleDetails<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    pub account_name: String,
    pub account_number: &'a str,
}
