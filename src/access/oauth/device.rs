//! The device authorization grant (RFC 8628), for a CLI with no browser: SSH sessions,
//! containers, headless machines.
//!
//! The CLI gets a `device_code` (256 bits, its secret) and a `user_code` for the person:
//! 8 characters from 20 consonants (no vowels: no words; no look-alikes), shown as
//! `XXXX-XXXX`, read case-insensitively with or without the dash. The person signs in at
//! `/device`, enters the code, sees which client and machine asked and when, and approves
//! with a click (a pre-filled link never approves by itself). Entering codes is rate
//! limited per IP and globally; after 5 wrong codes an IP is locked out for the window.
//! Polling faster than the interval answers `slow_down` and adds 5 s to it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Approval, OAuthError, TokenResponse, clean_device_name, token_hash};
use crate::access::session::{IdentityRecord, now_unix, random_token};
use crate::access::{Access, RequestContext};
use crate::idp::VerifiedIdentity;
use crate::store::FirstUse;

/// The user-code alphabet: 20 consonants.
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Wrong codes one IP may enter per window before it is locked out.
const MAX_WRONG_PER_IP: u64 = 5;
/// Wrong codes all IPs together may enter per window.
const MAX_WRONG_GLOBAL: u64 = 500;
const WRONG_WINDOW: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize, Clone)]
enum DeviceStatus {
    Pending,
    Approved(Approval),
    Denied,
}

#[derive(Serialize, Deserialize, Clone)]
struct DeviceRecord {
    client_id: String,
    device_name: String,
    client_ip: String,
    user_code: String,
    created: u64,
    expires: u64,
    status: DeviceStatus,
}

#[derive(Serialize, Deserialize)]
struct PollState {
    last: u64,
    interval: u64,
}

fn device_key(hash: &str) -> String {
    format!("oauth:device:{hash}")
}
fn user_code_key(code: &str) -> String {
    format!("oauth:usercode:{code}")
}
fn poll_key(hash: &str) -> String {
    format!("oauth:devicepoll:{hash}")
}

/// The answer to a device authorization request (RFC 8628 §3.2).
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

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

