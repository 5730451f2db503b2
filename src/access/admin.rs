//! Administering access: who has live access (the directory and each person's index),
//! what happened to them lately (a bounded history per person), ending it (revoke one
//! item or everything) and locks. The same [`AdminCore`] serves the admin area of the
//! web UI and `rolegate admin …` straight against the store (break-glass, when the web UI
//! is down); it needs the store and the audit log, no IdP and no STS.
//!
//! Revoking everything a person holds is one store transaction in their slot (every item
//! their index lists, and the IdP refresh token kept for re-validation), preceded by a
//! revocation marker: a login whose approval was given before the marker (a code or
//! device approval in flight at that moment) is refused when it completes. Every action
//! is audited with who did it, whom, what and why; a failed audit write is reported, and
//! the action is not taken when the record cannot be written first.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::holdings::Holding;
use super::locks::{Lock, LockTarget};
use super::{BuildError, RequestContext};
use crate::audit::{AuditError, AuditLog, Audited, Event, Outcome, Person};
use crate::config::Config;
use crate::idp::VerifiedIdentity;
use crate::metrics::{Metrics, SourceLabels};
pub use crate::store::PersonTag;
use crate::store::{Collection, Hashed, Record, Store, StoreError, now_unix, until};

/// How long a person's recent history is kept after its last event.
const HISTORY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest search string accepted.
pub const MAX_QUERY: usize = 128;

/// A person with live access, as the directory lists them (for finding people).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersonEntry {
    pub idp: String,
    pub subject: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// When their last known access ends (Unix seconds): listed until then.
    pub expires: u64,
    pub updated: u64,
}

impl Collection for PersonEntry {
    const NAME: &'static str = "people";
}

/// Marks that everything a person held was revoked at `at`: approvals given before it are
/// refused when they complete, and a session or token presented after it is told so.
#[derive(Serialize, Deserialize)]
pub(super) struct Revoked {
    pub(super) at: u64,
    expires: u64,
}

impl Record for Revoked {
    const KIND: &'static str = "revoked";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

pub(super) fn revoked_id() -> Hashed {
    Hashed::of("revoked")
}

/// Who acts, for the audit record.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `IDP:SUBJECT (user name)` of an administrator, the operator at the command line,
    /// or the IdP / SCIM client.
    pub name: String,
    pub source: ActorSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorSource {
    /// An administrator in the admin area.
    Admin,
    /// An operator running `rolegate admin` against the store.
    Cli,
    /// The IdP said the grant is over (re-validation).
    Idp,
    /// The IdP's provisioning (SCIM).
    Scim,
}

impl ActorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Cli => "cli",
            Self::Idp => "idp",
            Self::Scim => "scim",
        }
    }
}

impl Actor {
    pub fn admin(identity: &VerifiedIdentity) -> Self {
        let c = identity.claims();
        Self {
            name: format!("{}:{} ({})", c.idp, c.subject, c.username),
            source: ActorSource::Admin,
        }
    }
}

/// Why an admin action was not done.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit log cannot be written, so nothing was changed")]
    Audit(#[from] AuditError),
}

/// What the admin view shows of one person.
pub struct PersonView {
    pub tag: PersonTag,
    pub entry: Option<PersonEntry>,
    /// Live items, as (index field, entry), newest first.
    pub holdings: Vec<(String, Holding)>,
    /// Recent audit events about them, newest first (JSON objects).
    pub history: Vec<serde_json::Value>,
    /// Active locks that apply to them (on the person or one of their groups).
    pub locks: Vec<Lock>,
}

/// Administration over the store and the audit log (see the module doc).
pub struct AdminCore {
    pub(super) config: Arc<Config>,
    pub(super) store: Store,
    audit: Arc<AuditLog>,
    pub(super) metrics: Arc<Metrics>,
    /// IAM, when issued credentials are recalled (`[aws] recall_issued`).
    pub(super) iam: Option<Arc<crate::sts::recall::Iam>>,
    /// Webhooks for elevation events.
    pub(super) notifier: super::elevation::notify::Notifier,
}

