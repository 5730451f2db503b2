//! The use cases of just-in-time elevation: asking, deciding, ending, listing, and the
//! background end of elevations whose time is up (see the module above for where each
//! piece lives).

use super::{
    ActiveElevation, BreakGlassUse, Decision, ElevationRequest, Elevations, MAX_TEXT,
    MIN_ELEVATION, QueueEntry, RunningEntry, Status, elevations_id,
};
use crate::access::holdings::{Holding, HoldingKind};
use crate::access::locks::Principal;
use crate::access::session::{IdentityRecord, owned_id, person_of, tag_of};
use crate::access::{Access, RequestContext, Requester};
use crate::audit::{Event, Outcome};
use crate::mapping::elevation::Eligibility;
use crate::store::{Hashed, PersonTag, StoreError, Stored, now_unix, split_owned_id};

/// Why a request or a decision was refused (each audited).
#[derive(Debug, thiserror::Error)]
pub enum ElevationError {
    #[error("{0}")]
    Invalid(String),
    #[error("you are not eligible for {0}: no rule lets you ask for it (or a deny rule applies)")]
    NotEligible(String),
    #[error("there is no such request")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("this request is {0} already")]
    Decided(&'static str),
    #[error("someone else decided at the same moment; look at the request again")]
    Conflict,
    #[error("the state store is unavailable")]
    Store(#[from] StoreError),
}

impl ElevationError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotEligible(_) | Self::Forbidden(_) => 403,
            Self::NotFound => 404,
            Self::Decided(_) | Self::Conflict => 409,
            Self::Store(_) => 503,
        }
    }
}

/// What a person asks for.
pub struct NewRequest<'a> {
    pub role: &'a str,
    /// `"2h"`, `"90m"` or seconds.
    pub duration: &'a str,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
}

/// A request as pages, the API and the CLI show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestView {
    pub id: String,
    pub role: String,
    pub requester: String,
    pub status: &'static str,
    pub seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub created: u64,
    pub approvals: Vec<String>,
    pub approvals_needed: u8,
    pub until: Option<u64>,
    pub break_glass: bool,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
}

impl RequestView {
    pub(super) fn of(r: &ElevationRequest) -> Self {
        let who = r.identity.person();
        Self {
            id: r.id.clone(),
            role: r.role.clone(),
            requester: format!("{}:{}", who.idp, who.subject),
            status: r.status.as_str(),
            seconds: r.seconds,
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            created: r.created,
            approvals: r.approvals.iter().map(|a| a.by.clone()).collect(),
            approvals_needed: r.approvals_needed,
            until: r.until,
            break_glass: r.break_glass,
            decided_by: r.decision.as_ref().map(|d| d.by.clone()),
            comment: r
                .decision
                .as_ref()
                .map(|d| d.comment.clone())
                .filter(|c| !c.is_empty()),
        }
    }
}

/// A role the person may ask for, for the picker and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EligibleRole {
    pub role: String,
    pub display_name: String,
    pub max_seconds: u64,
    pub reason_required: bool,
    pub ticket_pattern: Option<String>,
    pub break_glass: bool,
    pub approvers: String,
    pub approvals: u8,
}

