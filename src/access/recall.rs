//! Recalling credentials already issued (`[aws] recall_issued`): what the core remembers
//! and how a recall is carried out; the IAM side is `sts::recall`.
//!
//! - Before every STS call the issuer notes, in the person's slot, the role and the
//!   `SourceIdentity` the credentials will carry and when they expire at the latest
//!   ([`IssuedRoles`]). No note, no call: a credential rolegate cannot recall is not
//!   issued.
//! - When everything a person holds is revoked, or a lock on them (or their group) is
//!   placed, each role they were issued credentials for that have not expired gets a
//!   [`PendingRecall`] in the shared table `recalls`, then IAM is asked to add the deny
//!   statement. An applied recall leaves the table; a failed one stays with its error
//!   (shown to administrators, audited, counted) and is retried in the background with
//!   backoff until it is applied or every credential it covered has expired.
//! - Writes to one role's policy are serialized across instances by a lease in the store
//!   (read, merge, write is not atomic in IAM).
//! - A background sweep removes statements whose credentials have all expired.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::admin::{Actor, AdminCore, PersonEntry};
use super::locks::{Lock, LockTarget};
use crate::audit::{Event, Person, RequestContext};
use crate::domain::RoleArn;
use crate::mapping::IdentityClaims;
use crate::metrics::OutcomeLabels;
use crate::store::{Collection, Hashed, PersonTag, Record, StoreError, now_unix, until};
use crate::sts::recall::{Applied, RecallEntry, RecallError};

/// Margin added to "now" in a deny's `aws:TokenIssueTime` condition: AWS's clock and the
/// broker's may disagree by a little, and a session issued a moment before the recall
/// must be covered (one issued a moment after by someone revoked was refused anyway).
const CLOCK_MARGIN: u64 = 30;

/// How long one instance may hold a role's lease (one IAM read-merge-write).
const LEASE: Duration = Duration::from_secs(60);

/// The roles a person was issued credentials for, by role ARN.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct IssuedRoles {
    idp: String,
    subject: String,
    roles: BTreeMap<String, IssuedRole>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IssuedRole {
    source_identities: Vec<String>,
    /// When the latest credential for the role expires (Unix seconds).
    expires: u64,
}

impl Record for IssuedRoles {
    const KIND: &'static str = "issued";
    fn ttl(&self, now: u64) -> Duration {
        until(
            self.roles.values().map(|r| r.expires).max().unwrap_or(now),
            now,
        )
    }
}

fn issued_id() -> Hashed {
    Hashed::of("issued-roles")
}

/// A recall of one person's credentials on one role, not applied yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRecall {
    pub tag: String,
    pub idp: String,
    pub subject: String,
    pub role_arn: String,
    pub source_identities: Vec<String>,
    /// Sessions issued before this are denied (Unix seconds).
    pub issued_before: u64,
    /// When the last credential it covers expires: after that there is nothing to deny.
    pub expires: u64,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the next attempt is due (Unix seconds).
    #[serde(default)]
    pub next_attempt: u64,
    pub reason: String,
    pub by: String,
    pub source: String,
}

impl Collection for PendingRecall {
    const NAME: &'static str = "recalls";
}

/// The lease on one role's recall policy.
#[derive(Serialize, Deserialize)]
struct RecallLease {
    holder: String,
}

impl Record for RecallLease {
    const KIND: &'static str = "recall:lease";
    fn ttl(&self, _now: u64) -> Duration {
        LEASE
    }
}

/// The lease of the sweep (one instance sweeps at a time).
const SWEEP_LEASE: &str = "recall:sweep";

/// A role's recall as it went: the role and the outcome (or the error).
#[derive(Debug)]
pub struct RecallOutcome {
    pub role_arn: String,
    pub result: Result<Applied, String>,
}

fn backoff(attempts: u32) -> u64 {
    (5u64 << attempts.min(6)).min(300)
}

