//! Locks (Teleport's model): access refused for a person, everyone in an IdP group, or
//! everyone for a role, with a reason and an optional end, until unlocked.
//!
//! Locks live in one shared table of the store (`locks`), so they survive restarts and
//! every instance sees them. Each instance keeps a copy and asks the store at most once a
//! second whether the table changed (one read of its version), so checking costs an
//! in-memory lookup; a lock placed anywhere — the admin area of any instance, or
//! `rolegate admin lock` straight against the store — applies everywhere within a second.
//! If the store cannot be read, nobody gets in (fail closed).
//!
//! **Invariant: a lock is checked on every path.** The role menu, authorization and
//! issuance take a [`Principal`], which only [`Access::admit`] makes, after checking the
//! person's and their groups' locks; authorization checks role locks (and the person's
//! again). Every way to an identity (a session, a bearer token, a refresh, an exchange, a
//! sign-in, an approval) goes through `admit`.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Access;
use crate::idp::VerifiedIdentity;
use crate::mapping::IdentityClaims;
use crate::store::{Collection, Store, StoreError, now_unix};

/// What a lock applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LockTarget {
    /// One person (IdP + subject).
    Person { idp: String, subject: String },
    /// Everyone whose IdP sends this group (from one IdP, or any).
    Group {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idp: Option<String>,
        group: String,
    },
    /// A role, for everyone.
    Role { role: String },
}

impl std::fmt::Display for LockTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Person { idp, subject } => write!(f, "person {idp}:{subject}"),
            Self::Group {
                idp: Some(idp),
                group,
            } => write!(f, "group {group} of {idp}"),
            Self::Group { idp: None, group } => write!(f, "group {group}"),
            Self::Role { role } => write!(f, "role {role}"),
        }
    }
}

/// A lock as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lock {
    pub id: String,
    pub target: LockTarget,
    pub reason: String,
    /// Who placed it (an administrator's IdP and subject, or an operator at the command line).
    pub created_by: String,
    pub created: u64,
    /// Unix seconds; `None`: until unlocked.
    pub expires: Option<u64>,
}

impl Collection for Lock {
    const NAME: &'static str = "locks";
}

impl Lock {
    pub fn is_active(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// Whether this lock applies to `c` (roles aside).
    fn applies_to(&self, c: &IdentityClaims) -> bool {
        match &self.target {
            LockTarget::Person { idp, subject } => c.idp.as_str() == idp && &c.subject == subject,
            LockTarget::Group { idp, group } => {
                idp.as_deref().is_none_or(|i| i == c.idp.as_str())
                    && c.groups.iter().any(|g| g.as_str() == group)
            }
            LockTarget::Role { .. } => false,
        }
    }
}

/// Why access was refused: a lock applies, or the IdP's directory (SCIM) has the person
/// deactivated or does not know them. The message says which, not why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct Locked {
    /// The lock's id, or `scim:deactivated` / `scim:not-provisioned`.
    pub lock_id: String,
}

/// The lock id of a person the IdP's directory has deactivated (or deleted).
pub const DEACTIVATED: &str = "scim:deactivated";
/// The lock id of a person an IdP that requires provisioning does not know.
pub const NOT_PROVISIONED: &str = "scim:not-provisioned";

impl Locked {
    /// Whether the IdP's directory refused (not an administrator's lock).
    pub fn by_directory(&self) -> bool {
        self.lock_id.starts_with("scim:")
    }

    fn message(&self) -> &'static str {
        match self.lock_id.as_str() {
            DEACTIVATED => "this account is deactivated at the identity provider",
            NOT_PROVISIONED => "this account is not provisioned from the identity provider",
            _ => "access is locked; ask an administrator",
        }
    }
}

/// An identity admitted just now: no lock on the person or their groups. What the role
/// menu, authorization and issuance take. Only [`Access::admit`] makes one.
#[derive(Debug, Clone)]
pub struct Principal {
    identity: VerifiedIdentity,
    /// The roles they hold through approved elevations now (read at this request).
    elevations: Vec<super::elevation::ActiveElevation>,
}

