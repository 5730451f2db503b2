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
    pub pre_stop_delay: Option<String>,
    pub body_limit: Option<u64>,
    pub workers: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub store: Option<String>,
    pub redis_url: Option<RawSecret>,
    /// PEM file of the CA that signed the Redis server's certificate (rediss://), when it
    /// is not a public one.
    pub redis_ca_file: Option<String>,
    pub key_prefix: Option<String>,
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    /// How often a browser session's identity is checked again at its IdP.
    pub revalidate_interval: Option<String>,
    /// How long an IdP that cannot be reached is tolerated before access fails closed.
    pub revalidate_grace: Option<String>,
    /// Seals the IdPs' refresh tokens kept for re-validation.
    pub encryption_key: Option<RawSecretRef>,
}

/// `[admin]`: who administers access (revoke, lock) and how much history is kept.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// A condition in the rules' language: who is an administrator.
    pub when: Option<toml::Value>,
    /// Authentication methods (`amr`) an administrator's sign-in must include.
    #[serde(default)]
    pub require_amr: Vec<String>,
    /// Recent audit events kept per person for the admin view.
    pub history_per_person: Option<u64>,
}

/// `[cli]`: the broker as an OAuth authorization server for its own command line.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCli {
    /// Public clients allowed to log in (no secret); default `["rolegate-cli"]`.
    pub client_ids: Option<Vec<String>>,
    pub access_token_lifetime: Option<String>,
    pub session_lifetime: Option<String>,
    pub refresh_reuse_interval: Option<String>,
    pub device_code_lifetime: Option<String>,
    pub device_poll_interval: Option<String>,
    /// How long a client registered through the SSO OIDC API stays registered.
    pub client_registration_lifetime: Option<String>,
    /// Bearer-token requests (CLI API, SSO portal) per person and minute.
    pub requests_per_minute: Option<u64>,
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
    pub sts_regions: Option<Vec<String>>,
    #[serde(default)]
    pub sts_endpoint_urls: std::collections::BTreeMap<String, String>,
    pub sts_region_retry_after: Option<String>,
    pub partition: Option<String>,
    pub sts_mode: Option<String>,
    pub sts_timeout: Option<String>,
    pub federation_url: Option<String>,
    pub console_url: Option<String>,
    #[serde(default)]
    pub console_destinations: Vec<String>,
    pub console_session_duration: Option<String>,
    #[serde(default)]
    pub recall_issued: bool,
    pub recall_role_name: Option<String>,
    pub recall_sweep_interval: Option<String>,
    pub iam_endpoint_url: Option<String>,
    pub account_names: Option<String>,
    pub account_names_refresh: Option<String>,
    pub organizations_endpoint_url: Option<String>,
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
/// file holding the value. (`redis_url` may also be inline when it holds no password; see
/// `RawSecret::Inline`.)
#[derive(Debug)]
pub enum RawSecret {
    Inline(String),
    Ref(RawSecretRef),
}

#[derive(Debug, Default)]
pub struct RawSecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
}

/// What a secret that is written any other way is told. It never repeats the value.
const SECRET_FORM: &str =
    "a secret is never written inline: give it as { env = \"VAR\" } or { file = \"path\" }";

/// Reads `{ env = "VAR" }` / `{ file = "path" }`; anything else is refused with
/// [`SECRET_FORM`], never with serde's default message (which would quote the value and
/// name a Rust type).
struct SecretVisitor {
    allow_inline: bool,
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(SECRET_FORM)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSecret, E> {
        if self.allow_inline {
            Ok(RawSecret::Inline(v.to_owned()))
        } else {
            Err(E::custom(SECRET_FORM))
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let mut r = RawSecretRef::default();
        while let Some(key) = map.next_key::<String>()? {
            let value: String = map.next_value().map_err(|_| {
                serde::de::Error::custom(format!("{key}: {SECRET_FORM} (both are text)"))
            })?;
            match key.as_str() {
                "env" => r.env = Some(value),
                "file" => r.file = Some(value),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "unknown key {other:?} in a secret; {SECRET_FORM}"
                    )));
                }
            }
        }
        Ok(RawSecret::Ref(r))
    }

    // Numbers, booleans, arrays: the same message, without the value.
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RawSecret, E> {
        Err(E::custom(SECRET_FORM))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<RawSecret, E> {
        Err(E::custom(SECRET_FORM))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawSecret, E> {
        Err(E::custom(SECRET_FORM))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawSecret, E> {
        Err(E::custom(SECRET_FORM))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
        Err(serde::de::Error::custom(SECRET_FORM))
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor { allow_inline: true })
    }
}

impl<'de> Deserialize<'de> for RawSecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(SecretVisitor {
            allow_inline: false,
        })? {
            RawSecret::Ref(r) => Ok(r),
            RawSecret::Inline(_) => Err(serde::de::Error::custom(SECRET_FORM)),
        }
    }
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
    /// `on_refresh`: keep the IdP's refresh token and check the person again at each CLI
    /// refresh and every `session.revalidate_interval`; `off` (default).
    pub revalidate: Option<String>,
    pub groups_from: Option<String>,
    pub scim: Option<RawScim>,
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
    pub groups_from: Option<String>,
    pub scim: Option<RawScim>,
}