impl AdminCore {
    /// Notes, before the STS call, that `c` gets credentials for `role` carrying
    /// `source_identity` until `expires` at the latest. A compare-and-set on the person's
    /// record, so concurrent issuances for several roles are all kept.
    pub(super) async fn note_issuance(
        &self,
        c: &IdentityClaims,
        role: &RoleArn,
        source_identity: &str,
        expires: u64,
    ) -> Result<(), StoreError> {
        let tag = PersonTag::of(c.idp.as_str(), &c.subject);
        let id = issued_id();
        for _ in 0..8 {
            let stored = self.store.load_owned::<IssuedRoles>(&tag, &id).await?;
            let now = now_unix();
            let mut roles = stored
                .as_ref()
                .map(|s| s.value.roles.clone())
                .unwrap_or_default();
            roles.retain(|_, r| r.expires > now);
            let entry = roles.entry(role.to_string()).or_insert(IssuedRole {
                source_identities: Vec::new(),
                expires: 0,
            });
            if !entry.source_identities.iter().any(|s| s == source_identity) {
                entry.source_identities.push(source_identity.to_owned());
            }
            entry.expires = entry.expires.max(expires);
            let record = IssuedRoles {
                idp: c.idp.to_string(),
                subject: c.subject.clone(),
                roles,
            };
            let mut txn = self.store.txn(&tag);
            match &stored {
                Some(s) => txn.require_unchanged(&id, s),
                None => txn.require_absent::<IssuedRoles>(&id),
            };
            txn.put(&id, &record)?;
            if self.store.commit(&txn).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(
            "the record of issued roles kept changing".into(),
        ))
    }

    /// Recalls what `tag`'s person was issued and has not expired: a pending recall per
    /// role, each applied now if IAM answers (else retried in the background). Does
    /// nothing when recall is off.
    pub(crate) async fn recall_person(
        &self,
        tag: &PersonTag,
        actor: &Actor,
        reason: &str,
        ctx: &RequestContext,
    ) -> Vec<RecallOutcome> {
        if self.iam.is_none() {
            return Vec::new();
        }
        let issued = match self
            .store
            .load_owned::<IssuedRoles>(tag, &issued_id())
            .await
        {
            Ok(r) => r.map(|s| s.value).unwrap_or_default(),
            Err(e) => {
                tracing::error!(person = %tag, error = %e, "recall: the issued roles cannot be read");
                return vec![RecallOutcome {
                    role_arn: String::new(),
                    result: Err(format!("the state store is unavailable: {e}")),
                }];
            }
        };
        let now = now_unix();
        let mut outcomes = Vec::new();
        let live: Vec<(String, IssuedRole)> = issued
            .roles
            .iter()
            .filter(|(_, r)| r.expires > now)
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect();
        for (role_arn, role) in live {
            let pending = PendingRecall {
                tag: tag.to_string(),
                idp: issued.idp.clone(),
                subject: issued.subject.clone(),
                role_arn: role_arn.clone(),
                source_identities: role.source_identities,
                issued_before: now + CLOCK_MARGIN,
                expires: role.expires,
                attempts: 0,
                last_error: None,
                next_attempt: now,
                reason: reason.to_owned(),
                by: actor.name.clone(),
                source: actor.source.as_str().to_owned(),
            };
            let name = format!("{tag}:{}", &Hashed::of(&role_arn).as_str()[..16]);
            // The intent first: if this process stops now, another instance applies it.
            if let Err(e) = self.store.entry_put(&name, &pending).await {
                tracing::error!(person = %tag, role = %role_arn, error = %e, "recall: cannot be recorded");
                outcomes.push(RecallOutcome {
                    role_arn,
                    result: Err(format!("the state store is unavailable: {e}")),
                });
                continue;
            }
            let result = self.apply_recall(&name, pending, ctx).await;
            outcomes.push(RecallOutcome { role_arn, result });
        }
        outcomes
    }

