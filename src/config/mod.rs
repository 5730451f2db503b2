//! Loading and validating rolegate's configuration.
//!
//! Two stages, as in ripgrep's low/high args: `raw` mirrors the TOML file strictly (unknown
//! keys are errors), then `validate` converts it into the types below, which hold domain
//! values only (`RoleArn`, `SessionDuration`, compiled `MappingRules`). Every problem found
//! in either stage is reported, each with its origin, key path and (when known) line.
//! `rolegate check-config` and `rolegate serve` run exactly the same code.
//!
//! Environment variables `ROLEGATE_SECTION__KEY=value` override keys of the `[server]`,
//! `[session]`, `[aws]`, `[audit]`, `[web_identity]` and `[cli]` tables (e.g. `ROLEGATE_SESSION__STORE=redis`).
//!
//! The configuration is a plain value passed into `Application::build`; there is no global,
//! so tests can run several differently configured brokers in one process.

mod error;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use url::Url;

pub use error::{ConfigError, ConfigErrors};
pub use raw::accepted_keys;

use crate::domain::{
    AccountId, ConsoleSite, Identifier, IdpId, Partition, RoleArn, SessionDuration, SessionPolicy,
};
use crate::mapping::MappingRules;

/// A fully validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was loaded from (relative paths inside it are resolved against its folder).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub session: SessionConfig,
    pub aws: AwsConfig,
    pub audit: AuditConfig,
    /// Present when `[web_identity]` is configured (required if any role uses that mode).
    pub web_identity: Option<WebIdentityConfig>,
    /// The CLI login (OAuth authorization server for `rolegate login`); defaults apply
    /// when `[cli]` is absent.
    pub cli: CliConfig,
    pub idps: Vec<IdpConfig>,
    pub accounts: Vec<Account>,
    pub roles: Vec<Role>,
    pub rules: MappingRules,
    /// Apps registered for token exchange.
    pub apps: Vec<AppConfig>,
    /// Who administers access; defaults (nobody) when `[admin]` is absent.
    pub admin: AdminConfig,
    /// Where elevation events are sent.
    pub webhooks: Vec<Webhook>,
}

/// A `[[webhook]]`: a receiver of elevation events.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Url,
    pub format: WebhookFormat,
    /// Signs the generic JSON form (HMAC-SHA256).
    pub secret: Option<SecretString>,
    /// The events it gets (`request`, `decision`, `start`, `end`, `break_glass`); all when
    /// empty.
    pub events: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// A Slack-compatible incoming-webhook message (`{"text": ...}`).
    Slack,
    /// The event as JSON, signed with the secret.
    Json,
}

/// `[admin]`: the administrators of access.
#[derive(Debug)]
pub struct AdminConfig {
    /// Who is an administrator (a condition over groups and claims); `None`: nobody.
    pub when: Option<crate::mapping::Condition>,
    /// `amr` values an administrator's sign-in must carry (step-up), all of them.
    pub require_amr: Vec<String>,
    /// How many recent audit events are kept per person (for the admin view).
    pub history_per_person: usize,
}