pub(super) fn clean_text(what: &str, s: &str, required: bool) -> Result<String, ElevationError> {
    let s = s.trim();
    if required && s.is_empty() {
        return Err(ElevationError::Invalid(format!("a {what} is required")));
    }
    if s.chars().count() > MAX_TEXT {
        return Err(ElevationError::Invalid(format!(
            "the {what} is longer than {MAX_TEXT} characters"
        )));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(ElevationError::Invalid(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(s.to_owned())
}

pub(super) fn actor_name(p: &Principal) -> String {
    let c = p.claims();
    format!("{}:{} ({})", c.idp, c.subject, c.username)
}

pub(super) fn short(id: &str) -> String {
    Hashed::of(id).as_str()[..16].to_owned()
}

pub(super) fn rfc3339(t: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
        .to_string()
}

impl Access {
    /// A refused request or decision: audited (with the person asking), then returned.
    pub(super) fn refused(
        &self,
        who: &Principal,
        role: &str,
        what: &str,
        e: ElevationError,
        ctx: &RequestContext,
    ) -> ElevationError {
        if matches!(e, ElevationError::Store(_)) {
            return e;
        }
        self.admin.count_elevation("refused");
        let event = Event::Elevation {
            step: "refused",
            person: person_of(who.identity()),
            role: role.chars().take(64).collect(),
            request: String::new(),
            by: String::new(),
            reason: format!("{what}: {e}"),
            ticket: None,
            duration_seconds: None,
            until: None,
            comment: String::new(),
            outcome: Outcome::Refused,
        };
        if let Err(err) = self.record(ctx, &event) {
            tracing::error!(error = %err, "audit log write failed for a refused elevation");
        }
        e
    }

    /// The roles `principal` may ask for now.
    pub fn eligible_roles(&self, principal: &Principal) -> Vec<EligibleRole> {
        let evaluation = self.config.rules.evaluate(principal.claims());
        evaluation
            .eligible
            .iter()
            .filter(|e| self.lock_on(principal, e.role.as_str()).is_none())
            .filter_map(|e| {
                let role = self.config.role(e.role.as_str())?;
                Some(EligibleRole {
                    role: role.id.to_string(),
                    display_name: role.display_name.clone(),
                    max_seconds: role.break_glass.unwrap_or(e.policy.max_elevation).as_secs(),
                    reason_required: e.policy.reason_required || role.break_glass.is_some(),
                    ticket_pattern: e.policy.ticket_pattern.as_ref().map(|p| {
                        p.as_str()
                            .trim_start_matches("^(?:")
                            .trim_end_matches(")$")
                            .to_owned()
                    }),
                    break_glass: role.break_glass.is_some(),
                    approvers: e
                        .approvers
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    approvals: e.policy.approvals,
                })
            })
            .collect()
    }

    pub(super) fn eligibility_of(
        &self,
        identity: &crate::idp::VerifiedIdentity,
        role: &str,
    ) -> Option<Eligibility> {
        self.config
            .rules
            .evaluate(identity.claims())
            .eligibility(role)
            .cloned()
    }

    /// Asks for an eligible role: checked against the rule's policy, then pending, or
    /// approved at once (break-glass, or the rule's automatic approval).
    pub async fn request_elevation(
        &self,
        principal: &Principal,
        new: NewRequest<'_>,
        _requester: &Requester,
        ctx: &RequestContext,
    ) -> Result<RequestView, ElevationError> {
        self.new_request(principal, &new, ctx)
            .await
            .map_err(|e| self.refused(principal, new.role, "request", e, ctx))
    }

    async fn new_request(
        &self,
        principal: &Principal,
        new: &NewRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<RequestView, ElevationError> {
        let role_name: String = new.role.chars().take(64).collect();
        let Some(role) = self.config.role(new.role) else {
            return Err(ElevationError::Invalid(format!(
                "there is no role {role_name:?}"
            )));
        };
        if self.lock_on(principal, new.role).is_some() {
            return Err(ElevationError::Forbidden(
                "access is locked; ask an administrator".into(),
            ));
        }
        let Some(eligibility) = self.eligibility_of(principal.identity(), new.role) else {
            return Err(ElevationError::NotEligible(role_name));
        };
        let policy = &eligibility.policy;
        let max = role.break_glass.unwrap_or(policy.max_elevation);
        let secs = crate::access::grant::parse_duration(new.duration).ok_or_else(|| {
            ElevationError::Invalid(format!(
                "{:?} is not a duration such as \"2h\" or \"30m\"",
                new.duration.chars().take(32).collect::<String>()
            ))
        })?;
        if secs < MIN_ELEVATION.as_secs() || secs > max.as_secs() {
            return Err(ElevationError::Invalid(format!(
                "the duration must be between {} and {} for {}",
                humantime::format_duration(MIN_ELEVATION),
                humantime::format_duration(max),
                role.id
            )));
        }
        let reason = clean_text(
            "reason",
            new.reason,
            policy.reason_required || role.break_glass.is_some(),
        )?;
        let ticket = match (
            &policy.ticket_pattern,
            new.ticket.map(str::trim).filter(|t| !t.is_empty()),
        ) {
            (Some(_), None) => {
                return Err(ElevationError::Invalid(
                    "a ticket reference is required".into(),
                ));
            }
            (Some(p), Some(t)) if t.len() > 100 || !p.is_match(t) => {
                return Err(ElevationError::Invalid(
                    "the ticket reference does not have the form this role asks for".into(),
                ));
            }
            (_, t) => t.map(|t| clean_text("ticket", t, false)).transpose()?,
        };
        if principal.elevation(new.role).is_some() {
            return Err(ElevationError::Decided("running"));
        }
        let tag = tag_of(principal.identity());
        let now = now_unix();
        let break_glass = role.break_glass.is_some();
        let auto = !break_glass
            && policy.auto_approve.as_ref().is_some_and(|a| {
                a.condition
                    .as_ref()
                    .is_none_or(|c| c.evaluate(principal.claims()).matched)
                    && a.window.as_ref().is_none_or(|w| {
                        let t = chrono::DateTime::from_timestamp(now as i64, 0).unwrap_or_default();
                        use chrono::{Datelike, Timelike};
                        w.contains(
                            t.weekday().num_days_from_monday() as u8,
                            (t.hour() * 60 + t.minute()) as u16,
                        )
                    })
            });
        let mut request = ElevationRequest {
            id: owned_id(&tag),
            identity: IdentityRecord::from_identity(principal.identity()),
            role: role.id.to_string(),
            seconds: secs,
            reason,
            ticket,
            created: now,
            status: Status::Pending,
            approvals: Vec::new(),
            decision: None,
            until: None,
            break_glass,
            approvals_needed: policy.approvals,
            ended_why: None,
        };
        if break_glass || auto {
            let d = Decision {
                by: if break_glass {
                    "break-glass".into()
                } else {
                    "automatic".into()
                },
                by_tag: String::new(),
                at: now,
                comment: String::new(),
            };
            request.status = Status::Approved;
            request.until = Some(now + secs);
            request.decision = Some(d);
        }
        // Everyone's own pending requests for the role: one at a time.
        let stored = self
            .store
            .load_owned::<Elevations>(&tag, &elevations_id())
            .await?;
        if let Some(s) = &stored {
            for (id, keep) in &s.value.requests {
                if *keep <= now {
                    continue;
                }
                if let Some((t, h)) = split_owned_id(id)
                    && let Some(r) = self.store.load_owned::<ElevationRequest>(&t, &h).await?
                    && r.value.role == request.role
                    && r.value.status == Status::Pending
                    && r.value.lapses() > now
                {
                    return Err(ElevationError::Decided("pending"));
                }
            }
        }
        self.write_request(&tag, &request, stored, ctx).await?;
        let who = person_of(principal.identity());
        match request.status {
            Status::Approved if break_glass => {
                tracing::error!(idp = %who.idp, subject = %who.subject, role = %request.role, reason = %request.reason, "BREAK-GLASS: role granted without approval");
                self.admin.count_elevation("break_glass");
                self.admin.audit_elevation(
                    "break_glass",
                    who,
                    &request,
                    actor_name(principal),
                    String::new(),
                    Outcome::Success,
                    ctx,
                )?;
                let _ = self
                    .store
                    .entry_put(
                        &short(&request.id),
                        &BreakGlassUse {
                            id: short(&request.id),
                            idp: request.identity.person().idp,
                            subject: request.identity.person().subject,
                            username: principal.claims().username.clone(),
                            role: request.role.clone(),
                            reason: request.reason.clone(),
                            at: now,
                            until: now + secs,
                        },
                    )
                    .await;
                self.admin.notice(
                    "break_glass",
                    &request,
                    format!(
                        ":rotating_light: BREAK-GLASS: {} took {} for {} — \"{}\"",
                        principal.claims().username,
                        request.role,
                        humantime::format_duration(std::time::Duration::from_secs(secs)),
                        request.reason
                    ),
                );
            }
            Status::Approved => {
                self.admin.count_elevation("approved");
                self.admin.audit_elevation(
                    "start",
                    who,
                    &request,
                    "automatic".into(),
                    String::new(),
                    Outcome::Success,
                    ctx,
                )?;
                self.admin.notice(
                    "start",
                    &request,
                    format!(
                        "{} has {} for {} (approved automatically) — \"{}\"",
                        principal.claims().username,
                        request.role,
                        humantime::format_duration(std::time::Duration::from_secs(secs)),
                        request.reason
                    ),
                );
            }
            _ => {
                self.admin.count_elevation("request");
                self.admin.audit_elevation(
                    "request",
                    who,
                    &request,
                    String::new(),
                    String::new(),
                    Outcome::Success,
                    ctx,
                )?;
                self.admin.notice(
                    "request",
                    &request,
                    format!(
                        "{} asks for {} for {} — \"{}\"{} (approve at {}/requests)",
                        principal.claims().username,
                        request.role,
                        humantime::format_duration(std::time::Duration::from_secs(secs)),
                        request.reason,
                        request
                            .ticket
                            .as_ref()
                            .map(|t| format!(" [{t}]"))
                            .unwrap_or_default(),
                        self.config.server.public_url.as_str().trim_end_matches('/')
                    ),
                );
            }
        }
        Ok(RequestView::of(&request))
    }

    /// Writes a new request in the requester's slot: the request (listed), their
    /// elevations record (the request noted, the role added when approved at once), all
    /// at once; then the shared tables.
    async fn write_request(
        &self,
        tag: &PersonTag,
        request: &ElevationRequest,
        mut stored: Option<Stored<Elevations>>,
        ctx: &RequestContext,
    ) -> Result<(), ElevationError> {
        let identity = request
            .identity
            .clone()
            .into_identity()
            .map_err(ElevationError::Store)?;
        let request_id = Hashed::of(&request.id);
        for _ in 0..5 {
            let now = now_unix();
            let mut el = stored.as_ref().map(|s| s.value.clone()).unwrap_or_default();
            el.roles.retain(|r| r.until > now);
            el.requests.retain(|r| r.1 > now);
            el.requests.push((
                request.id.clone(),
                request.lapses() + request.seconds + super::KEEP_DECIDED,
            ));
            if el.requests.len() > 20 {
                el.requests.remove(0);
            }
            if let (Status::Approved, Some(until)) = (request.status, request.until) {
                el.roles.push(ActiveElevation {
                    role: request.role.clone(),
                    until,
                    request: request.id.clone(),
                });
            }
            let holding = Holding::new(
                HoldingKind::ElevationRequest,
                &identity,
                "web",
                None,
                request.lapses(),
                ctx,
            );
            let el_holding = Holding::new(
                HoldingKind::Elevation,
                &identity,
                "web",
                None,
                el.last_end(),
                ctx,
            );
            let mut txn = self.store.txn(tag);
            match &stored {
                Some(s) => txn.require_unchanged(&elevations_id(), s),
                None => txn.require_absent::<Elevations>(&elevations_id()),
            };
            txn.put_listed(&request_id, request, &holding)?;
            txn.put_listed(&elevations_id(), &el, &el_holding)?;
            if self.store.commit(&txn).await? {
                match request.status {
                    Status::Pending => {
                        self.store
                            .entry_put(
                                &request.id,
                                &QueueEntry {
                                    id: request.id.clone(),
                                    identity: request.identity.clone(),
                                    role: request.role.clone(),
                                    seconds: request.seconds,
                                    reason: request.reason.clone(),
                                    ticket: request.ticket.clone(),
                                    created: request.created,
                                    approvals: Vec::new(),
                                    approvals_needed: request.approvals_needed,
                                },
                            )
                            .await?;
                    }
                    Status::Approved => self.note_running(request).await?,
                    _ => {}
                }
                return Ok(());
            }
            stored = self
                .store
                .load_owned::<Elevations>(tag, &elevations_id())
                .await?;
        }
        Err(ElevationError::Conflict)
    }

    pub(super) async fn note_running(&self, r: &ElevationRequest) -> Result<(), StoreError> {
        let who = r.identity.person();
        self.store
            .entry_put(
                &r.id,
                &RunningEntry {
                    id: r.id.clone(),
                    tag: r.identity.tag().to_string(),
                    idp: who.idp,
                    subject: who.subject,
                    username: r
                        .identity
                        .clone()
                        .into_identity()
                        .map(|i| i.claims().username.clone())
                        .unwrap_or_default(),
                    role: r.role.clone(),
                    until: r.until.unwrap_or(0),
                    break_glass: r.break_glass,
                    reason: r.reason.clone(),
                },
            )
            .await
            .map(|_| ())
    }

    pub(super) async fn load_request(
        &self,
        id: &str,
    ) -> Result<(PersonTag, Stored<ElevationRequest>), ElevationError> {
        let (tag, hash) = split_owned_id(id).ok_or(ElevationError::NotFound)?;
        let stored = self
            .store
            .load_owned::<ElevationRequest>(&tag, &hash)
            .await?
            .ok_or(ElevationError::NotFound)?;
        Ok((tag, stored))
    }
}