    /// Applies one pending recall under the role's lease; on success it leaves the table,
    /// on failure it stays with its error and next attempt.
    async fn apply_recall(
        &self,
        name: &str,
        mut pending: PendingRecall,
        ctx: &RequestContext,
    ) -> Result<Applied, String> {
        let Some(iam) = &self.iam else {
            return Err("recall is off".into());
        };
        let role = RoleArn::parse(&pending.role_arn).map_err(|e| e.to_string())?;
        let lease_id = Hashed::of(&pending.role_arn);
        let holder = crate::access::session::random_token();
        let mut leased = false;
        for _ in 0..25 {
            match self
                .store
                .save_new(
                    &lease_id,
                    &RecallLease {
                        holder: holder.clone(),
                    },
                )
                .await
            {
                Ok(true) => {
                    leased = true;
                    break;
                }
                Ok(false) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => return Err(format!("the state store is unavailable: {e}")),
            }
        }
        let result = if leased {
            let entry = RecallEntry {
                person: pending.tag.clone(),
                source_identities: pending.source_identities.clone(),
                issued_before: pending.issued_before,
                expires: pending.expires,
            };
            let r = iam.add(&role, &entry).await;
            let _ = self.store.remove::<RecallLease>(&lease_id).await;
            r.map_err(|e: RecallError| e.to_string())
        } else {
            Err("another instance is writing this role's policy; retrying".into())
        };
        let person = Person {
            idp: pending.idp.clone(),
            subject: pending.subject.clone(),
        };
        let outcome = match &result {
            Ok(Applied::Added) => "applied",
            Ok(Applied::Widened) => "widened",
            Err(_) => "failed",
        };
        let event = Event::Recall {
            by: pending.by.clone(),
            source: match pending.source.as_str() {
                "admin" => "admin",
                "cli" => "cli",
                "idp" => "idp",
                "scim" => "scim",
                _ => "system",
            },
            person,
            tag: pending.tag.clone(),
            role_arn: pending.role_arn.clone(),
            outcome,
            issued_before: Some(
                chrono::DateTime::from_timestamp(pending.issued_before as i64, 0)
                    .unwrap_or_default()
                    .to_rfc3339(),
            ),
            reason: pending.reason.clone(),
            error: result.as_ref().err().cloned().unwrap_or_default(),
        };
        if let Err(e) = self.record(ctx, &event) {
            tracing::error!(error = %e, "audit log write failed for a recall");
        }
        self.metrics
            .recalls
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        match &result {
            Ok(_) => {
                tracing::warn!(person = %pending.tag, role = %pending.role_arn, outcome, "issued credentials recalled");
                if let Err(e) = self.store.entry_remove::<PendingRecall>(name).await {
                    tracing::warn!(error = %e, "recall applied; its pending entry stays until the next retry");
                }
            }
            Err(e) => {
                tracing::error!(person = %pending.tag, role = %pending.role_arn, error = %e, "recall failed; it will be retried");
                pending.attempts += 1;
                pending.last_error = Some(e.clone());
                pending.next_attempt = now_unix() + backoff(pending.attempts);
                let _ = self.store.entry_put(name, &pending).await;
            }
        }
        result
    }

