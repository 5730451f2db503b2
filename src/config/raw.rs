//! The configuration file as written: a serde mirror of the TOML with no meaning attached.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting. Values stay as strings here; `validate` turns them into domain types. Mapping
//! conditions stay as `toml::Value` because `mapping::compile` gives far better errors for
//! their many shapes than serde's untagged enums would.

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub body_limit: Option<u64>,
    pub workers: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub store: Option<String>,
    pub redis_url: Option<RawSecret>,
    pub key_prefix: Option<String>,
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Append audit records to this file; absent: stdout.
    pub file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Option<String>,
    pub sts_endpoint_url: Option<String>,
    pub partition: Option<String>,
    pub sts_mode: Option<String>,
    pub sts_timeout: Option<String>,
    pub federation_url: Option<String>,
    pub console_url: Option<String>,
    pub console_session_duration: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWebIdentity {
    pub audience: Option<String>,
    pub token_lifetime: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawSigningKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigningKey {
    pub file: String,
    #[serde(default)]
    pub active: bool,
}

/// A secret is never written inline in the file: it names an environment variable or a
/// file holding the value. (`redis_url` may also be inline; see `RawSecret::Inline`.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSecret {
    Inline(String),
    Ref(RawSecretRef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidcIdp {
    pub id: String,
    /// Already read to choose this struct; declared so the strict parse accepts it.
    #[allow(dead_code)]
    pub kind: String,
    pub display_name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<RawSecretRef>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub redirect_path: Option<String>,
    pub groups_claim: Option<String>,
    pub username_claim: Option<String>,
    #[serde(default)]
    pub use_userinfo: bool,
    #[serde(default)]
    pub allowed_algorithms: Vec<String>,
    pub leeway: Option<String>,
    pub max_token_age: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSamlIdp {
    pub id: String,
    /// Already read to choose this struct; declared so the strict parse accepts it.
    #[allow(dead_code)]
    pub kind: String,
    pub display_name: Option<String>,
    pub entity_id: Option<String>,
    pub metadata_file: Option<String>,
    pub metadata_url: Option<String>,
    pub metadata_refresh: Option<String>,
    #[serde(default)]
    pub signing_cert_sha256: Vec<String>,
    #[serde(default)]
    pub signing_cert_files: Vec<String>,
    pub groups_attribute: Option<String>,
    pub username_attribute: Option<String>,
    #[serde(default)]
    pub allowed_algorithms: Vec<String>,
    pub clock_skew: Option<String>,
    #[serde(default)]
    pub allow_idp_initiated: bool,
    pub sp_key: Option<RawSecretRef>,
    pub sp_cert_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub id: String,
    pub number: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub id: String,
    pub arn: String,
    pub account: String,
    pub display_name: Option<String>,
    pub max_session_duration: Option<String>,
    pub session_policy_file: Option<String>,
    pub sts_mode: Option<String>,
    pub console_destination: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    pub description: Option<String>,
    /// Restricts the rule to these IdP ids; absent means every IdP.
    pub idp: Option<Vec<String>>,
    /// The condition tree; absent means "always" (for the rule's IdPs).
    pub when: Option<toml::Value>,
    pub grant: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub session: Option<RawGrantSession>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGrantSession {
    pub max_duration: Option<String>,
    pub session_policy_file: Option<String>,
    #[serde(default)]
    pub tags: toml::Table,
    #[serde(default)]
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
}
