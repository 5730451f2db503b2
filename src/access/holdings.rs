//! What a person holds: the entries of their index in the store, one per live session,
//! CLI or SDK login, app token, and pending approval or code.
//!
//! An entry is written in the same store transaction as the record it describes
//! (`store::Txn::put_listed`) and removed with it; entries of records that expired are
//! pruned when the index is read. So the index never names something that does not
//! exist, and everything that exists is in it: revoking "everything a person holds" is
//! deleting what the index lists, in one transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::RequestContext;
use crate::idp::VerifiedIdentity;
use crate::store::now_unix;

/// What kind of access an index entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldingKind {
    /// A signed-in browser.
    Session,
    /// A login of the rolegate CLI, an AWS SDK (SSO OIDC API) or an app (a token family).
    Login,
    /// A device-code login approved and not yet collected by the polling client.
    DeviceApproval,
    /// An authorization code issued to a loopback client and not yet redeemed.
    AuthorizationCode,
    /// A request for an eligible role (pending or decided).
    ElevationRequest,
    /// Roles held for a while through approved requests.
    Elevation,
}

impl HoldingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Login => "login",
            Self::DeviceApproval => "device_approval",
            Self::AuthorizationCode => "authorization_code",
            Self::ElevationRequest => "elevation_request",
            Self::Elevation => "elevation",
        }
    }
}

/// One entry of a person's index: what an operator sees of a live item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holding {
    pub kind: HoldingKind,
    pub idp: String,
    pub subject: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `web`, `cli`, `sdk` or `mobile`.
    pub client_path: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub device_name: Option<String>,
    pub created: u64,
    pub last_used: u64,
    pub expires: u64,
    pub ip: String,
    pub user_agent: String,
}

impl Holding {
    pub(super) fn new(
        kind: HoldingKind,
        identity: &VerifiedIdentity,
        client_path: &str,
        client_id: Option<&str>,
        expires: u64,
        ctx: &RequestContext,
    ) -> Self {
        let c = identity.claims();
        let now = now_unix();
        Self {
            kind,
            idp: c.idp.to_string(),
            subject: c.subject.clone(),
            username: c.username.clone(),
            email: c.email.clone(),
            client_path: client_path.to_owned(),
            client_id: client_id.map(str::to_owned),
            device_name: None,
            created: now,
            last_used: now,
            expires,
            ip: ctx.client_ip.chars().take(64).collect(),
            user_agent: ctx.user_agent.chars().take(200).collect(),
        }
    }

    pub(super) fn with_device(mut self, device_name: &str) -> Self {
        self.device_name = Some(device_name.to_owned());
        self
    }

    pub(super) fn used_now(&self) -> Self {
        Self {
            last_used: now_unix(),
            ..self.clone()
        }
    }
}

/// When this instance last wrote an item's "last used" time, so a busy session or token
/// updates its index entry at most once a minute per instance, not at every request.
#[derive(Default)]
pub(super) struct Touches(Mutex<HashMap<String, Instant>>);

/// How often an item's last use is written to the index.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Touches {
    /// Whether `item`'s last use is due to be written now (and notes that it is).
    pub(super) fn due(&self, item: &str) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() > 100_000 {
            map.retain(|_, t| now.duration_since(*t) < TOUCH_EVERY);
        }
        match map.get(item) {
            Some(t) if now.duration_since(*t) < TOUCH_EVERY => false,
            _ => {
                map.insert(item.to_owned(), now);
                true
            }
        }
    }
}