impl Config {
    pub fn idp(&self, id: &str) -> Option<&IdpConfig> {
        self.idps.iter().find(|i| i.id.as_str() == id)
    }

    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id.as_str() == id)
    }

    pub fn app(&self, id: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.id == id)
    }

    pub fn account(&self, id: &Identifier) -> Option<&Account> {
        self.accounts.iter().find(|a| &a.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL users reach the broker at; used for redirects, cookies' `Secure` flag and HSTS.
    pub public_url: Url,
    /// Peers whose `X-Forwarded-For` is believed. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// How long in-flight requests may run after SIGTERM before they are cut.
    pub shutdown_timeout: Duration,
    /// After SIGTERM, how long `/readyz` answers 503 while requests are still served, so
    /// a load balancer takes the instance out before its listener closes.
    pub pre_stop_delay: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    pub workers: Option<usize>,
}

impl ServerConfig {
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded in-memory store: one instance only, state lost on restart.
    Memory,
    /// Redis (`redis://` or `rediss://`); the URL may carry a password, so it is secret.
    Redis {
        url: SecretString,
        tls_ca: Option<Vec<u8>>,
    },
    /// A Redis Cluster: `url` is any one node (a seed; the others are discovered).
    RedisCluster {
        url: SecretString,
        tls_ca: Option<Vec<u8>>,
    },
    /// A master found through Redis Sentinel (`redis+sentinel://` URL), re-resolved after
    /// a failover.
    RedisSentinel(SentinelTarget),
}

/// Where Sentinel is asked, for which master, and the master's credentials.
#[derive(Debug, Clone)]
pub struct SentinelTarget {
    /// `redis://host:port/` of each sentinel.
    pub sentinels: Vec<String>,
    pub service: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl SentinelTarget {
    /// Parses `redis+sentinel://[user:password@]host:port[,host:port…]/service`.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("redis+sentinel://")?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hosts, service) = rest.split_once('/')?;
        let service = service.trim_end_matches('/');
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !valid_name(service) {
            return None;
        }
        let sentinels = hosts
            .split(',')
            .map(|h| {
                let (host, port) = h.rsplit_once(':')?;
                port.parse::<u16>().ok()?;
                (!host.is_empty()).then(|| format!("redis://{host}:{port}/"))
            })
            .collect::<Option<Vec<_>>>()?;
        let (username, password) = match auth.map(|a| a.split_once(':').unwrap_or(("", a))) {
            None => (None, None),
            Some((u, p)) => (
                (!u.is_empty()).then(|| u.to_owned()),
                (!p.is_empty()).then(|| SecretString::from(p.to_owned())),
            ),
        };
        Some(Self {
            sentinels,
            service: service.to_owned(),
            username,
            password,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: StoreConfig,
    /// Prefix for every key rolegate writes, so several deployments can share one Redis.
    pub key_prefix: String,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// How often a browser session is checked again at its IdP (re-validation).
    pub revalidate_interval: Duration,
    /// How long re-validation tolerates an IdP it cannot reach; then it fails closed.
    pub revalidate_grace: Duration,
    /// Seals the IdPs' refresh tokens at rest (needed when an IdP re-validates).
    pub encryption_key: Option<SecretString>,
}

/// The broker as an OAuth 2.0 authorization server for its own command line.
#[derive(Debug, Clone)]
pub struct CliConfig {
    /// Registered public clients (PKCE, no secret).
    pub client_ids: Vec<String>,
    /// Lifetime of a broker access token (minutes).
    pub access_token_lifetime: Duration,
    /// How long a refresh-token family lives at most, from the login: after it, the
    /// person logs in again.
    pub session_lifetime: Duration,
    /// Within this time after a rotation, the rotated refresh token returns the same
    /// successor (processes on one machine refreshing at once); after it, its use
    /// revokes the family.
    pub refresh_reuse_interval: Duration,
    pub device_code_lifetime: Duration,
    pub device_poll_interval: Duration,
    /// How long a client registered through the SSO OIDC API (`RegisterClient`) stays
    /// registered; Identity Center's is 90 days.
    pub client_registration_lifetime: Duration,
    /// Bearer-token requests (the CLI's JSON API, the SSO portal API) per person and
    /// minute; over it, 429 with Retry-After.
    pub requests_per_minute: u64,
}

impl CliConfig {
    pub fn is_client(&self, id: &str) -> bool {
        self.client_ids.iter().any(|c| c == id)
    }
}

/// A mobile or single-page app registered for token exchange.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub id: String,
    pub idp: IdpId,
    /// The `aud` the app's subject tokens must carry (its client id at the IdP).
    pub audience: String,
    pub client_secret: Option<SecretString>,
    pub accept_id_tokens: bool,
    pub accept_access_tokens: bool,
    pub dpop_required: bool,
    /// Exact origins (`scheme://host[:port]`) allowed to call from a browser.
    pub allowed_origins: Vec<String>,
    pub max_exchanges_per_token: u64,
    pub rate_limit_per_minute: u64,
    pub subject_rate_limit_per_minute: u64,
    pub access_token_lifetime: Duration,
    pub max_token_age: Duration,
}

/// Where audit records go: an append-only file, or stdout (`None`).
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    /// Overrides the regional STS endpoint (tests point it at a local emulator).
    pub sts_endpoint_url: Option<Url>,
    /// The regions STS calls go to, in order of preference (failing over to the next on
    /// connection errors, timeouts, 5xx and throttling); default: `[region]`.
    pub sts_regions: Vec<StsRegion>,
    /// How long a region that failed is skipped before one call tries it again.
    pub sts_region_retry_after: Duration,
    pub partition: Partition,
    /// How roles get credentials unless a role says otherwise.
    pub sts_mode: StsMode,
    /// Overall deadline for one STS call, retries included.
    pub sts_timeout: Duration,
    /// The federation endpoint (`getSigninToken`, `login`); the partition's by default.
    pub federation_url: Url,
    /// The console's base URL and the other destinations allowed (`console_destinations`):
    /// every console destination, from config or a request, is checked against it.
    pub console: ConsoleSite,
    /// Requested console session length (`SessionDuration`), when AWS allows sending it.
    pub console_session_duration: SessionDuration,
    /// Recall issued credentials when a person is revoked, locked or deprovisioned (an
    /// inline deny policy on each role they were issued), and give every credential a
    /// `SourceIdentity`.
    pub recall_issued: bool,
    /// The role the broker assumes in each account to write recall policies; `None`: its
    /// own credentials (one account).
    pub recall_role_name: Option<String>,
    /// How often expired recall statements are swept from the roles' policies.
    pub recall_sweep_interval: Duration,
    /// Overrides the IAM endpoint (tests point it at a local emulator).
    pub iam_endpoint_url: Option<Url>,
    /// Where accounts' names come from besides config.
    pub account_names: AccountNames,
    /// Overrides the Organizations endpoint (tests point it at a local emulator).
    pub organizations_endpoint_url: Option<Url>,
}

/// One region STS calls go to.
#[derive(Debug, Clone)]
pub struct StsRegion {
    pub name: String,
    /// Overrides the regional endpoint (tests).
    pub endpoint_url: Option<Url>,
}

/// Where accounts' names come from (`[aws] account_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountNames {
    /// Only `[[account]] display_name` (else the account's id).
    Config,
    /// AWS Organizations' `ListAccounts` with the broker's credentials, refreshed every
    /// this long; a configured `display_name` still wins.
    Organizations { refresh: Duration },
}

/// How rolegate obtains a role's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsMode {
    /// `AssumeRole` with the broker's own AWS credentials (the SDK's default chain).
    AssumeRole,
    /// `AssumeRoleWithWebIdentity` with a JWT the broker signs as an OIDC issuer AWS trusts.
    WebIdentity,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AssumeRole => "assume_role",
            Self::WebIdentity => "web_identity",
        }
    }
}

