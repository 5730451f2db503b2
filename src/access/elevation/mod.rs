//! Just-in-time elevation: a person asks for a role a rule makes *eligible*, for a while,
//! with a reason; someone the rule names approves (or the rule approves by itself, or the
//! role is break-glass); the role is then theirs until a fixed end.
//!
//! Where things live: a request is an [`ElevationRequest`] in the requester's slot,
//! listed in their index (a revocation ends it with everything else); the roles held now
//! are one [`Elevations`] record in the same slot, also listed. A decision is a
//! compare-and-set on the request, and the grant it makes is written in the same
//! transaction: of two approvers clicking at once on two instances, one decides (the
//! other is told it was decided). Pending requests are also in the shared table
//! `elevation_queue` (what approvers see), active elevations in `elevations_active` (what
//! the background task ends on time, with their audit record and notice).
//!
//! `admit` reads the person's [`Elevations`] at every request; the role menu and
//! authorization count an elevated role only while it is still eligible (the rules are
//! evaluated at the request, deny still wins) and cap sessions at the time left.

mod decide;
mod end;
pub mod notify;
mod requests;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::session::IdentityRecord;
use crate::store::{Collection, Hashed, PersonTag, Record, StoreError, now_unix, until};

pub use requests::{ElevationError, NewRequest, RequestView};

/// How long a request waits for a decision.
pub const PENDING_FOR: Duration = Duration::from_secs(24 * 3600);
/// The shortest elevation asked for.
pub const MIN_ELEVATION: Duration = Duration::from_secs(10);
/// The longest reason or comment, in characters.
pub const MAX_TEXT: usize = 500;
/// How long a decided request stays (to be looked at) after its end.
const KEEP_DECIDED: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// Ended before its end, by the requester, an administrator, a lock or a revocation.
    Ended,
    /// No decision in time.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Ended => "ended",
            Self::Expired => "expired",
        }
    }
}

/// One decision (or approval) on a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// `IDP:SUBJECT (user name)`, or `automatic` / `break-glass`.
    pub by: String,
    /// The approver's person tag (an approver counts once; never the requester).
    #[serde(default)]
    pub by_tag: String,
    pub at: u64,
    #[serde(default)]
    pub comment: String,
}

/// A request for an eligible role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElevationRequest {
    /// The id the pages and the API use (`TAG.RANDOM`: it names the requester's slot).
    pub id: String,
    pub(super) identity: IdentityRecord,
    pub role: String,
    pub seconds: u64,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    pub created: u64,
    pub status: Status,
    #[serde(default)]
    pub approvals: Vec<Decision>,
    /// The final decision (the approval that completed it, or the denial).
    #[serde(default)]
    pub decision: Option<Decision>,
    /// When the elevation ends (once approved).
    #[serde(default)]
    pub until: Option<u64>,
    #[serde(default)]
    pub break_glass: bool,
    /// How many approvals it needs.
    pub approvals_needed: u8,
    /// Why it ended (when it did before its end).
    #[serde(default)]
    pub ended_why: Option<String>,
}

impl ElevationRequest {
    fn lapses(&self) -> u64 {
        self.created + PENDING_FOR.as_secs()
    }
}

impl Record for ElevationRequest {
    const KIND: &'static str = "elevation:request";
    fn ttl(&self, now: u64) -> Duration {
        let end = self.until.unwrap_or(0).max(self.lapses()) + KEEP_DECIDED;
        until(end, now)
    }
}

/// One role held now through an approved request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveElevation {
    pub role: String,
    pub until: u64,
    pub request: String,
}

/// The roles a person holds through approved requests (one record per person).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Elevations {
    pub(super) roles: Vec<ActiveElevation>,
    /// Their recent requests: id, and until when it is kept.
    #[serde(default)]
    pub(super) requests: Vec<(String, u64)>,
}

impl Elevations {
    fn last_end(&self) -> u64 {
        self.roles
            .iter()
            .map(|r| r.until)
            .chain(self.requests.iter().map(|r| r.1))
            .max()
            .unwrap_or(0)
    }
}

impl Record for Elevations {
    const KIND: &'static str = "elevations";
    fn ttl(&self, now: u64) -> Duration {
        until(self.last_end(), now)
    }
}

pub(super) fn elevations_id() -> Hashed {
    Hashed::of("elevations")
}

/// A pending request, as approvers see it (the shared table `elevation_queue`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub(super) identity: IdentityRecord,
    pub role: String,
    pub seconds: u64,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    pub created: u64,
    pub approvals: Vec<String>,
    pub approvals_needed: u8,
}

impl Collection for QueueEntry {
    const NAME: &'static str = "elevation_queue";
}

/// An elevation running now, for the background task that ends it on time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningEntry {
    pub id: String,
    pub tag: String,
    pub idp: String,
    pub subject: String,
    pub username: String,
    pub role: String,
    pub until: u64,
    #[serde(default)]
    pub break_glass: bool,
    #[serde(default)]
    pub reason: String,
}

impl Collection for RunningEntry {
    const NAME: &'static str = "elevations_active";
}

/// A break-glass use, kept for review (the shared table `break_glass`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakGlassUse {
    pub id: String,
    pub idp: String,
    pub subject: String,
    pub username: String,
    pub role: String,
    pub reason: String,
    pub at: u64,
    pub until: u64,
}

impl Collection for BreakGlassUse {
    const NAME: &'static str = "break_glass";
}

/// The roles `tag`'s person holds through elevations now (ended ones left out).
pub(super) async fn active(
    store: &crate::store::Store,
    tag: &PersonTag,
) -> Result<Vec<ActiveElevation>, StoreError> {
    let now = now_unix();
    Ok(store
        .load_owned::<Elevations>(tag, &elevations_id())
        .await?
        .map(|s| s.value.roles)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.until > now)
        .collect())
}
