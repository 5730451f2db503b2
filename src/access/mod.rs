//! The access core: the use cases every client calls, from a sign-in to AWS credentials.
//!
//! The browser pages call it today; the CLI and token exchange call the same functions.
//! Each use case takes a verified identity (or the proof a client presents) and a
//! [`RequestContext`], and returns domain values or a typed refusal: no actix, no HTTP.
//!
//! - [`login`]: starting a sign-in at an IdP and finishing it (OIDC callback, SAML ACS and
//!   finish), with the single-use flow state and the shared sign-in tail.
//! - [`session`]: browser sessions (server-side records) and the sign-in tail (audit, old
//!   session removed, new session) that every sign-in ends with.
//! - [`grant`]: the role menu, and authorization: the mapping evaluated at the moment of
//!   each request, the requested duration checked against the grant.
//! - [`issuer`]: the one audited path to STS and the console sign-in.
//!
//! **Invariant: every path to AWS credentials goes through the access core, which
//! evaluates the mapping at issue time.** The issuer accepts only an
//! [`grant::AuthorizedGrant`], which only [`grant`] can build, right after evaluating the
//! rules; nothing cached in a session or token is trusted as a grant. The layer check
//! (`tests/it/layers.rs`) keeps `web` from importing `sts`, `store` or `idp`, so a handler
//! cannot reach STS, state or a login protocol except through this module.
//!
//! **Invariant:** every refusal (role not granted or denied, duration too long) and every
//! issuance is audited; credentials whose audit record cannot be written are dropped.

pub mod accounts;
pub mod admin;
pub mod administrators;
pub mod elevation;
pub mod grant;
pub mod holdings;
pub mod issuer;
pub mod locks;
pub mod login;
pub mod oauth;
mod people;
pub mod provisioning;
pub mod recall;
mod revalidate;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

pub use crate::audit::{Audited, RequestContext};
pub use crate::sts::console::ConsoleError;
pub use crate::sts::{IssueError, IssuedCredentials, StaticAwsCredentials};
pub use grant::{AccountRoles, MenuRole, Refusal, RoleMenu};
pub use locks::{Locked, Principal};
pub use login::{LoginRedirect, SignInError, SignedIn};
pub use session::{Session, SessionError, tokens_match};

use crate::audit::{AuditError, AuditLog, Event};
use crate::config::{Config, IdpProtocol, StsMode};
use crate::idp::oidc::OidcProvider;
use crate::idp::saml::SamlProvider;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::sts::console::ConsoleSignIn;
use crate::sts::web_identity::WebIdentityError;
use admin::AdminCore;

/// Which client asked, for the audit record and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPath {
    /// The role picker's "Console".
    WebConsole,
    /// The role picker's "CLI credentials" page.
    WebCli,
    /// The rolegate CLI (a `[cli]` client).
    Cli,
    /// An AWS SDK or the AWS CLI through the SSO OIDC and portal APIs (a client
    /// registered with `RegisterClient`).
    Sdk,
    /// A mobile or single-page app (token exchange, or its broker access token).
    Mobile,
}

impl ClientPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebConsole => "web_console",
            Self::WebCli => "web_cli",
            Self::Cli => "cli",
            Self::Sdk => "sdk",
            Self::Mobile => "mobile",
        }
    }
}

/// Who asked for a credential: the client path, and which OAuth client or app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub path: ClientPath,
    pub client_id: Option<String>,
    /// The app, for `Mobile`.
    pub app: Option<String>,
}

impl Requester {
    /// The browser (role picker actions).
    pub fn web(path: ClientPath) -> Self {
        Self {
            path,
            client_id: None,
            app: None,
        }
    }

    pub(crate) fn audit(&self) -> crate::audit::Client {
        crate::audit::Client {
            client_path: self.path.as_str(),
            client_id: self.client_id.clone(),
            app: self.app.clone(),
        }
    }
}

/// Why the access core could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    WebIdentity(#[from] WebIdentityError),
}

/// What keeps a broker from serving, for `/readyz`.
pub struct Readiness {
    /// `None` when the store answered, else why not.
    pub store_problem: Option<String>,
    pub store_backend: &'static str,
    /// IdPs whose discovery or metadata has not loaded (they cannot sign anyone in).
    pub idps_unavailable: Vec<String>,
}