/// The broker as an OIDC issuer for `web_identity` roles.
#[derive(Debug, Clone)]
pub struct WebIdentityConfig {
    pub audience: String,
    pub token_lifetime: Duration,
    /// PEM private keys (PKCS#8, EC P-256 or RSA); all are published, `active` signs.
    pub keys: Vec<SigningKeyFile>,
}

#[derive(Debug, Clone)]
pub struct SigningKeyFile {
    pub path: PathBuf,
    pub pem: SecretString,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct IdpConfig {
    pub id: IdpId,
    pub display_name: String,
    /// Where the groups come from: a claim path (OIDC) or an attribute name (SAML).
    pub groups_claim: String,
    /// Which claim or attribute names the user. For SAML, `"NameID"` means the subject.
    pub username_claim: String,
    pub protocol: IdpProtocol,
    /// Where the rules' groups come from: the sign-in's token or assertion, the SCIM
    /// directory, or both.
    pub groups_from: GroupsFrom,
    /// SCIM provisioning, when the IdP pushes users and groups.
    pub scim: Option<ScimSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsFrom {
    Token,
    Directory,
    Both,
}

impl GroupsFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Directory => "directory",
            Self::Both => "both",
        }
    }
}

/// How an IdP provisions over SCIM, and how its SCIM users are matched to sign-ins.
#[derive(Debug, Clone)]
pub struct ScimSettings {
    /// The bearer token the IdP sends (compared in constant time, never logged).
    pub token: SecretString,
    /// The SCIM attribute naming the person: `userName`, `externalId`, `emails` (the
    /// primary, else the first) or an attribute path.
    pub user_key: String,
    /// What of a sign-in it is compared with.
    pub identity_key: IdentityKey,
    /// Refuse people the directory does not know (besides deactivated ones).
    pub require_provisioned: bool,
    /// SCIM requests this IdP may make per minute (across instances).
    pub requests_per_minute: u32,
}

