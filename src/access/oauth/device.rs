//! The device authorization grant (RFC 8628), for a CLI with no browser: SSH sessions,
//! containers, headless machines.
//!
//! The CLI gets a `device_code` (256 bits, its secret) and a `user_code` for the person:
//! 8 characters from 20 consonants (no vowels: no words; no look-alikes), shown as
//! `XXXX-XXXX`, read case-insensitively with or without the dash. Both are stored only
//! hashed (a user code has 34.6 bits and lives minutes: its hash is not a secret against
//! a determined offline search, which is why a copy of the store never gets anyone in
//! without the device code too). The person signs in at `/device`, enters the code, sees
//! which client and machine asked and when, and approves with a click (a pre-filled link
//! never approves by itself). The approval is a record of the person's, listed in their
//! index until the polling client collects it. Entering codes is rate limited per IP and
//! globally; after 5 wrong codes an IP is locked out for the window. Polling faster than
//! the interval answers `slow_down` and adds 5 s to it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Approval, OAuthError, TokenResponse, clean_device_name};
use crate::access::holdings::{Holding, HoldingKind};
use crate::access::session::{IdentityRecord, person_of, random_token, tag_of};
use crate::access::{Access, Audited, RequestContext};
use crate::audit::{Event, Outcome};
use crate::store::{FirstUse, Hashed, PersonTag, Record, Window, now_unix, until};

/// The user-code alphabet: 20 consonants.
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Wrong codes one IP may enter per window before it is locked out.
const MAX_WRONG_PER_IP: u64 = 5;
/// Wrong codes all IPs together may enter per window.
const MAX_WRONG_GLOBAL: u64 = 500;
const WRONG_WINDOW: Duration = Duration::from_secs(600);
/// How long a device record outlives its code, so a late poll hears `expired_token`.
const AFTERLIFE: u64 = 600;

#[derive(Serialize, Deserialize, Clone)]
enum DeviceStatus {
    Pending,
    /// Approved by the person whose tag this is: the approval waits in their records.
    Approved(PersonTag),
    Denied,
}

#[derive(Serialize, Deserialize, Clone)]
struct DeviceRecord {
    client_id: String,
    device_name: String,
    client_ip: String,
    created: u64,
    expires: u64,
    status: DeviceStatus,
}

impl Record for DeviceRecord {
    const KIND: &'static str = "oauth:device";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires + AFTERLIFE, now)
    }
}

/// A user code, naming its device code (both hashed).
#[derive(Serialize, Deserialize)]
struct UserCode {
    device: Hashed,
    expires: u64,
}