/// The access core: configuration, state, the issuer and the IdPs, shared by every
/// client and every worker.
pub struct Access {
    config: Arc<Config>,
    store: Store,
    metrics: Arc<Metrics>,
    issuer: issuer::CredentialIssuer,
    oidc: Vec<Arc<OidcProvider>>,
    saml: Vec<Arc<SamlProvider>>,
    /// When this instance last wrote each item's "last used" to the index.
    touches: holdings::Touches,
    /// This instance's copy of the locks.
    locks: locks::LockCache,
    /// Seals the IdPs' refresh tokens kept for re-validation.
    sealer: Option<revalidate::Sealer>,
    /// The audit log (with each person's recent history), the directory, revocation
    /// and locks.
    admin: Arc<AdminCore>,
    /// When the gauges of live access were last computed.
    census_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Accounts' names (configured, else from AWS Organizations).
    account_names: Arc<accounts::AccountNames>,
}

impl Access {
    /// Builds the core and starts the background work it needs: IdP discovery and
    /// metadata refresh, and the check whether the broker's AWS credentials are a role
    /// session. Must run inside a tokio runtime.
    pub async fn build(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        aws_credentials: Option<StaticAwsCredentials>,
    ) -> Result<Arc<Self>, BuildError> {
        let store = Store::from_config(&config.session)?;
        let audit = Arc::new(match &config.audit.file {
            Some(path) => AuditLog::file(path)?,
            None => AuditLog::stdout(),
        });
        let sts = crate::sts::Sts::new(&config, aws_credentials.as_ref()).await?;
        let console = ConsoleSignIn::new(
            config.aws.federation_url.clone(),
            &config.server.public_url,
            config.aws.console_session_duration,
        );
        let iam = if config.aws.recall_issued {
            Some(Arc::new(
                crate::sts::recall::Iam::new(&config, aws_credentials.as_ref()).await,
            ))
        } else {
            None
        };
        let admin = Arc::new(AdminCore::new(
            config.clone(),
            store.clone(),
            audit,
            metrics.clone(),
            iam,
        ));
        if config.aws.recall_issued {
            tokio::spawn(recall::run(admin.clone(), config.aws.recall_sweep_interval));
        }
        let issuer = issuer::CredentialIssuer::new(sts, console, admin.clone(), metrics.clone());
        let account_names = Arc::new(accounts::AccountNames::default());
        if let crate::config::AccountNames::Organizations { refresh } = config.aws.account_names {
            let org =
                crate::sts::organizations::Organizations::new(&config, aws_credentials.as_ref())
                    .await;
            tokio::spawn(account_names.clone().run(org, refresh));
        }
        let oidc: Vec<Arc<OidcProvider>> = config
            .idps
            .iter()
            .filter_map(|i| match &i.protocol {
                IdpProtocol::Oidc(o) => Some(Arc::new(OidcProvider::new(
                    i.clone(),
                    o.clone(),
                    &config.server.public_url,
                ))),
                IdpProtocol::Saml(_) => None,
            })
            .collect();
        let saml: Vec<Arc<SamlProvider>> = config
            .idps
            .iter()
            .filter_map(|i| match &i.protocol {
                IdpProtocol::Saml(s) => Some(Arc::new(SamlProvider::new(
                    i.clone(),
                    s.clone(),
                    &config.server.public_url,
                ))),
                IdpProtocol::Oidc(_) => None,
            })
            .collect();
        // Discovery and metadata run in the background: the broker serves while an IdP is down.
        for p in &oidc {
            tokio::spawn(p.clone().discover_until_ready());
        }
        for p in &saml {
            tokio::spawn(p.clone().run_metadata());
        }
        let sealer = config
            .session
            .encryption_key
            .as_ref()
            .map(revalidate::Sealer::new);
        let access = Arc::new(Self {
            config,
            store,
            metrics,
            issuer,
            oidc,
            saml,
            touches: holdings::Touches::default(),
            locks: locks::LockCache::new(),
            sealer,
            admin,
            census_at: std::sync::Mutex::new(None),
            account_names,
        });
        if access.config.rules.has_eligible() {
            // Elevations end on time (with their record and notice) on every instance.
            let a = access.clone();
            tokio::spawn(async move {
                let ctx = RequestContext {
                    request_id: "elevation-worker".into(),
                    ..RequestContext::default()
                };
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    if let Err(e) = a.admin.end_due_elevations(&ctx).await {
                        tracing::debug!(error = %e, "ending due elevations: the state store is unavailable");
                    }
                }
            });
        }