impl Principal {
    /// For the core's unit tests, which check decisions, not locks.
    #[cfg(test)]
    pub(super) fn unchecked(identity: VerifiedIdentity) -> Self {
        Self {
            identity,
            elevations: Vec::new(),
        }
    }

    pub fn identity(&self) -> &VerifiedIdentity {
        &self.identity
    }

    pub fn claims(&self) -> &IdentityClaims {
        self.identity.claims()
    }

    /// The elevation that gives `role` now, if one does.
    pub fn elevation(&self, role: &str) -> Option<&super::elevation::ActiveElevation> {
        let now = now_unix();
        self.elevations
            .iter()
            .find(|e| e.role == role && e.until > now)
    }
}

/// Why `admit` did not admit.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Locked(#[from] Locked),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The locks one instance knows, with the table version they came from.
pub(super) struct LockSnapshot {
    version: u64,
    locks: Vec<Lock>,
    /// Roles with an active lock (for the common case of no role lock: one lookup).
    roles: HashSet<String>,
}

impl LockSnapshot {
    fn new(version: u64, locks: Vec<Lock>) -> Self {
        let roles = locks
            .iter()
            .filter_map(|l| match &l.target {
                LockTarget::Role { role } => Some(role.clone()),
                _ => None,
            })
            .collect();
        Self {
            version,
            locks,
            roles,
        }
    }

    /// The first active lock on the person or one of their groups.
    pub(super) fn person_lock(&self, c: &IdentityClaims, now: u64) -> Option<&Lock> {
        self.locks
            .iter()
            .find(|l| l.is_active(now) && l.applies_to(c))
    }

    /// The first active lock on `role`.
    pub(super) fn role_lock(&self, role: &str, now: u64) -> Option<&Lock> {
        if !self.roles.contains(role) {
            return None;
        }
        self.locks.iter().find(|l| {
            l.is_active(now) && matches!(&l.target, LockTarget::Role { role: r } if r == role)
        })
    }
}

/// How long an instance trusts its copy of the locks before asking for the version again.
pub const LOCK_REFRESH: Duration = Duration::from_secs(1);

