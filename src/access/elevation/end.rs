//! Ending elevations: early (the requester, an administrator), on time (the background
//! task), or because a lock or a revocation ended everything else the person had. Lives
//! with the administration core, so `rolegate admin` and every revocation path end them
//! the same way (audited, notified).

use serde_json::json;

use super::notify::Notice;
use super::requests::{ElevationError, RequestView, rfc3339, short};
use super::{ElevationRequest, Elevations, QueueEntry, RunningEntry, Status, elevations_id};
use crate::access::RequestContext;
use crate::access::admin::AdminCore;
use crate::audit::{Event, Outcome, Person};
use crate::metrics::KindLabels;
use crate::store::{Hashed, PersonTag, StoreError, now_unix};

impl AdminCore {
    pub(super) fn count_elevation(&self, kind: &str) {
        self.metrics
            .elevations
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_elevation(
        &self,
        step: &'static str,
        person: Person,
        r: &ElevationRequest,
        by: String,
        comment: String,
        outcome: Outcome,
        ctx: &RequestContext,
    ) -> Result<(), ElevationError> {
        let event = Event::Elevation {
            step,
            person,
            role: r.role.clone(),
            request: short(&r.id),
            by,
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            duration_seconds: Some(r.seconds),
            until: r.until.map(rfc3339),
            comment,
            outcome,
        };
        self.record(ctx, &event)
            .map_err(|_| ElevationError::Invalid("the audit log cannot be written".into()))
    }

    pub(super) fn notice(&self, event: &'static str, r: &ElevationRequest, text: String) {
        let who = r.identity.person();
        self.notifier.send(Notice {
            event,
            text,
            data: json!({
                "request": short(&r.id),
                "idp": who.idp,
                "subject": who.subject,
                "role": r.role,
                "status": r.status.as_str(),
                "seconds": r.seconds,
                "reason": r.reason,
                "ticket": r.ticket,
                "until": r.until,
                "approvals": r.approvals.iter().map(|a| a.by.clone()).collect::<Vec<_>>(),
                "break_glass": r.break_glass,
            }),
        });
    }

    /// Ends one running elevation of `tag`'s person: the request marked ended, the role
    /// taken from their elevations, in one transaction; audited and notified.
    pub(crate) async fn end_one(
        &self,
        tag: &PersonTag,
        id: &str,
        why: &str,
        by: &str,
        ctx: &RequestContext,
    ) -> Result<Option<RequestView>, ElevationError> {
        for _ in 0..5 {
            let hash = Hashed::of(id);
            let Some(stored) = self
                .store
                .load_owned::<ElevationRequest>(tag, &hash)
                .await?
            else {
                let _ = self.store.entry_remove::<RunningEntry>(id).await;
                return Ok(None);
            };
            let mut r = stored.value.clone();
            let now = now_unix();
            let el = self
                .store
                .load_owned::<Elevations>(tag, &elevations_id())
                .await?;
            let mut txn = self.store.txn(tag);
            txn.require_unchanged(&hash, &stored);
            if r.status == Status::Approved {
                r.status = Status::Ended;
                r.ended_why = Some(why.to_owned());
                r.until = Some(r.until.unwrap_or(now).min(now));
                txn.put(&hash, &r)?;
            }
            if let Some(s) = &el {
                let mut e = s.value.clone();
                e.roles.retain(|x| x.request != r.id);
                txn.require_unchanged(&elevations_id(), s);
                txn.put(&elevations_id(), &e)?;
            }
            if !self.store.commit(&txn).await? {
                continue;
            }
            let _ = self.store.entry_remove::<RunningEntry>(id).await;
            self.count_elevation("end");
            self.audit_elevation(
                "end",
                r.identity.person(),
                &r,
                by.to_owned(),
                why.to_owned(),
                Outcome::Success,
                ctx,
            )?;
            self.notice(
                "end",
                &r,
                format!(
                    "{}'s elevation to {} ended: {why}",
                    r.identity.person().subject,
                    r.role
                ),
            );
            return Ok(Some(RequestView::of(&r)));
        }
        Err(ElevationError::Conflict)
    }

    /// Ends every running elevation of `tag`'s person (a lock, a revocation).
    pub(crate) async fn end_all(&self, tag: &PersonTag, why: &str, by: &str, ctx: &RequestContext) {
        let running = match self.store.entries::<RunningEntry>().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot end the person's elevations: the state store is unavailable");
                return;
            }
        };
        for (_, e) in running.into_iter().filter(|(_, e)| e.tag == tag.as_str()) {
            if let Err(err) = self.end_one(tag, &e.id, why, by, ctx).await {
                tracing::error!(error = %err, "an elevation could not be ended");
            }
        }
    }

    /// The background work: elevations whose time is up end (audited, notified); pending
    /// requests past their wait leave the queue.
    pub(crate) async fn end_due_elevations(&self, ctx: &RequestContext) -> Result<(), StoreError> {
        let now = now_unix();
        for (name, e) in self.store.entries::<RunningEntry>().await? {
            if e.until > now {
                continue;
            }
            // The record says it ended on time; only one instance writes it.
            if !self.store.entry_remove::<RunningEntry>(&name).await? {
                continue;
            }
            let Some(tag) = PersonTag::parse(&e.tag) else {
                continue;
            };
            let stored = self
                .store
                .load_owned::<ElevationRequest>(&tag, &Hashed::of(&e.id))
                .await?;
            let Some(stored) = stored else { continue };
            let mut r = stored.value;
            if r.status == Status::Approved {
                r.status = Status::Ended;
                r.ended_why = Some("its time was up".into());
                let mut txn = self.store.txn(&tag);
                txn.put(&Hashed::of(&r.id), &r)?;
                let _ = self.store.commit(&txn).await;
            }
            self.count_elevation("end");
            let _ = self.audit_elevation(
                "end",
                r.identity.person(),
                &r,
                "rolegate".into(),
                "its time was up".into(),
                Outcome::Success,
                ctx,
            );
            self.notice(
                "end",
                &r,
                format!(
                    "{}'s elevation to {} ended: its time was up",
                    e.username, r.role
                ),
            );
        }
        for (name, q) in self.store.entries::<QueueEntry>().await? {
            if q.created + super::PENDING_FOR.as_secs() <= now {
                self.store.entry_remove::<QueueEntry>(&name).await?;
            }
        }
        Ok(())
    }

    /// Ends the elevations of the people a new lock applies to (the person of a person
    /// lock, everyone with live access in a locked group).
    pub(crate) async fn end_elevations_for_lock(
        &self,
        lock: &crate::access::locks::Lock,
        by: &str,
        ctx: &RequestContext,
    ) {
        use crate::access::locks::LockTarget;
        let why = format!("lock {} placed: {}", lock.id, lock.reason);
        let tags: Vec<PersonTag> = match &lock.target {
            LockTarget::Person { idp, subject } => vec![PersonTag::of(idp, subject)],
            LockTarget::Group { idp, group } => {
                let Ok(running) = self.store.entries::<RunningEntry>().await else {
                    tracing::error!(lock = %lock.id, "cannot end elevations: the state store is unavailable");
                    return;
                };
                let mut tags = Vec::new();
                for (_, e) in running {
                    let Some(tag) = PersonTag::parse(&e.tag) else {
                        continue;
                    };
                    let in_group = self
                        .store
                        .entry::<crate::access::admin::PersonEntry>(tag.as_str())
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|p| {
                            idp.as_deref().is_none_or(|i| i == p.idp)
                                && p.groups.iter().any(|g| g == group)
                        });
                    if in_group && !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                tags
            }
            LockTarget::Role { .. } => Vec::new(),
        };
        for tag in tags {
            self.end_all(&tag, &why, by, ctx).await;
        }
    }
}
