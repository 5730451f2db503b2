//! Deciding and looking at requests: the approvers' queue, a person's own requests, one
//! request, a decision (once: a compare-and-set, the grant in the same transaction), and
//! ending a running elevation early.

use super::requests::{ElevationError, RequestView, actor_name, clean_text, rfc3339};
use super::{
    ActiveElevation, BreakGlassUse, Decision, ElevationRequest, Elevations, QueueEntry, Status,
    elevations_id,
};
use crate::access::Access;
use crate::access::RequestContext;
use crate::access::holdings::{Holding, HoldingKind};
use crate::access::locks::Principal;
use crate::access::session::{person_of, tag_of};
use crate::audit::Outcome;
use crate::store::{Hashed, StoreError, now_unix, split_owned_id};

impl Access {
    /// Requests `principal` may decide now (pending, not theirs, they satisfy the rule's
    /// approvers, not already approved by them).
    pub async fn approvable(&self, principal: &Principal) -> Result<Vec<RequestView>, StoreError> {
        // Without an eligible rule there is nothing to approve: no store read (the role
        // picker asks at every view).
        if !self.config.rules.has_eligible() {
            return Ok(Vec::new());
        }
        let now = now_unix();
        let me = tag_of(principal.identity());
        let mut out = Vec::new();
        for (name, e) in self.store.entries::<QueueEntry>().await? {
            if e.created + super::PENDING_FOR.as_secs() <= now {
                let _ = self.store.entry_remove::<QueueEntry>(&name).await;
                continue;
            }
            let Ok(identity) = e.identity.clone().into_identity() else {
                continue;
            };
            if tag_of(&identity) == me
                || e.approvals.iter().any(|a| {
                    a.contains(&format!(
                        "{}:{}",
                        principal.claims().idp,
                        principal.claims().subject
                    ))
                })
            {
                continue;
            }
            let may = self
                .eligibility_of(&identity, &e.role)
                .is_some_and(|el| el.may_approve(principal.claims()));
            if may {
                let who = e.identity.person();
                out.push(RequestView {
                    id: e.id.clone(),
                    role: e.role.clone(),
                    requester: format!(
                        "{}:{} ({})",
                        who.idp,
                        who.subject,
                        identity.claims().username
                    ),
                    status: "pending",
                    seconds: e.seconds,
                    reason: e.reason.clone(),
                    ticket: e.ticket.clone(),
                    created: e.created,
                    approvals: e.approvals.clone(),
                    approvals_needed: e.approvals_needed,
                    until: None,
                    break_glass: false,
                    decided_by: None,
                    comment: None,
                });
            }
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    /// A person's own requests, newest first.
    pub async fn my_requests(&self, principal: &Principal) -> Result<Vec<RequestView>, StoreError> {
        if !self.config.rules.has_eligible() {
            return Ok(Vec::new());
        }
        let tag = tag_of(principal.identity());
        let Some(el) = self
            .store
            .load_owned::<Elevations>(&tag, &elevations_id())
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (id, _) in el.value.requests.iter().rev() {
            if let Some((t, h)) = split_owned_id(id)
                && let Some(r) = self.store.load_owned::<ElevationRequest>(&t, &h).await?
            {
                let mut r = r.value;
                if r.status == Status::Pending && r.lapses() <= now_unix() {
                    r.status = Status::Expired;
                }
                out.push(RequestView::of(&r));
            }
        }
        Ok(out)
    }

    /// One request, for its requester, anyone who may decide it, or an administrator.
    pub async fn elevation_request(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<RequestView, ElevationError> {
        let (tag, stored) = self.load_request(id).await?;
        let r = stored.value;
        let mine = tag == tag_of(principal.identity());
        let approver = self
            .eligibility_of(&r.identity.clone().into_identity()?, &r.role)
            .is_some_and(|e| e.may_approve(principal.claims()));
        if !(mine || approver || self.is_admin(principal)) {
            return Err(ElevationError::NotFound);
        }
        let mut view = RequestView::of(&r);
        if r.status == Status::Pending && r.lapses() <= now_unix() {
            view.status = "expired";
        }
        Ok(view)
    }

    fn is_admin(&self, principal: &Principal) -> bool {
        self.config
            .admin
            .when
            .as_ref()
            .is_some_and(|c| c.evaluate(principal.claims()).matched)
    }

    /// Approves or denies a pending request (once: a compare-and-set on the request; the
    /// grant is written in the same transaction).
    pub async fn decide_elevation(
        &self,
        principal: &Principal,
        id: &str,
        approve: bool,
        comment: &str,
        ctx: &RequestContext,
    ) -> Result<RequestView, ElevationError> {
        self.decide_once(principal, id, approve, comment, ctx)
            .await
            .map_err(|e| self.refused(principal, "", "decision", e, ctx))
    }

    async fn decide_once(
        &self,
        principal: &Principal,
        id: &str,
        approve: bool,
        comment: &str,
        ctx: &RequestContext,
    ) -> Result<RequestView, ElevationError> {
        let comment = clean_text("comment", comment, false)?;
        let me = tag_of(principal.identity());
        for _ in 0..5 {
            let (tag, stored) = self.load_request(id).await?;
            let mut r = stored.value.clone();
            if tag == me {
                return Err(ElevationError::Forbidden(
                    "you cannot decide your own request".into(),
                ));
            }
            let requester = r.identity.clone().into_identity()?;
            // The rules now: the requester must still be eligible, the approver must be
            // one the rule names.
            let Some(eligibility) = self.eligibility_of(&requester, &r.role) else {
                return Err(ElevationError::Forbidden(
                    "the requester is no longer eligible for this role".into(),
                ));
            };
            if !eligibility.may_approve(principal.claims()) {
                return Err(ElevationError::Forbidden(
                    "you are not an approver of this request".into(),
                ));
            }
            let now = now_unix();
            if r.status != Status::Pending {
                return Err(ElevationError::Decided(r.status.as_str()));
            }
            if r.lapses() <= now {
                return Err(ElevationError::Decided("expired"));
            }
            if r.approvals.iter().any(|a| a.by_tag == me.as_str()) {
                return Err(ElevationError::Decided("approved by you"));
            }
            let d = Decision {
                by: actor_name(principal),
                by_tag: me.to_string(),
                at: now,
                comment: comment.clone(),
            };
            let needed = r.approvals_needed.max(eligibility.policy.approvals);
            let mut txn = self.store.txn(&tag);
            txn.require_unchanged(&Hashed::of(&r.id), &stored);
            let mut el_stored = None;
            if !approve {
                r.status = Status::Denied;
                r.decision = Some(d.clone());
            } else {
                r.approvals.push(d.clone());
                if r.approvals.len() >= usize::from(needed) {
                    r.status = Status::Approved;
                    r.decision = Some(d.clone());
                    r.until = Some(now + r.seconds);
                    let s = self
                        .store
                        .load_owned::<Elevations>(&tag, &elevations_id())
                        .await?;
                    let mut el = s.as_ref().map(|s| s.value.clone()).unwrap_or_default();
                    el.roles.retain(|x| x.until > now && x.role != r.role);
                    el.roles.push(ActiveElevation {
                        role: r.role.clone(),
                        until: now + r.seconds,
                        request: r.id.clone(),
                    });
                    match &s {
                        Some(s) => txn.require_unchanged(&elevations_id(), s),
                        None => txn.require_absent::<Elevations>(&elevations_id()),
                    };
                    let holding = Holding::new(
                        HoldingKind::Elevation,
                        &requester,
                        "web",
                        None,
                        el.last_end(),
                        ctx,
                    );
                    txn.put_listed(&elevations_id(), &el, &holding)?;
                    el_stored = Some(());
                }
            }
            let holding = Holding::new(
                HoldingKind::ElevationRequest,
                &requester,
                "web",
                None,
                r.lapses().max(r.until.unwrap_or(0)),
                ctx,
            );
            txn.put_listed(&Hashed::of(&r.id), &r, &holding)?;
            if !self.store.commit(&txn).await? {
                continue; // another decision came first: look again
            }
            let who = person_of(&requester);
            let name = requester.claims().username.clone();
            match r.status {
                Status::Pending => {
                    let mut q = self.store.entry::<QueueEntry>(&r.id).await?;
                    if let Some(q) = q.as_mut() {
                        q.approvals.push(d.by.clone());
                        self.store.entry_put(&r.id, q).await?;
                    }
                    self.admin.count_elevation("approval");
                    self.admin.audit_elevation(
                        "approval",
                        who,
                        &r,
                        d.by.clone(),
                        comment.clone(),
                        Outcome::Success,
                        ctx,
                    )?;
                    self.admin.notice(
                        "decision",
                        &r,
                        format!(
                            "{} approved {}'s request for {} ({} of {} approvals)",
                            principal.claims().username,
                            name,
                            r.role,
                            r.approvals.len(),
                            needed
                        ),
                    );
                }
                Status::Approved => {
                    let _ = el_stored;
                    self.store.entry_remove::<QueueEntry>(&r.id).await?;
                    self.note_running(&r).await?;
                    self.admin.count_elevation("approved");
                    self.admin.audit_elevation(
                        "decision",
                        who.clone(),
                        &r,
                        d.by.clone(),
                        comment.clone(),
                        Outcome::Success,
                        ctx,
                    )?;
                    self.admin.audit_elevation(
                        "start",
                        who,
                        &r,
                        d.by.clone(),
                        String::new(),
                        Outcome::Success,
                        ctx,
                    )?;
                    self.admin.notice(
                        "decision",
                        &r,
                        format!(
                            "{} approved {}'s request for {}",
                            principal.claims().username,
                            name,
                            r.role
                        ),
                    );
                    self.admin.notice(
                        "start",
                        &r,
                        format!(
                            "{} has {} until {}",
                            name,
                            r.role,
                            rfc3339(r.until.unwrap_or(0))
                        ),
                    );
                }
                _ => {
                    self.store.entry_remove::<QueueEntry>(&r.id).await?;
                    self.admin.count_elevation("denied");
                    self.admin.audit_elevation(
                        "decision",
                        who,
                        &r,
                        d.by.clone(),
                        comment.clone(),
                        Outcome::Denied,
                        ctx,
                    )?;
                    self.admin.notice(
                        "decision",
                        &r,
                        format!(
                            "{} denied {}'s request for {}{}",
                            principal.claims().username,
                            name,
                            r.role,
                            if comment.is_empty() {
                                String::new()
                            } else {
                                format!(": {comment}")
                            }
                        ),
                    );
                }
            }
            return Ok(RequestView::of(&r));
        }
        Err(ElevationError::Conflict)
    }

    /// Ends a running elevation early (its requester, or an administrator).
    pub async fn end_elevation(
        &self,
        principal: &Principal,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<RequestView, ElevationError> {
        let result = async {
            let (tag, stored) = self.load_request(id).await?;
            if tag != tag_of(principal.identity()) && !self.is_admin(principal) {
                return Err(ElevationError::NotFound);
            }
            if stored.value.status != Status::Approved
                || stored.value.until.is_none_or(|u| u <= now_unix())
            {
                return Err(ElevationError::Decided(
                    if stored.value.status == Status::Approved {
                        "over"
                    } else {
                        stored.value.status.as_str()
                    },
                ));
            }
            let why = if tag == tag_of(principal.identity()) {
                "ended by the requester".to_owned()
            } else {
                format!("ended by {}", actor_name(principal))
            };
            self.admin
                .end_one(&tag, &stored.value.id, &why, &actor_name(principal), ctx)
                .await?
                .ok_or(ElevationError::Decided("over"))
        }
        .await;
        result.map_err(|e| self.refused(principal, "", "end", e, ctx))
    }

    /// Break-glass uses, newest first (for review in the admin area).
    pub async fn break_glass_uses(&self) -> Result<Vec<BreakGlassUse>, StoreError> {
        let mut uses: Vec<BreakGlassUse> = self
            .store
            .entries::<BreakGlassUse>()
            .await?
            .into_iter()
            .map(|(_, u)| u)
            .collect();
        uses.sort_by_key(|u| std::cmp::Reverse(u.at));
        Ok(uses)
    }
}