/// An instance's copy of the locks, refreshed at most every [`LOCK_REFRESH`].
pub(super) struct LockCache {
    current: RwLock<(Instant, Arc<LockSnapshot>)>,
    /// Single flight: one refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl LockCache {
    pub(super) fn new() -> Self {
        let stale = Instant::now()
            .checked_sub(LOCK_REFRESH * 2)
            .unwrap_or_else(Instant::now);
        Self {
            current: RwLock::new((stale, Arc::new(LockSnapshot::new(u64::MAX, Vec::new())))),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<LockSnapshot>> {
        let g = self.current.read().unwrap_or_else(|p| p.into_inner());
        (g.0.elapsed() < LOCK_REFRESH).then(|| g.1.clone())
    }

    /// The locks, asking the store when the copy is older than [`LOCK_REFRESH`]. A store
    /// that cannot be read is an error: nobody is admitted on a stale copy.
    pub(super) async fn snapshot(&self, store: &Store) -> Result<Arc<LockSnapshot>, StoreError> {
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let _one = self.refreshing.lock().await;
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let known = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone();
        let version = store.collection_version::<Lock>().await?;
        let snapshot = if version == known.version {
            known
        } else {
            let locks = store
                .entries::<Lock>()
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            Arc::new(LockSnapshot::new(version, locks))
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            (Instant::now(), snapshot.clone());
        Ok(snapshot)
    }

    /// The copy as it is (refreshed by the `admit` of the same request moments ago).
    pub(super) fn current(&self) -> Arc<LockSnapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Forgets the copy (after this instance changed a lock: the next check reads it).
    pub(super) fn invalidate(&self) {
        let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
        g.0 = Instant::now()
            .checked_sub(LOCK_REFRESH * 2)
            .unwrap_or_else(Instant::now);
    }
}

impl Access {
    /// Admits an identity: refused when a lock applies to the person or one of their
    /// groups. The only way to a [`Principal`].
    pub(crate) async fn admit(&self, identity: VerifiedIdentity) -> Result<Principal, AdmitError> {
        // The directory first: a lock on a group must see the directory's groups.
        let identity = self.directory_admit(identity).await?;
        let locks = self.locks.snapshot(&self.store).await?;
        if let Some(l) = locks.person_lock(identity.claims(), now_unix()) {
            self.metrics
                .lock_refusals
                .get_or_create(&crate::metrics::KindLabels {
                    kind: "person".into(),
                })
                .inc();
            return Err(Locked {
                lock_id: l.id.clone(),
            }
            .into());
        }
        // Elevations are read at every request (no copy is trusted), when any rule makes
        // roles eligible.
        let elevations = if self.config.rules.has_eligible() {
            super::elevation::active(&self.store, &super::session::tag_of(&identity)).await?
        } else {
            Vec::new()
        };
        Ok(Principal {
            identity,
            elevations,
        })
    }

    /// The lock that refuses `role` to `principal` now (on the role, or on the person
    /// since they were admitted), from the copy `admit` refreshed for this request.
    pub(super) fn lock_on(&self, principal: &Principal, role: &str) -> Option<Locked> {
        let locks = self.locks.current();
        let now = now_unix();
        locks
            .role_lock(role, now)
            .or_else(|| locks.person_lock(principal.claims(), now))
            .map(|l| Locked {
                lock_id: l.id.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GroupName, IdpId};

    fn person(idp: &str, subject: &str, groups: &[&str]) -> IdentityClaims {
        IdentityClaims {
            idp: IdpId::parse(idp).unwrap(),
            subject: subject.into(),
            username: subject.into(),
            email: None,
            groups: groups
                .iter()
                .map(|g| GroupName::parse(g).unwrap())
                .collect(),
            claims: serde_json::json!({}),
        }
    }

    fn lock(id: &str, target: LockTarget, expires: Option<u64>) -> Lock {
        Lock {
            id: id.into(),
            target,
            reason: "r".into(),
            created_by: "t".into(),
            created: 0,
            expires,
        }
    }

    #[test]
    fn locks_apply_to_their_person_group_or_role_until_they_end() {
        let now = 1_000;
        let snap = LockSnapshot::new(
            1,
            vec![
                lock(
                    "p",
                    LockTarget::Person {
                        idp: "corp".into(),
                        subject: "alice".into(),
                    },
                    None,
                ),
                lock(
                    "g",
                    LockTarget::Group {
                        idp: Some("corp".into()),
                        group: "contractors".into(),
                    },
                    Some(now + 10),
                ),
                lock(
                    "any",
                    LockTarget::Group {
                        idp: None,
                        group: "interns".into(),
                    },
                    None,
                ),
                lock(
                    "old",
                    LockTarget::Group {
                        idp: None,
                        group: "ops".into(),
                    },
                    Some(now),
                ),
                lock(
                    "r",
                    LockTarget::Role {
                        role: "prod-admin".into(),
                    },
                    None,
                ),
            ],
        );
        let hit = |c: &IdentityClaims| snap.person_lock(c, now).map(|l| l.id.clone());
        assert_eq!(hit(&person("corp", "alice", &[])).as_deref(), Some("p"));
        assert_eq!(
            hit(&person("partner", "alice", &[])),
            None,
            "another IdP's alice"
        );
        assert_eq!(
            hit(&person("corp", "bob", &["contractors"])).as_deref(),
            Some("g")
        );
        assert_eq!(
            hit(&person("partner", "bob", &["contractors"])),
            None,
            "the group of corp only"
        );
        assert_eq!(
            hit(&person("partner", "bob", &["interns"])).as_deref(),
            Some("any")
        );
        assert_eq!(hit(&person("corp", "bob", &["ops"])), None, "an ended lock");
        assert_eq!(hit(&person("corp", "bob", &["developers"])), None);
        assert_eq!(
            snap.role_lock("prod-admin", now).map(|l| l.id.as_str()),
            Some("r")
        );
        assert_eq!(
            snap.role_lock("dev-admin", now).map(|l| l.id.as_str()),
            None
        );
        assert!(
            snap.person_lock(&person("corp", "carol", &["contractors"]), now + 10)
                .is_none(),
            "expired at its end"
        );
    }
}