/// `ABCDEFGH` → `ABCD-EFGH`.
pub fn display_user_code(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// Reads a user code as a person types it: case-insensitive, dash and spaces optional.
pub fn normalize_user_code(input: &str) -> Option<String> {
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
        let device_code = random_token();
        let hash = token_hash(&device_code);
        // A fresh user code; on the rare collision with a live one, draw again.
        let mut user_code = new_user_code();
        for _ in 0..5 {
            if self
                .store
                .put_if_absent(&user_code_key(&user_code), &hash, lifetime)
                .await?
            {
                break;
            }
            user_code = new_user_code();
        }
        let now = now_unix();
        let record = DeviceRecord {
            client_id: client_id.to_owned(),
            device_name: clean_device_name(device_name),
            client_ip: ctx.client_ip.clone(),
            user_code: user_code.clone(),
            created: now,
            expires: now + lifetime.as_secs(),
            status: DeviceStatus::Pending,
        };
        let json = serde_json::to_string(&record).map_err(|_| OAuthError::unavailable())?;
        // Kept past its expiry so a late poll hears `expired_token`, not `invalid_grant`.
        self.store
            .put(
                &device_key(&hash),
                &json,
                lifetime + Duration::from_secs(600),
            )
            .await?;
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
    ) -> Result<Option<(String, DeviceRecord)>, OAuthError> {
        let Some(hash) = self.store.get(&user_code_key(code)).await? else {
            return Ok(None);
        };
        let Some(json) = self.store.get(&device_key(&hash)).await? else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_str::<DeviceRecord>(&json) else {
            return Ok(None);
        };
        let live = matches!(record.status, DeviceStatus::Pending) && record.expires > now_unix();
        Ok(live.then_some((hash, record)))
    }

    /// A user code as typed at `/device`: the pending login it names, for the approval
    /// page. Wrong codes count against the IP (and all IPs) and lock out after the limit.
    pub async fn find_device_login(
        &self,
        input: &str,
        ctx: &RequestContext,
    ) -> Result<DeviceView, CodeEntryError> {
        let ip_key = format!("ip:{}", ctx.client_ip);
        let wrong = |key: String| async move {
            self.store
                .get(&format!("oauth:wrongcode:{key}"))
                .await
                .map(|v| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        };
        let (mine, all) = (
            wrong(ip_key.clone())
                .await
                .map_err(|_| CodeEntryError::Unavailable)?,
            wrong("all".into())
                .await
                .map_err(|_| CodeEntryError::Unavailable)?,
        );
        if mine >= MAX_WRONG_PER_IP || all >= MAX_WRONG_GLOBAL {
            return Err(CodeEntryError::Locked);
        }
        let found = match normalize_user_code(input) {
            None => None,
            Some(code) => self
                .device_by_user_code(&code)
                .await
                .map_err(|_| CodeEntryError::Unavailable)?,
        };
        let Some((_, record)) = found else {
            for key in [ip_key, "all".into()] {
                self.store
                    .incr(&format!("oauth:wrongcode:{key}"), WRONG_WINDOW)
                    .await
                    .map_err(|_| CodeEntryError::Unavailable)?;
            }
            tracing::warn!(client_ip = %ctx.client_ip, "wrong device user code entered");
            return Err(CodeEntryError::Unknown);
        };
        Ok(DeviceView {
            user_code: display_user_code(&record.user_code),
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
        identity: &VerifiedIdentity,
        ctx: &RequestContext,
    ) -> Result<(), CodeEntryError> {
        let code = normalize_user_code(input).ok_or(CodeEntryError::Unknown)?;
        let (hash, mut record) = self
            .device_by_user_code(&code)
            .await
            .map_err(|_| CodeEntryError::Unavailable)?
            .ok_or(CodeEntryError::Unknown)?;
        let decided = self
            .store
            .mark_used("oauth:devicedecided", &hash, Duration::from_secs(1200))
            .await
            .map_err(|_| CodeEntryError::Unavailable)?;
        if decided == FirstUse::Replay {
            return Err(CodeEntryError::Unknown);
        }
        let c = identity.claims();
        record.status = if approve {
            DeviceStatus::Approved(Approval {
                identity: IdentityRecord::from_identity(identity),
                client_id: record.client_id.clone(),
                device_name: record.device_name.clone(),
            })
        } else {
            DeviceStatus::Denied
        };
        let json = serde_json::to_string(&record).map_err(|_| CodeEntryError::Unavailable)?;
        let remaining = record.expires.saturating_sub(now_unix()) + 600;
        self.store
            .put(&device_key(&hash), &json, Duration::from_secs(remaining))
            .await
            .map_err(|_| CodeEntryError::Unavailable)?;
        let _ = self.store.delete(&user_code_key(&code)).await;
        if !approve {
            let _ = self.audit.record(
                ctx,
                serde_json::json!({
                    "event": "cli_login", "idp": c.idp.as_str(), "subject": c.subject,
                    "client_id": record.client_id, "device_name": record.device_name,
                    "outcome": "denied", "reason": "the person denied the device login",
                }),
            );
        }
        Ok(())
    }

    /// The device-code grant (RFC 8628 §3.4-3.5): pending, slow down, denied, expired, or
    /// the tokens (once).
    pub async fn poll_device(
        &self,
        device_code: &str,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let invalid = || OAuthError::invalid_grant("unknown device_code");
        if device_code.len() > 100 {
            return Err(invalid());
        }
        let hash = token_hash(device_code);
        let Some(json) = self.store.get(&device_key(&hash)).await? else {
            return Err(invalid());
        };
        let record: DeviceRecord = serde_json::from_str(&json).map_err(|_| invalid())?;
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
        let poll = match self.store.get(&poll_key(&hash)).await? {
            Some(p) => serde_json::from_str::<PollState>(&p).ok(),
            None => None,
        };
        let remaining = Duration::from_secs(record.expires - now + 600);
        if let Some(p) = &poll
            && now < p.last + p.interval
        {
            let slowed = PollState {
                last: now,
                interval: p.interval + 5,
            };
            let json = serde_json::to_string(&slowed).map_err(|_| OAuthError::unavailable())?;
            self.store.put(&poll_key(&hash), &json, remaining).await?;
            return Err(OAuthError::new(
                "slow_down",
                format!("poll at most every {} seconds", slowed.interval),
            ));
        }
        let next = PollState {
            last: now,
            interval: poll.map(|p| p.interval).unwrap_or(base),
        };
        let json = serde_json::to_string(&next).map_err(|_| OAuthError::unavailable())?;
        self.store.put(&poll_key(&hash), &json, remaining).await?;
        match record.status {
            DeviceStatus::Pending => Err(OAuthError::new(
                "authorization_pending",
                "waiting for the person to approve",
            )),
            DeviceStatus::Denied => {
                let _ = self.store.delete(&device_key(&hash)).await;
                Err(OAuthError::new(
                    "access_denied",
                    "the person denied the login",
                ))
            }
            DeviceStatus::Approved(_) => {
                // Single use: of two polls, one takes the approval.
                let taken = self
                    .store
                    .take(&device_key(&hash))
                    .await?
                    .ok_or_else(invalid)?;
                let record: DeviceRecord = serde_json::from_str(&taken).map_err(|_| invalid())?;
                let DeviceStatus::Approved(approval) = record.status else {
                    return Err(invalid());
                };
                self.issue_token_family(approval, ctx).await
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