/// `[idp.scim]`: the IdP provisions users and groups over SCIM 2.0.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScim {
    pub token: RawSecretRef,
    pub user_key: Option<String>,
    pub identity_key: Option<String>,
    #[serde(default)]
    pub require_provisioned: bool,
    pub requests_per_minute: Option<u32>,
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
    #[serde(default)]
    pub break_glass: bool,
    pub break_glass_max: Option<String>,
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
    /// Roles that may be asked for (just-in-time), under `[rule.elevation]`.
    pub eligible: Option<Vec<String>>,
    pub session: Option<RawGrantSession>,
    pub elevation: Option<RawElevation>,
}

/// `[rule.elevation]`: what a request for an eligible role needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawElevation {
    pub approvers: Option<toml::Value>,
    pub approvals: Option<i64>,
    pub max_elevation: Option<String>,
    pub reason: Option<String>,
    pub ticket_pattern: Option<String>,
    pub auto_approve: Option<toml::Value>,
    pub auto_approve_window: Option<RawWindow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// `[[webhook]]`: where elevation events are sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    pub format: Option<String>,
    pub secret: Option<RawSecretRef>,
    #[serde(default)]
    pub events: Vec<String>,
    pub timeout: Option<String>,
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

/// `[[app]]`: a mobile or single-page app that exchanges its IdP token for AWS access
/// (RFC 8693 token exchange).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The app's `client_id` at rolegate.
    pub id: String,
    /// The IdP (an `[[idp]]` of kind oidc) whose tokens the app presents.
    pub idp: String,
    /// The app's own client id at that IdP: the `aud` its tokens must carry.
    pub audience: String,
    /// Present for a confidential app (a backend); absent for a public app.
    pub client_secret: Option<RawSecretRef>,
    /// Subject token types accepted: `id_token` (default), `access_token`/`jwt` (for IdPs
    /// whose access tokens are JWTs with this audience).
    pub subject_token_types: Option<Vec<String>>,
    /// `required`: DPoP proofs at the token endpoint and API (RFC 9449); `optional`.
    pub dpop: Option<String>,
    /// Origins allowed to call from a browser (CORS); none by default.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How many times one subject token may be exchanged (default 1).
    pub max_exchanges_per_token: Option<u64>,
    /// Exchanges per minute for the app, and per subject (person).
    pub rate_limit_per_minute: Option<u64>,
    pub subject_rate_limit_per_minute: Option<u64>,
    /// Lifetime of a broker access token issued to the app (default 10m).
    pub access_token_lifetime: Option<String>,
    /// Oldest subject token accepted, by its `iat` (default 1h).
    pub max_token_age: Option<String>,
}

/// The keys each table of the file accepts, read from the serde structs above (so the
/// list cannot drift from what the parser takes): `(table, keys)`. The reference config
/// (`config/rolegate.example.toml`) must show every one; a test checks it.
pub fn accepted_keys() -> Vec<(&'static str, &'static [&'static str])> {
    fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        let mut grab = FieldNames(&[]);
        let _ = T::deserialize(&mut grab);
        grab.0
    }
    vec![
        ("server", fields::<RawServer>()),
        ("session", fields::<RawSession>()),
        ("cli", fields::<RawCli>()),
        ("admin", fields::<RawAdmin>()),
        ("audit", fields::<RawAudit>()),
        ("aws", fields::<RawAws>()),
        ("web_identity", fields::<RawWebIdentity>()),
        ("idp (oidc)", fields::<RawOidcIdp>()),
        ("idp (saml)", fields::<RawSamlIdp>()),
        ("idp.scim", fields::<RawScim>()),
        ("account", fields::<RawAccount>()),
        ("role", fields::<RawRole>()),
        ("rule", fields::<RawRule>()),
        ("rule.session", fields::<RawGrantSession>()),
        ("rule.elevation", fields::<RawElevation>()),
        ("rule.elevation.auto_approve_window", fields::<RawWindow>()),
        ("webhook", fields::<RawWebhook>()),
        ("app", fields::<RawApp>()),
    ]
}

/// A deserializer that only records the field names a struct asks for.
struct FieldNames(&'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> serde::Deserializer<'de> for &mut FieldNames {
    type Error = Stop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}