impl Record for UserCode {
    const KIND: &'static str = "oauth:usercode";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

/// An approved device login waiting for its client's next poll.
#[derive(Serialize, Deserialize)]
struct DeviceApproval {
    approval: Approval,
    expires: u64,
}

impl Record for DeviceApproval {
    const KIND: &'static str = "oauth:device-approval";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

#[derive(Serialize, Deserialize)]
struct PollState {
    last: u64,
    interval: u64,
    expires: u64,
}

impl Record for PollState {
    const KIND: &'static str = "oauth:devicepoll";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

pub use crate::wire::DeviceAuthorization;

/// What the approval page shows about a pending device login.
pub struct DeviceView {
    pub user_code: String,
    pub client_id: String,
    pub device_name: String,
    pub client_ip: String,
    pub created: u64,
}

/// Why an entered user code leads nowhere.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeEntryError {
    #[error("that code is not valid, expired, or was already used")]
    Unknown,
    #[error("too many wrong codes; wait ten minutes before trying again")]
    Locked,
    #[error("the state store is unavailable")]
    Unavailable,
}

impl From<crate::store::StoreError> for CodeEntryError {
    fn from(_: crate::store::StoreError) -> Self {
        Self::Unavailable
    }
}

impl From<OAuthError> for CodeEntryError {
    fn from(_: OAuthError) -> Self {
        Self::Unavailable
    }
}

/// `ABCDEFGH` → `ABCD-EFGH`.
pub fn display_user_code(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// Reads a user code as a person types it: case-insensitive, dash and spaces optional.
pub fn normalize_user_code(input: &str) -> Option<String> {
    if input.len() > 32 {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == 8 && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

fn new_user_code() -> String {
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn wrong_codes(subject: &str, limit: u64) -> Window<'_> {
    Window {
        name: "wrongcode",
        subject,
        limit,
        period: WRONG_WINDOW,
    }
}

impl Access {
    /// Starts a device login for `client_id` (RFC 8628 §3.1).
    pub async fn start_device_authorization(
        &self,
        client_id: &str,
        client_secret: Option<&str>,
        device_name: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<DeviceAuthorization, OAuthError> {
        self.check_client(client_id, client_secret).await?;
        let cfg = &self.config.cli;
        let lifetime = cfg.device_code_lifetime;
        let now = now_unix();
        let expires = now + lifetime.as_secs();
        let device_code = random_token();
        let device = Hashed::of(&device_code);
        // A fresh user code; on the rare collision with a live one, draw again.
        let mut user_code = new_user_code();
        for _ in 0..5 {
            let entry = UserCode {
                device: device.clone(),
                expires,
            };
            if self.store.save_new(&Hashed::of(&user_code), &entry).await? {
                break;
            }
            user_code = new_user_code();
        }
        let record = DeviceRecord {
            client_id: client_id.to_owned(),
            device_name: clean_device_name(device_name),
            client_ip: ctx.client_ip.clone(),
            created: now,
            expires,
            status: DeviceStatus::Pending,
        };
        self.store.save(&device, &record).await?;
        let base = self.config.server.public_url.as_str().trim_end_matches('/');
        let display = display_user_code(&user_code);
        Ok(DeviceAuthorization {
            device_code,
            verification_uri: format!("{base}/device"),
            verification_uri_complete: format!("{base}/device?user_code={display}"),
            user_code: display,
            expires_in: lifetime.as_secs(),
            interval: cfg.device_poll_interval.as_secs(),
        })
    }

    async fn device_by_user_code(
        &self,
        code: &str,
    ) -> Result<Option<(Hashed, DeviceRecord)>, OAuthError> {
        let Some(entry) = self.store.load::<UserCode>(&Hashed::of(code)).await? else {
            return Ok(None);
        };
        let Some(record) = self.store.load::<DeviceRecord>(&entry.device).await? else {
            return Ok(None);
        };
        let live = matches!(record.status, DeviceStatus::Pending) && record.expires > now_unix();
        Ok(live.then_some((entry.device, record)))
    }

    /// A user code as typed at `/device`: the pending login it names, for the approval
    /// page. Wrong codes count against the IP (and all IPs) and lock out after the limit.
    pub async fn find_device_login(
        &self,
        input: &str,
        ctx: &RequestContext,
    ) -> Result<DeviceView, CodeEntryError> {
        let ip = format!("ip:{}", ctx.client_ip);
        let mine = wrong_codes(&ip, MAX_WRONG_PER_IP);
        let all = wrong_codes("all", MAX_WRONG_GLOBAL);
        if self.store.exceeded(&mine).await? || self.store.exceeded(&all).await? {
            return Err(CodeEntryError::Locked);
        }
        let code = normalize_user_code(input);
        let found = match &code {
            None => None,
            Some(code) => self.device_by_user_code(code).await?,
        };
        let (Some(code), Some((_, record))) = (code, found) else {
            self.store.hit(&mine).await?;
            self.store.hit(&all).await?;
            tracing::warn!(client_ip = %ctx.client_ip, "wrong device user code entered");
            return Err(CodeEntryError::Unknown);
        };
        Ok(DeviceView {
            user_code: display_user_code(&code),
            client_id: record.client_id,
            device_name: record.device_name,
            client_ip: record.client_ip,
            created: record.created,
        })
    }

    /// The person's decision on a device login (once: a second decision is refused).
    pub async fn decide_device_login(
        &self,
        input: &str,
        approve: bool,
        identity: &crate::access::Principal,
        ctx: &RequestContext,
    ) -> Result<(), CodeEntryError> {
        let identity = identity.identity();
        let code = normalize_user_code(input).ok_or(CodeEntryError::Unknown)?;
        let (device, mut record) = self
            .device_by_user_code(&code)
            .await?
            .ok_or(CodeEntryError::Unknown)?;
        let decided = self
            .store
            .first_use(
                "oauth:devicedecided",
                device.as_str(),
                Duration::from_secs(AFTERLIFE * 2),
            )
            .await?;
        if decided == FirstUse::Replay {
            return Err(CodeEntryError::Unknown);
        }
        let requester = self.requester_for(&record.client_id);
        if approve {
            let tag = tag_of(identity);
            let approval = DeviceApproval {
                approval: Approval {
                    identity: IdentityRecord::from_identity(identity),
                    client_id: record.client_id.clone(),
                    device_name: record.device_name.clone(),
                    approved_at: now_unix(),
                },
                expires: record.expires,
            };
            let holding = Holding::new(
                HoldingKind::DeviceApproval,
                identity,
                requester.path.as_str(),
                Some(&record.client_id),
                record.expires,
                ctx,
            )
            .with_device(&record.device_name);
            // The approval first, then the status that points to it: a client that sees
            // "approved" always finds the approval (unless it was revoked since).
            let mut txn = self.store.txn(&tag);
            txn.put_listed(&device, &approval, &holding)?;
            self.store.commit(&txn).await?;
            record.status = DeviceStatus::Approved(tag);
        } else {
            record.status = DeviceStatus::Denied;
        }
        self.store.save(&device, &record).await?;
        self.store.remove::<UserCode>(&Hashed::of(&code)).await?;
        if !approve {
            let event = Event::CliLogin {
                person: person_of(identity),
                client: requester.audit(),
                device_name: record.device_name,
                outcome: Outcome::Denied,
                reason: "the person denied the device login".into(),
                session_expires_in_seconds: None,
            };
            if let Err(e) = self.record(ctx, &event) {
                tracing::error!(error = %e, "audit write failed for a denied login");
            }
        }
        Ok(())
    }

    /// The device-code grant (RFC 8628 §3.4-3.5): pending, slow down, denied, expired, or
    /// the tokens (once).
    pub(in crate::access) async fn poll_device(
        &self,
        device_code: &str,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<Audited<TokenResponse>, OAuthError> {
        let invalid = || OAuthError::invalid_grant("unknown device_code");
        if device_code.len() > 100 {
            return Err(invalid());
        }
        let device = Hashed::of(device_code);
        let Some(record) = self.store.load::<DeviceRecord>(&device).await? else {
            return Err(invalid());
        };
        if record.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the device_code was issued to another client",
            ));
        }
        let now = now_unix();
        if record.expires <= now {
            return Err(OAuthError::new(
                "expired_token",
                "the device code expired; run `rolegate login` again",
            ));
        }
        // Polling politely: at most once per interval; each violation adds 5 s.
        let base = self.config.cli.device_poll_interval.as_secs();
        let poll = self.store.load::<PollState>(&device).await?;
        let expires = record.expires + AFTERLIFE;
        if let Some(p) = &poll
            && now < p.last + p.interval
        {
            let slowed = PollState {
                last: now,
                interval: p.interval + 5,
                expires,
            };
            self.store.save(&device, &slowed).await?;
            return Err(OAuthError::new(
                "slow_down",
                format!("poll at most every {} seconds", slowed.interval),
            ));
        }
        let next = PollState {
            last: now,
            interval: poll.map(|p| p.interval).unwrap_or(base),
            expires,
        };
        self.store.save(&device, &next).await?;
        match record.status {
            DeviceStatus::Pending => Err(OAuthError::new(
                "authorization_pending",
                "waiting for the person to approve",
            )),
            DeviceStatus::Denied => {
                self.store.remove::<DeviceRecord>(&device).await?;
                Err(OAuthError::new(
                    "access_denied",
                    "the person denied the login",
                ))
            }
            DeviceStatus::Approved(tag) => {
                // Single use: of two polls, one takes the approval. A revoked approval is
                // gone: the login ends here.
                let Some(approved) = self
                    .store
                    .take_owned::<DeviceApproval>(&tag, &device)
                    .await?
                else {
                    self.store.remove::<DeviceRecord>(&device).await?;
                    return Err(OAuthError::new(
                        "access_denied",
                        "the approval was revoked or already used",
                    ));
                };
                let tokens = self
                    .issue_token_family(approved.approval, None, ctx)
                    .await?;
                self.store.remove::<DeviceRecord>(&device).await?;
                Ok(tokens)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_consonants_read_loosely() {
        for _ in 0..200 {
            let c = new_user_code();
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)), "{c}");
            let shown = display_user_code(&c);
            assert_eq!(shown.len(), 9);
            assert_eq!(normalize_user_code(&shown).as_deref(), Some(c.as_str()));
            assert_eq!(
                normalize_user_code(&shown.to_lowercase()).as_deref(),
                Some(c.as_str())
            );
        }
        assert_eq!(
            normalize_user_code("bcdf ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(ALPHABET.len(), 20);
    }
}
