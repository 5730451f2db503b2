//! The broker as an OAuth 2.0 authorization server for its own command line (and, later,
//! apps): how a browser-verified identity becomes tokens a CLI holds, and how those tokens
//! become that identity again at each API call.
//!
//! - [`code`]: authorization code + PKCE (S256) to a loopback redirect (RFC 8252 §7.3).
//! - [`device`]: the device authorization grant (RFC 8628).
//! - [`tokens`]: access tokens (minutes) and rotating refresh tokens with reuse detection
//!   (RFC 6749 §10.4, OAuth 2.0 Security BCP §4.14), revocation (RFC 7009).
//! - [`exchange`]: token exchange (RFC 8693) for mobile and single-page apps, with
//!   [`dpop`] (RFC 9449) for sender-constrained tokens.
//!
//! - [`grant`]: the token endpoint's one dispatch (both `/oauth/token` and the SSO OIDC
//!   API's `CreateToken` call it), and [`bearer`]: a presented access token (and its DPoP
//!   proof) turned back into the identity, with one binding rule for every API.
//!
//! **Invariants.** Every token and code is 256 random bits (plus the person's tag),
//! handed out once and stored only as its SHA-256. A token names the identity captured
//! at login, never a grant: every credential request re-evaluates the rules through the
//! access core. State lives in the store, so any instance (on Redis) serves any step.

pub mod bearer;
pub mod clients;
pub mod code;
pub mod device;
pub mod dpop;
pub mod exchange;
pub mod grant;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use crate::wire::TokenResponse;

use super::session::IdentityRecord;

/// RFC 6749 §5.2 / RFC 8628 §3.5 error codes, with a description for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    /// For a rate limit (429): when to try again, in seconds.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// Too many requests: try again in `secs` seconds (HTTP 429, `Retry-After`).
    pub fn rate_limited(what: &str, secs: u64) -> Self {
        Self {
            code: "rate_limited",
            description: format!("too many token exchanges for {what}; try again in {secs} s"),
            retry_after: Some(secs),
        }
    }

    /// A rate limit with its own message.
    pub fn too_many(description: impl Into<String>, secs: u64) -> Self {
        Self {
            code: "rate_limited",
            description: description.into(),
            retry_after: Some(secs),
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }

    pub fn unavailable() -> Self {
        Self::new(
            "temporarily_unavailable",
            "the broker cannot reach its state store; try again in a minute",
        )
    }

    /// Whether the answer is a server-side problem (503) rather than the client's (400).
    pub fn is_unavailable(&self) -> bool {
        self.code == "temporarily_unavailable"
    }
}

impl From<crate::audit::AuditError> for OAuthError {
    fn from(e: crate::audit::AuditError) -> Self {
        tracing::error!(error = %e, "audit log write failed; refusing");
        Self::new(
            "temporarily_unavailable",
            "the broker cannot write its audit log; try again in a minute",
        )
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        // Logged once per outage by the store.
        tracing::debug!(error = %e, "refused: state store unavailable");
        Self::unavailable()
    }
}

/// Who approved a CLI login and for which client and machine: what tokens carry.
#[derive(Serialize, Deserialize, Clone)]
pub(in crate::access) struct Approval {
    pub(in crate::access) identity: IdentityRecord,
    pub(in crate::access) client_id: String,
    /// The machine name the CLI reported (shown on the approval page, kept for audit).
    pub(in crate::access) device_name: String,
    /// When the person approved (a revocation after it refuses the login).
    #[serde(default)]
    pub(in crate::access) approved_at: u64,
}

/// A short, printable description of the machine a CLI reported, safe to show on a page
/// and put in a log (letters, digits and `.-_ `; at most 64 characters).
pub fn clean_device_name(raw: Option<&str>) -> String {
    let name: String = raw
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".-_ ".contains(*c))
        .take(64)
        .collect();
    if name.trim().is_empty() {
        "an unnamed machine".into()
    } else {
        name
    }
}