    /// Recalls what the people a new lock applies to were issued: the person of a person
    /// lock; for a group lock, everyone with live access in that group (from the
    /// directory of people). A role lock recalls nothing (it refuses new credentials).
    pub(super) async fn recall_for_lock(&self, lock: &Lock, actor: &Actor, ctx: &RequestContext) {
        if self.iam.is_none() {
            return;
        }
        let reason = format!("lock {}: {}", lock.id, lock.reason);
        match &lock.target {
            LockTarget::Person { idp, subject } => {
                self.recall_person(&PersonTag::of(idp, subject), actor, &reason, ctx)
                    .await;
            }
            LockTarget::Group { idp, group } => {
                let mut cursor = 0;
                loop {
                    let Ok((next, page)) =
                        self.store.entries_from::<PersonEntry>(cursor, 500).await
                    else {
                        tracing::error!(lock = %lock.id, "recall: the people with access cannot be read");
                        break;
                    };
                    for (tag, e) in page {
                        let hit = idp.as_deref().is_none_or(|i| i == e.idp)
                            && e.groups.iter().any(|g| g == group);
                        if hit && let Some(tag) = PersonTag::parse(&tag) {
                            self.recall_person(&tag, actor, &reason, ctx).await;
                        }
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            LockTarget::Role { .. } => {}
        }
    }

    /// Retries the pending recalls that are due; drops those with nothing left to deny.
    pub(crate) async fn retry_recalls(&self, ctx: &RequestContext) -> Result<usize, StoreError> {
        let now = now_unix();
        let mut pending = 0;
        for (name, p) in self.store.entries::<PendingRecall>().await? {
            if p.expires <= now {
                self.store.entry_remove::<PendingRecall>(&name).await?;
                continue;
            }
            pending += 1;
            if p.next_attempt <= now && self.apply_recall(&name, p, ctx).await.is_ok() {
                pending -= 1;
            }
        }
        self.metrics.recalls_pending.set(pending as i64);
        Ok(pending)
    }

    /// Removes, from every configured role's policy, the statements whose credentials
    /// have all expired. One instance at a time (a lease for most of the interval).
    pub(crate) async fn sweep_recalls(&self, ctx: &RequestContext) -> Result<usize, StoreError> {
        let Some(iam) = &self.iam else {
            return Ok(0);
        };
        let lease = RecallLease {
            holder: crate::access::session::random_token(),
        };
        if !self
            .store
            .save_new(&Hashed::of(SWEEP_LEASE), &lease)
            .await?
        {
            return Ok(0);
        }
        let mut arns: Vec<&RoleArn> = self.config.roles.iter().map(|r| &r.arn).collect();
        arns.sort();
        arns.dedup();
        let mut swept = 0;
        for role in arns {
            let lease_id = Hashed::of(role.as_str());
            if !self.store.save_new(&lease_id, &lease).await? {
                continue; // a recall is being written; the next sweep looks again
            }
            let result = iam.sweep(role, now_unix()).await;
            let _ = self.store.remove::<RecallLease>(&lease_id).await;
            match result {
                Ok(0) => {}
                Ok(n) => {
                    swept += n;
                    self.metrics
                        .recalls
                        .get_or_create(&OutcomeLabels {
                            outcome: "swept".into(),
                        })
                        .inc_by(n as u64);
                    let event = Event::Recall {
                        by: "rolegate".into(),
                        source: "system",
                        person: Person::default(),
                        tag: String::new(),
                        role_arn: role.to_string(),
                        outcome: "swept",
                        issued_before: None,
                        reason: format!("{n} statement(s) whose credentials have all expired"),
                        error: String::new(),
                    };
                    if let Err(e) = self.record(ctx, &event) {
                        tracing::error!(error = %e, "audit log write failed for a recall sweep");
                    }
                }
                Err(e) => {
                    tracing::warn!(role = %role, error = %e, "recall sweep failed for a role; the next sweep tries again");
                }
            }
        }
        let _ = self
            .store
            .remove::<RecallLease>(&Hashed::of(SWEEP_LEASE))
            .await;
        Ok(swept)
    }

    /// Pending recalls (of one person, or all), for administrators.
    pub async fn pending_recalls(
        &self,
        tag: Option<&PersonTag>,
    ) -> Result<Vec<PendingRecall>, StoreError> {
        Ok(self
            .store
            .entries::<PendingRecall>()
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| tag.is_none_or(|t| p.tag == t.as_str()))
            .collect())
    }

    /// Whether recall is on (`[aws] recall_issued`).
    pub fn recalls_on(&self) -> bool {
        self.iam.is_some()
    }
}

/// The background work of recall on one instance: due retries every 10 s, the sweep
/// every `recall_sweep_interval`. Runs until the process ends.
pub(super) async fn run(admin: std::sync::Arc<AdminCore>, sweep_every: Duration) {
    let ctx = RequestContext {
        request_id: "recall-worker".into(),
        client_ip: String::new(),
        user_agent: String::new(),
    };
    let mut last_sweep = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(10).min(sweep_every));
    loop {
        tick.tick().await;
        if let Err(e) = admin.retry_recalls(&ctx).await {
            tracing::warn!(error = %e, "recall retries: the state store is unavailable");
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = admin.sweep_recalls(&ctx).await {
                tracing::warn!(error = %e, "recall sweep: the state store is unavailable");
            }
        }
    }
}