        if access
            .config
            .roles
            .iter()
            .any(|r| r.sts_mode == StsMode::AssumeRole)
        {
            // Role-chaining detection; issuance re-checks if this has not finished.
            let a = access.clone();
            tokio::spawn(async move { a.issuer.check_caller().await });
        }
        Ok(access)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The name people see for `account` (see [`accounts`]).
    pub fn account_name(&self, account: &crate::config::Account) -> String {
        self.account_names.name_of(account)
    }

    /// Writes an audit record (refusals, and events that release nothing).
    pub(crate) fn record(&self, ctx: &RequestContext, event: &Event) -> Result<(), AuditError> {
        self.admin.record(ctx, event)
    }

    /// Writes the audit record of `value` and releases it (see [`Audited`]).
    pub(crate) fn release<T>(
        &self,
        ctx: &RequestContext,
        event: &Event,
        value: T,
    ) -> Result<Audited<T>, AuditError> {
        self.admin.release(ctx, event, value)
    }

    /// Administration: the directory, a person's view, revocation and locks.
    pub fn admin(&self) -> &AdminCore {
        &self.admin
    }

    /// Brings the gauges of live access and locks up to date for a scrape (from the index,
    /// at most every 5 s; a store that cannot be read leaves them as they were).
    pub async fn refresh_gauges(&self) {
        {
            let last = self.census_at.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
        }
        match self.admin.census().await {
            Ok(()) => {
                *self.census_at.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now());
            }
            Err(e) => tracing::debug!(error = %e, "census of live access skipped"),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The OIDC callback paths to route (one per distinct `redirect_path`).
    pub fn oidc_callback_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .oidc
            .iter()
            .map(|p| p.redirect_path().to_owned())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Whether `idp` is a configured SAML IdP (which has SP endpoints).
    pub fn is_saml_idp(&self, idp: &str) -> bool {
        self.saml.iter().any(|p| p.idp.id.as_str() == idp)
    }

    /// The SP metadata of a SAML IdP, for its administrator to import.
    pub fn saml_sp_metadata(&self, idp: &str) -> Option<Result<String, String>> {
        let p = self.saml.iter().find(|p| p.idp.id.as_str() == idp)?;
        Some(p.sp_metadata().map_err(|e| e.to_string()))
    }

    /// The IdP's end-session URL for a person signed in through `idp`, when it has one.
    pub fn idp_logout_url(&self, idp: &str) -> Option<String> {
        self.oidc
            .iter()
            .find(|p| p.idp.id.as_str() == idp)
            .and_then(|p| p.end_session_url())
            .map(|u| u.to_string())
    }

    /// The broker's OIDC discovery document and JWKS (web_identity mode), when configured.
    pub fn web_identity_documents(&self) -> Option<(serde_json::Value, serde_json::Value)> {
        self.issuer
            .web_identity()
            .map(|w| (w.discovery(), w.jwks()))
    }

    /// Origins a form may be redirected to: the AWS federation endpoint and the console
    /// (browsers apply CSP `form-action` to redirects too). Deduplicated.
    pub fn form_targets(&self) -> Vec<String> {
        let mut targets = vec![
            self.issuer.federation_origin(),
            self.config
                .aws
                .console
                .home()
                .origin()
                .ascii_serialization(),
        ];
        targets.sort();
        targets.dedup();
        targets
    }

    /// Whether the store answers and which IdPs are not loaded, for `/readyz`.
    pub async fn readiness(&self) -> Readiness {
        let store_problem =
            match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("the state store did not answer within 2s".into()),
            };
        let idps_unavailable = self
            .oidc
            .iter()
            .filter(|p| !p.is_ready())
            .map(|p| p.idp.id.to_string())
            .chain(
                self.saml
                    .iter()
                    .filter(|p| !p.is_ready())
                    .map(|p| p.idp.id.to_string()),
            )
            .collect();
        Readiness {
            store_problem,
            store_backend: self.store.backend(),
            idps_unavailable,
        }
    }
}

#[cfg(test)]
mod tests;
