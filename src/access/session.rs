//! Browser sessions and the sign-in tail.
//!
//! A session is an opaque random id (the cookie, set by `web`) naming a server-side
//! record: the verified identity and a CSRF token. A new id is issued at every sign-in
//! and the previous session, if any, is deleted (no fixation). Sessions end after the idle
//! timeout (the store TTL, renewed on use) or the absolute timeout, whichever comes first.
//!
//! [`Access::complete_sign_in`] is the one way every sign-in ends (OIDC, SAML, and the
//! later clients): audit record first (no audit, no session), old session removed, new
//! session stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Access, RequestContext};
use crate::audit::{LoginEvent, Outcome};
use crate::domain::{GroupName, IdpId};
use crate::idp::VerifiedIdentity;
use crate::mapping::IdentityClaims;
use crate::store::StoreError;

/// 256 random bits, base64url (43 characters): session ids, OAuth `state`, nonces, CSRF
/// tokens, browser bindings.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `s` has the shape of a [`random_token`]; anything else is never looked up.
pub fn is_token_shaped(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Constant-time comparison for CSRF tokens and browser bindings (aws-lc's, not a
/// hand-rolled fold).
pub fn tokens_match(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A verified identity as rolegate stores it server-side (sessions, SAML hand-off).
/// rolegate's own wire format, converted here and nowhere else.
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct IdentityRecord {
    idp: String,
    subject: String,
    username: String,
    email: Option<String>,
    groups: Vec<String>,
    claims: serde_json::Value,
}

impl IdentityRecord {
    pub(super) fn from_identity(identity: &VerifiedIdentity) -> Self {
        let c = identity.claims();
        Self {
            idp: c.idp.to_string(),
            subject: c.subject.clone(),
            username: c.username.clone(),
            email: c.email.clone(),
            groups: c.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            claims: c.claims.clone(),
        }
    }

    pub(super) fn subject(&self) -> &str {
        &self.subject
    }

    pub(super) fn idp(&self) -> &str {
        &self.idp
    }

    /// Re-creates the identity. Only records this module wrote after a verified login
    /// reach here, so this is not a way around verification.
    pub(super) fn into_identity(self) -> Result<VerifiedIdentity, StoreError> {
        let claims = IdentityClaims {
            idp: IdpId::parse(&self.idp).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            subject: self.subject,
            username: self.username,
            email: self.email,
            groups: self
                .groups
                .iter()
                .map(|g| GroupName::parse(g))
                .collect::<Result<_, _>>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            claims: self.claims,
        };
        Ok(VerifiedIdentity::from_session(claims))
    }
}

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    #[serde(flatten)]
    identity: IdentityRecord,
    csrf: String,
    created: u64,
}

/// A signed-in browser.
pub struct Session {
    pub id: String,
    pub identity: VerifiedIdentity,
    pub csrf: String,
}

fn key(id: &str) -> String {
    format!("session:{id}")
}

impl Access {
    /// The session `id` names, renewing its idle timeout. `Ok(None)` when the id is
    /// malformed or the session ended; a store failure is an error (fail closed).
    pub async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if !is_token_shaped(id) {
            return Ok(None);
        }
        let cfg = &self.config.session;
        // Read and renew the idle timeout in one round trip; the absolute timeout is
        // checked here on every read, and the TTL cut back to it in the session's last
        // idle window (rarely a second call).
        let Some(json) = self.store.get_renewing(&key(id), cfg.idle_timeout).await? else {
            return Ok(None);
        };
        let record: SessionRecord =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let age = now_unix().saturating_sub(record.created);
        let absolute = cfg.absolute_timeout.as_secs();
        if age >= absolute {
            self.store.delete(&key(id)).await?;
            return Ok(None);
        }
        let remaining = Duration::from_secs(absolute - age);
        if remaining < cfg.idle_timeout {
            self.store.put(&key(id), &json, remaining).await?;
        }
        Ok(Some(Session {
            id: id.to_owned(),
            identity: record.identity.into_identity()?,
            csrf: record.csrf,
        }))
    }

    /// Ends a session; `true` if it existed.
    pub async fn end_session(&self, id: &str) -> Result<bool, StoreError> {
        if !is_token_shaped(id) {
            return Ok(false);
        }
        self.store.delete(&key(id)).await
    }

    /// The sign-in tail every client ends with: the audit record (a sign-in that cannot
    /// be audited is refused), the browser's previous session deleted, a new session with
    /// a fresh id and CSRF token stored.
    pub async fn complete_sign_in(
        &self,
        identity: VerifiedIdentity,
        previous_session: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Session, super::SignInError> {
        use super::SignInError;
        if let Some(old) = previous_session {
            self.end_session(old)
                .await
                .map_err(|_| SignInError::StoreUnavailable)?;
        }
        let c = identity.claims();
        self.audit_login(ctx, c.idp.as_str(), &c.subject, Outcome::Success, "")
            .map_err(|e| {
                tracing::error!(error = %e, "audit log write failed; refusing the sign-in");
                SignInError::AuditUnavailable
            })?;
        let record = SessionRecord {
            identity: IdentityRecord::from_identity(&identity),
            csrf: random_token(),
            created: now_unix(),
        };
        let id = random_token();
        let cfg = &self.config.session;
        let ttl = cfg.idle_timeout.min(cfg.absolute_timeout);
        let json = serde_json::to_string(&record).map_err(|_| SignInError::StoreUnavailable)?;
        self.store
            .put(&key(&id), &json, ttl)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        Ok(Session {
            id,
            identity,
            csrf: record.csrf,
        })
    }

    /// Writes a login audit record (and its log line). Its failure is returned so a
    /// successful sign-in can be refused; callers recording a failure only log it.
    pub(super) fn audit_login(
        &self,
        ctx: &RequestContext,
        idp: &str,
        subject: &str,
        outcome: Outcome,
        reason: &str,
    ) -> Result<(), crate::audit::AuditError> {
        tracing::info!(
            idp,
            subject,
            outcome = outcome.as_str(),
            reason,
            "login {}",
            outcome.as_str()
        );
        self.audit.login(
            ctx,
            &LoginEvent {
                idp,
                subject,
                outcome,
                reason,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        let t = random_token();
        assert!(tokens_match(&t, &t.clone()));
        let mut other = t.clone().into_bytes();
        other[42] = if other[42] == b'A' { b'B' } else { b'A' };
        assert!(!tokens_match(&t, std::str::from_utf8(&other).unwrap()));
        assert!(!tokens_match(&t, &t[..42]));
        assert!(!tokens_match("", &t));
    }

    #[test]
    fn only_token_shaped_ids_are_looked_up() {
        assert!(is_token_shaped(&random_token()));
        assert!(!is_token_shaped("short"));
        assert!(!is_token_shaped(&"a".repeat(44)));
        assert!(!is_token_shaped(&format!("{}*", "a".repeat(42))));
    }
}