/// The index fields an item may have (record kinds of what a person holds).
const ITEM_KINDS: &[&str] = &[
    "session",
    "oauth:family",
    "oauth:code",
    "oauth:device-approval",
    "elevation:request",
    "elevations",
];

fn valid_item(field: &str) -> bool {
    match field.rsplit_once(':') {
        Some((kind, hash)) => ITEM_KINDS.contains(&kind) && Hashed::parse(hash).is_some(),
        None => false,
    }
}

impl AdminCore {
    pub(super) fn new(
        config: Arc<Config>,
        store: Store,
        audit: Arc<AuditLog>,
        metrics: Arc<Metrics>,
        iam: Option<Arc<crate::sts::recall::Iam>>,
    ) -> Self {
        let notifier =
            super::elevation::notify::Notifier::start(config.webhooks.clone(), metrics.clone());
        Self {
            config,
            store,
            audit,
            metrics,
            iam,
            notifier,
        }
    }

    /// For `rolegate admin`: the store and audit log of `config`, and IAM when issued
    /// credentials are recalled (the broker's own AWS credentials, from the SDK's chain).
    pub async fn open(config: Arc<Config>) -> Result<Self, BuildError> {
        let store = Store::from_config(&config.session)?;
        let audit = Arc::new(match &config.audit.file {
            Some(path) => AuditLog::file(path)?,
            None => AuditLog::stdout(),
        });
        let iam = if config.aws.recall_issued {
            Some(Arc::new(crate::sts::recall::Iam::new(&config, None).await))
        } else {
            None
        };
        Ok(Self::new(
            config,
            store,
            audit,
            Arc::new(Metrics::new()),
            iam,
        ))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes an audit record, and keeps it in the person's recent history.
    pub(crate) fn record(&self, ctx: &RequestContext, event: &Event) -> Result<(), AuditError> {
        let line = self.audit.record(ctx, event)?;
        self.remember(event, line);
        Ok(())
    }

    /// Writes the audit record of `value`, keeps it in the person's history, and
    /// releases it.
    pub(crate) fn release<T>(
        &self,
        ctx: &RequestContext,
        event: &Event,
        value: T,
    ) -> Result<Audited<T>, AuditError> {
        let (released, line) = self.audit.release(ctx, event, value)?;
        self.remember(event, line);
        Ok(released)
    }

    /// The person's history gets the line off the request path (a failure is logged:
    /// the audit log itself has the record).
    fn remember(&self, event: &Event, line: String) {
        let Some(Person { idp, subject }) = event.person() else {
            return;
        };
        let tag = PersonTag::of(idp, subject);
        let store = self.store.clone();
        let cap = self.config.admin.history_per_person;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = store.history_push(&tag, &line, cap, HISTORY_TTL).await {
                tracing::debug!(error = %e, "could not keep an event in the person's history");
            }
        });
    }

    /// Notes a person in the directory (after a sign-in or login), listed until `expires`.
    pub(crate) async fn note_person(&self, identity: &VerifiedIdentity, expires: u64) {
        let c = identity.claims();
        let tag = PersonTag::of(c.idp.as_str(), &c.subject);
        let known = self
            .store
            .entry::<PersonEntry>(tag.as_str())
            .await
            .ok()
            .flatten();
        let entry = PersonEntry {
            idp: c.idp.to_string(),
            subject: c.subject.clone(),
            username: c.username.clone(),
            email: c.email.clone(),
            groups: c.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            expires: known.map(|k| k.expires).unwrap_or(0).max(expires),
            updated: now_unix(),
        };
        if let Err(e) = self.store.entry_put(tag.as_str(), &entry).await {
            tracing::warn!(error = %e, "could not list a person in the directory");
        }
    }

    /// Ends one item (`item`: its index field) or everything the person holds. Returns
    /// what was ended.
    pub async fn revoke(
        &self,
        tag: &PersonTag,
        item: Option<&str>,
        actor: &Actor,
        reason: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<Holding>, AdminError> {
        let reason = clean_reason(reason)?;
        if let Some(i) = item
            && !valid_item(i)
        {
            return Err(AdminError::Invalid("that is not an item of access".into()));
        }
        let holdings = self.store.holdings(tag).await?;
        let targets: Vec<(String, String)> = match item {
            Some(i) => {
                let found: Vec<_> = holdings.into_iter().filter(|(f, _)| f == i).collect();
                if found.is_empty() {
                    return Err(AdminError::NotFound(
                        "that item has ended already, or was never this person's".into(),
                    ));
                }
                found
            }
            None => holdings,
        };
        let ended: Vec<Holding> = targets
            .iter()
            .filter_map(|(_, j)| serde_json::from_str(j).ok())
            .collect();
        let person = ended.first().map(|h| Person {
            idp: h.idp.clone(),
            subject: h.subject.clone(),
        });
        let event = Event::Revocation {
            by: actor.name.clone(),
            source: actor.source.as_str(),
            person: person.clone().unwrap_or_default(),
            tag: tag.to_string(),
            items: ended.iter().map(|h| h.kind.as_str().to_owned()).collect(),
            reason: reason.clone(),
            outcome: Outcome::Revoked,
        };
        // The record first: an action that cannot be audited is not taken.
        self.record(ctx, &event)?;
        let now = now_unix();
        if item.is_none() {
            let longest = self
                .config
                .session
                .absolute_timeout
                .max(self.config.cli.session_lifetime);
            let mut mark = self.store.txn(tag);
            mark.put(
                &revoked_id(),
                &Revoked {
                    at: now,
                    expires: now + longest.as_secs(),
                },
            )?;
            self.store.commit(&mark).await?;
        }
        if item.is_none() {
            // Elevations end with everything else, each with its record and notice.
            self.end_all(tag, &format!("access revoked: {reason}"), &actor.name, ctx)
                .await;
        }
        let mut txn = self.store.txn(tag);
        for (field, _) in &targets {
            txn.delete_field(field);
        }
        if item.is_none() {
            txn.delete::<super::revalidate::Upstream>(&super::revalidate::upstream_id());
        }
        if !txn.is_empty() {
            self.store.commit(&txn).await?;
        }
        if item.is_none() {
            // Credentials already in their hands: denied on each role (when recall is on).
            self.recall_person(tag, actor, &reason, ctx).await;
        }
        self.metrics
            .revocations
            .get_or_create(&SourceLabels {
                source: actor.source.as_str().into(),
            })
            .inc_by(ended.len() as u64);
        tracing::warn!(person = %tag, items = ended.len(), by = %actor.name, source = actor.source.as_str(), "access revoked");
        Ok(ended)
    }

    /// Places a lock.
    pub async fn lock(
        &self,
        target: LockTarget,
        reason: &str,
        expires: Option<u64>,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> Result<Lock, AdminError> {
        let reason = clean_reason(reason)?;
        let now = now_unix();
        if expires.is_some_and(|e| e <= now) {
            return Err(AdminError::Invalid(
                "the lock would end in the past: give a later expiry, or none".into(),
            ));
        }
        match &target {
            LockTarget::Role { role } if self.config.role(role).is_none() => {
                return Err(AdminError::Invalid(format!(
                    "there is no role {:?}",
                    role.chars().take(64).collect::<String>()
                )));
            }
            LockTarget::Person { idp, subject }
                if self.config.idp(idp).is_none() || subject.is_empty() || subject.len() > 256 =>
            {
                return Err(AdminError::Invalid(
                    "a person is an IdP of this broker and a subject".into(),
                ));
            }
            LockTarget::Group { idp, group }
                if group.is_empty()
                    || group.len() > 256
                    || idp.as_deref().is_some_and(|i| self.config.idp(i).is_none()) =>
            {
                return Err(AdminError::Invalid(
                    "a group lock names a group (and, optionally, an IdP of this broker)".into(),
                ));
            }
            _ => {}
        }
        let lock = Lock {
            id: super::session::random_token()[..16].to_owned(),
            target,
            reason,
            created_by: actor.name.clone(),
            created: now,
            expires,
        };
        self.record(
            ctx,
            &Event::LockPlaced {
                by: actor.name.clone(),
                source: actor.source.as_str(),
                lock_id: lock.id.clone(),
                target: lock.target.to_string(),
                reason: lock.reason.clone(),
                expires: lock.expires,
            },
        )?;
        self.store.entry_put(&lock.id, &lock).await?;
        tracing::warn!(lock = %lock.id, target = %lock.target, by = %actor.name, "lock placed");
        self.end_elevations_for_lock(&lock, &actor.name, ctx).await;
        self.recall_for_lock(&lock, actor, ctx).await;
        Ok(lock)
    }

    /// Removes a lock.
    pub async fn unlock(
        &self,
        id: &str,
        actor: &Actor,
        reason: &str,
        ctx: &RequestContext,
    ) -> Result<Lock, AdminError> {
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(AdminError::Invalid("that is not a lock id".into()));
        }
        let Some(lock) = self.store.entry::<Lock>(id).await? else {
            return Err(AdminError::NotFound("there is no such lock".into()));
        };
        let reason = clean_reason(reason)?;
        self.record(
            ctx,
            &Event::LockRemoved {
                by: actor.name.clone(),
                source: actor.source.as_str(),
                lock_id: lock.id.clone(),
                target: lock.target.to_string(),
                reason,
            },
        )?;
        self.store.entry_remove::<Lock>(id).await?;
        tracing::warn!(lock = %lock.id, target = %lock.target, by = %actor.name, "lock removed");
        Ok(lock)
    }

    /// Every lock (active ones first, newest first).
    pub async fn locks(&self) -> Result<Vec<Lock>, AdminError> {
        let now = now_unix();
        let mut locks: Vec<Lock> = self
            .store
            .entries::<Lock>()
            .await?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        locks.sort_by(|a, b| {
            b.is_active(now)
                .cmp(&a.is_active(now))
                .then(b.created.cmp(&a.created))
        });
        Ok(locks)
    }

    /// Refreshes the `live_access` and `locks_active` gauges from the directory and the
    /// people's indexes (bounded: at most 5,000 people a pass; see `Access::refresh_gauges`).
    pub async fn census(&self) -> Result<(), StoreError> {
        use std::collections::HashMap;
        let now = now_unix();
        let mut counts: HashMap<(String, String), i64> = HashMap::new();
        let (mut cursor, mut seen) = (0, 0usize);
        loop {
            let (next, page) = self.store.entries_from::<PersonEntry>(cursor, 500).await?;
            for (tag, e) in page {
                let Some(tag) = PersonTag::parse(&tag) else {
                    continue;
                };
                if e.expires <= now {
                    continue;
                }
                seen += 1;
                for (_, json) in self.store.holdings(&tag).await? {
                    if let Ok(h) = serde_json::from_str::<Holding>(&json) {
                        *counts
                            .entry((h.kind.as_str().to_owned(), h.client_path))
                            .or_default() += 1;
                    }
                }
            }
            if next == 0 || seen >= 5_000 {
                break;
            }
            cursor = next;
        }
        self.metrics.live.clear();
        for ((kind, path), n) in counts {
            self.metrics
                .live
                .get_or_create(&crate::metrics::LiveLabels { kind, path })
                .set(n);
        }
        let active = self
            .store
            .entries::<Lock>()
            .await?
            .iter()
            .filter(|(_, l)| l.is_active(now))
            .count();
        self.metrics.locks.set(active as i64);
        Ok(())
    }
}

/// A reason as given: required, one line, at most 500 characters.
fn clean_reason(reason: &str) -> Result<String, AdminError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(AdminError::Invalid("give a reason".into()));
    }
    if r.chars().count() > 500 {
        return Err(AdminError::Invalid(
            "the reason is longer than 500 characters".into(),
        ));
    }
    Ok(r.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect())
}
