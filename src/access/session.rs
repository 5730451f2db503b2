//! Browser sessions and the sign-in tail.
//!
//! A session is an opaque id (the cookie, set by `web`) naming a server-side record: the
//! verified identity. The id is `TAG.SECRET` ([`PersonTag`] and 256 random bits); the
//! store keeps the record under the id's hash, in the person's slot, listed in their
//! index. The CSRF token is derived from the id (never stored). A new id is issued at
//! every sign-in and the previous session, if any, is deleted (no fixation). Sessions end
//! after the idle timeout (the store TTL, renewed on use) or the absolute timeout,
//! whichever comes first, or when revoked.
//!
//! [`Access::complete_sign_in`] is the one way every sign-in ends (OIDC, SAML): audit
//! record first (no audit, no session), old session removed, new session stored.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::holdings::{Holding, HoldingKind};
use super::locks::{AdmitError, Locked, Principal};
use super::revalidate::Revalidated;
use super::{Access, RequestContext};
use crate::audit::{Audited, Event, Outcome, Person};
use crate::domain::{GroupName, IdpId};
use crate::idp::VerifiedIdentity;
use crate::mapping::IdentityClaims;
use crate::store::{Hashed, PersonTag, Record, StoreError, now_unix, split_owned_id, until};

/// 256 random bits, base64url (43 characters): OAuth `state`, nonces, browser bindings,
/// the secret part of session ids and tokens.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `s` has the shape of a [`random_token`]; anything else is never looked up.
pub fn is_token_shaped(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh client-held id for a record of `tag`'s: `TAG.SECRET`.
pub(super) fn owned_id(tag: &PersonTag) -> String {
    format!("{tag}.{}", random_token())
}

/// Constant-time comparison for CSRF tokens and browser bindings (aws-lc's, not a
/// hand-rolled fold).
pub fn tokens_match(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// A verified identity as rolegate stores it server-side (sessions, logins, hand-offs).
/// rolegate's own wire format, converted here and nowhere else.
#[derive(Serialize, Deserialize, Clone, Debug)]
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

    pub(super) fn person(&self) -> Person {
        Person {
            idp: self.idp.clone(),
            subject: self.subject.clone(),
        }
    }

    pub(super) fn tag(&self) -> PersonTag {
        PersonTag::of(&self.idp, &self.subject)
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

/// The person of a verified identity, for audit records.
pub(super) fn person_of(identity: &VerifiedIdentity) -> Person {
    let c = identity.claims();
    Person {
        idp: c.idp.to_string(),
        subject: c.subject.clone(),
    }
}

/// The person tag of a verified identity.
pub(super) fn tag_of(identity: &VerifiedIdentity) -> PersonTag {
    let c = identity.claims();
    PersonTag::of(c.idp.as_str(), &c.subject)
}

/// A browser session as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct SessionRecord {
    pub(super) identity: IdentityRecord,
    created: u64,
    /// When the identity was last confirmed at the IdP (re-validation).
    #[serde(default)]
    checked: u64,
    /// The absolute timeout (Unix seconds).
    expires: u64,
    /// The idle timeout, seconds: the record's TTL, renewed on each use.
    idle: u64,
    pub(super) holding: Holding,
}

impl Record for SessionRecord {
    const KIND: &'static str = "session";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now).min(Duration::from_secs(self.idle))
    }
}

/// A signed-in browser.
pub struct Session {
    pub id: String,
    /// The person, admitted for this request (no lock applies).
    pub identity: Principal,
    /// Derived from the session id: forms carry it, nothing stores it.
    pub csrf: String,
}

/// Why a session cannot be used now.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Locked(Locked),
    #[error("the access was revoked")]
    Revoked,
    #[error("{0} cannot confirm the access right now")]
    Unconfirmed(String),
}

/// The CSRF token of a session: a hash of its id (an attacker without the cookie cannot
/// compute it; the store never holds it).
fn csrf_of(session_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("rolegate csrf\0{session_id}").as_bytes(),
        )
        .as_ref(),
    )
}