/// The part of a sign-in a SCIM user is matched with (case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKey {
    Subject,
    Username,
    Email,
}

impl IdentityKey {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

#[derive(Debug, Clone)]
pub enum IdpProtocol {
    Oidc(OidcSettings),
    Saml(SamlSettings),
}

impl IdpProtocol {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Oidc(_) => "oidc",
            Self::Saml(_) => "saml",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: Url,
    /// The issuer exactly as configured: compared byte for byte with the discovery
    /// document and the `iss` claim (`Url` would add a trailing slash).
    pub issuer_id: String,
    pub client_id: String,
    /// Absent for a public client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// Scopes requested besides `openid`, which is always sent.
    pub scopes: Vec<String>,
    pub redirect_path: String,
    pub use_userinfo: bool,
    /// ID-token signature algorithms accepted from this IdP (asymmetric only).
    pub allowed_algorithms: Vec<String>,
    pub leeway: Duration,
    /// How long after its `iat` an ID token is still accepted (plus the leeway).
    pub max_token_age: Duration,
    /// Keep the IdP's refresh token and check the person again at the IdP (`on_refresh`).
    pub revalidate: bool,
}

#[derive(Debug, Clone)]
pub enum MetadataSource {
    File(PathBuf),
    Url { url: Url, refresh: Duration },
}

#[derive(Debug, Clone)]
pub struct SamlSettings {
    pub entity_id: Option<String>,
    pub metadata: MetadataSource,
    /// SHA-256 fingerprints (lowercase hex, no separators) of the IdP signing certificates.
    pub signing_cert_sha256: Vec<String>,
    /// PEM text of pinned IdP signing certificates.
    pub signing_cert_pems: Vec<String>,
    pub allowed_algorithms: Vec<String>,
    pub clock_skew: Duration,
    pub allow_idp_initiated: bool,
    pub sp_key: Option<SecretString>,
    pub sp_cert_pem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: Identifier,
    pub number: AccountId,
    /// The configured name, else the account's id at the broker.
    pub display_name: String,
    /// Whether `display_name` was configured (it then wins over AWS Organizations').
    pub named: bool,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub id: Identifier,
    pub arn: RoleArn,
    pub account: Identifier,
    pub display_name: String,
    pub max_session_duration: SessionDuration,
    pub session_policy: Option<SessionPolicy>,
    pub sts_mode: StsMode,
    /// Where "Console" lands: a URL on the console origin (default: the console home).
    pub console_destination: Url,
    /// A break-glass role: an eligible person gets it at once with a reason, for at most
    /// this long, loudly audited and notified.
    pub break_glass: Option<Duration>,
}

/// Loads and validates the configuration at `path`, with overrides from the process
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, std::env::vars())
}

/// As [`load`], with the environment given explicitly (tests).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            key: String::new(),
            line: None,
            reason: format!("cannot read the file: {e}"),
        }])
    })?;
    validate::from_str(&text, path, env)
}

/// Validates configuration text as if it had been read from `path` (used by tests and by
/// `load`).
pub fn from_str(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    validate::from_str(text, path, env)
}