impl Access {
    /// The session `id` names, renewing its idle timeout, its identity re-validated at the
    /// IdP when due and admitted (no lock). `Ok(None)` when the id is malformed or the
    /// session ended; a store failure is an error (fail closed).
    pub async fn session(
        &self,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<Option<Session>, SessionError> {
        let Some((tag, key)) = split_owned_id(id) else {
            return Ok(None);
        };
        let idle = self.config.session.idle_timeout;
        // Read and renew the idle timeout in one round trip; the absolute timeout is
        // checked here on every read, and the TTL cut back to it in the session's last
        // idle window (rarely a second call).
        let Some(stored) = self
            .store
            .load_owned_renewing::<SessionRecord>(&tag, &key, idle)
            .await?
        else {
            // Gone: ended, expired, or revoked (then the person is told so).
            if self.revoked_since(&tag).await?.is_some() {
                return Err(SessionError::Revoked);
            }
            return Ok(None);
        };
        let mut record = stored.value;
        let now = now_unix();
        if record.expires <= now {
            let mut txn = self.store.txn(&tag);
            txn.delete::<SessionRecord>(&key);
            self.store.commit(&txn).await?;
            return Ok(None);
        }
        let mut identity = record.identity.clone().into_identity()?;
        let mut rewrite = Duration::from_secs(record.expires - now) < idle;
        let checked = record.checked.max(record.created);
        if now.saturating_sub(checked) >= self.config.session.revalidate_interval.as_secs() {
            match self.revalidate(&identity, false, ctx).await? {
                Revalidated::NotApplicable => {}
                Revalidated::Current(fresh, at) => {
                    if fresh != identity {
                        record.identity = IdentityRecord::from_identity(&fresh);
                        identity = fresh;
                    }
                    record.checked = at;
                    rewrite = true;
                }
                Revalidated::Revoked => return Err(SessionError::Revoked),
                Revalidated::Unconfirmed(idp) => return Err(SessionError::Unconfirmed(idp)),
            }
        }
        let principal = match self.admit(identity).await {
            Ok(p) => p,
            Err(AdmitError::Store(e)) => return Err(e.into()),
            Err(AdmitError::Locked(l)) => {
                self.audit_locked(record.identity.person(), "session", &l, ctx);
                return Err(SessionError::Locked(l));
            }
        };
        let touch = self.touches.due(key.as_str());
        if rewrite || touch {
            let mut txn = self.store.txn(&tag);
            txn.require::<SessionRecord>(&key);
            if rewrite {
                txn.put(&key, &record)?;
            }
            if touch {
                txn.relist::<SessionRecord>(&key, &record.holding.used_now(), record.ttl(now))?;
            }
            self.store.commit(&txn).await?;
        }
        Ok(Some(Session {
            csrf: csrf_of(id),
            id: id.to_owned(),
            identity: principal,
        }))
    }

    /// Audits a request refused by a lock (a failed write is logged: it is refused anyway).
    pub(super) fn audit_locked(
        &self,
        person: Person,
        what: &'static str,
        lock: &Locked,
        ctx: &RequestContext,
    ) {
        tracing::warn!(idp = %person.idp, subject = %person.subject, what, lock = %lock.lock_id, "refused: access is locked");
        let event = Event::AccessLocked {
            person,
            what,
            lock_id: lock.lock_id.clone(),
            outcome: Outcome::Refused,
        };
        if let Err(e) = self.record(ctx, &event) {
            tracing::error!(error = %e, "audit log write failed for a locked request");
        }
    }

    /// When everything `tag`'s person held was last revoked, if it was, within the longest
    /// lifetime of anything they could have held.
    pub(super) async fn revoked_since(&self, tag: &PersonTag) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .load_owned::<super::admin::Revoked>(tag, &super::admin::revoked_id())
            .await?
            .map(|r| r.value.at))
    }

    /// Ends a session; `true` if it existed.
    pub async fn end_session(&self, id: &str) -> Result<bool, StoreError> {
        let Some((tag, key)) = split_owned_id(id) else {
            return Ok(false);
        };
        let mut txn = self.store.txn(&tag);
        txn.require::<SessionRecord>(&key)
            .delete::<SessionRecord>(&key);
        self.store.commit(&txn).await
    }

    /// The sign-in tail every browser sign-in ends with: the audit record (a sign-in that
    /// cannot be audited is refused), the browser's previous session deleted, a new
    /// session with a fresh id stored and listed in the person's index.
    pub async fn complete_sign_in(
        &self,
        identity: VerifiedIdentity,
        upstream: Option<secrecy::SecretString>,
        previous_session: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Audited<Session>, super::SignInError> {
        use super::SignInError;
        if let Some(old) = previous_session {
            self.end_session(old)
                .await
                .map_err(|_| SignInError::StoreUnavailable)?;
        }
        let principal = match self.admit(identity.clone()).await {
            Ok(p) => p,
            Err(AdmitError::Store(_)) => return Err(SignInError::StoreUnavailable),
            Err(AdmitError::Locked(l)) => {
                self.audit_login_failure(ctx, person_of(&identity), "access is locked");
                self.audit_locked(person_of(&identity), "sign_in", &l, ctx);
                return Err(SignInError::Locked(l));
            }
        };
        let c = identity.claims();
        tracing::info!(idp = %c.idp, subject = %c.subject, outcome = "success", "login success");
        let event = Event::Login {
            person: person_of(&identity),
            outcome: Outcome::Success,
            reason: String::new(),
        };
        let released = self.release(ctx, &event, ()).map_err(|e| {
            tracing::error!(error = %e, "audit log write failed; refusing the sign-in");
            SignInError::AuditUnavailable
        })?;
        let cfg = &self.config.session;
        let now = now_unix();
        let expires = now + cfg.absolute_timeout.as_secs();
        let tag = tag_of(&identity);
        let id = owned_id(&tag);
        let key = Hashed::of(&id);
        let record = SessionRecord {
            identity: IdentityRecord::from_identity(&identity),
            created: now,
            checked: now,
            expires,
            idle: cfg.idle_timeout.as_secs(),
            holding: Holding::new(HoldingKind::Session, &identity, "web", None, expires, ctx),
        };
        let mut txn = self.store.txn(&tag);
        txn.put_listed(&key, &record, &record.holding)
            .map_err(|_| SignInError::StoreUnavailable)?;
        self.store
            .commit(&txn)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        self.touches.due(key.as_str());
        let lifetime = cfg.absolute_timeout.max(self.config.cli.session_lifetime);
        self.keep_upstream(&identity, upstream, lifetime).await;
        self.admin
            .note_person(&identity, now + lifetime.as_secs())
            .await;
        Ok(released.map(|()| Session {
            csrf: csrf_of(&id),
            id,
            identity: principal,
        }))
    }

    /// Audits a failed sign-in (and its log line). A failed write is logged: nothing is
    /// granted anyway.
    pub(super) fn audit_login_failure(&self, ctx: &RequestContext, person: Person, reason: &str) {
        tracing::info!(idp = %person.idp, subject = %person.subject, outcome = "failure", reason, "login failure");
        let event = Event::Login {
            person,
            outcome: Outcome::Failure,
            reason: reason.to_owned(),
        };
        if let Err(e) = self.record(ctx, &event) {
            tracing::error!(error = %e, "audit log write failed");
        }
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

    #[test]
    fn the_csrf_token_depends_on_the_whole_session_id() {
        let tag = PersonTag::of("corp", "alice");
        let (a, b) = (owned_id(&tag), owned_id(&tag));
        assert_ne!(csrf_of(&a), csrf_of(&b));
        assert_eq!(csrf_of(&a), csrf_of(&a));
        assert!(!csrf_of(&a).contains(&a[17..]));
    }
}
