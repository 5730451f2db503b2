//! Broker access and refresh tokens.
//!
//! A login (code or device grant) starts a *family*: a record that lives at most
//! `cli.session_lifetime`; deleting it revokes every token of the family. Access tokens
//! live minutes. A refresh token is used once: its use returns a new pair and marks it
//! rotated. Processes on one machine refresh lazily and without locks, so within
//! `cli.refresh_reuse_interval` a rotated token returns *the same* successor pair (kept
//! encrypted under a key derived from the rotated token, so the store never holds a
//! usable token); a use after that interval is reuse — a stolen copy, or a leak — and
//! revokes the family, so the legitimate holder's next refresh fails too and the person
//! logs in again.

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Approval, OAuthError, TokenResponse, token_hash};
use crate::access::session::{now_unix, random_token};
use crate::access::{Access, RequestContext};
use crate::idp::VerifiedIdentity;
use crate::store::FirstUse;

const ACCESS_PREFIX: &str = "rga_";
const REFRESH_PREFIX: &str = "rgr_";

#[derive(Serialize, Deserialize)]
struct Family {
    approval: Approval,
    created: u64,
    expires: u64,
}

#[derive(Serialize, Deserialize)]
struct AccessRecord {
    family: String,
    expires: u64,
    /// The DPoP key thumbprint the token is bound to (apps with `dpop = "required"`).
    #[serde(default)]
    jkt: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RefreshRecord {
    family: String,
    /// When this token was used (and a successor issued); `None` while current.
    rotated_at: Option<u64>,
}

/// The successor pair, for the reuse interval.
#[derive(Serialize, Deserialize)]
struct Successor {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

fn family_key(id: &str) -> String {
    format!("oauth:family:{id}")
}
fn access_key(hash: &str) -> String {
    format!("oauth:at:{hash}")
}
fn refresh_key(hash: &str) -> String {
    format!("oauth:rt:{hash}")
}
fn grace_key(hash: &str) -> String {
    format!("oauth:grace:{hash}")
}

/// AES-256-GCM key derived from a token the client holds (the store has only its hash).
fn sealing_key(token: &str) -> LessSafeKey {
    let k = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("rolegate successor key\0{token}").as_bytes(),
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k.as_ref()).expect("32-byte key"))
}

fn seal(token: &str, plain: &[u8]) -> String {
    let nonce_bytes: [u8; 12] = rand::random();
    let mut data = plain.to_vec();
    let ok = sealing_key(token).seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::empty(),
        &mut data,
    );
    if ok.is_err() {
        return String::new();
    }
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&data);
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn open(token: &str, sealed: &str) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    if raw.len() < 12 + 16 {
        return None;
    }
    let (nonce, data) = raw.split_at(12);
    let mut data = data.to_vec();
    let plain = sealing_key(token)
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::empty(),
            &mut data,
        )
        .ok()?;
    Some(plain.to_vec())
}

/// What a valid access token stands for.
pub struct BearerGrant {
    pub identity: VerifiedIdentity,
    pub client_id: String,
    pub device_name: String,
    /// When the login (the refresh family) ends, Unix seconds.
    pub session_expires: u64,
    /// The DPoP key the token is bound to: requests must prove possession of it.
    pub jkt: Option<String>,
}

impl Access {
    /// Starts a family for an approved login and returns its first token pair.
    pub(in crate::access) async fn issue_token_family(
        &self,
        approval: Approval,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let cfg = &self.config.cli;
        let now = now_unix();
        let family_id = random_token();
        let lifetime = cfg.session_lifetime;
        let subject = approval.identity.subject().to_owned();
        let idp = approval.identity.idp().to_owned();
        let (client, device) = (approval.client_id.clone(), approval.device_name.clone());
        let family = Family {
            approval,
            created: now,
            expires: now + lifetime.as_secs(),
        };
        let json = serde_json::to_string(&family).map_err(|_| OAuthError::unavailable())?;
        self.store
            .put(&family_key(&family_id), &json, lifetime)
            .await?;
        let pair = self.new_pair(&family_id, lifetime).await?;
        let record = serde_json::json!({
            "event": "cli_login",
            "idp": idp,
            "subject": subject,
            "client_id": client,
            "device_name": device,
            "outcome": "success",
            "session_expires_in_seconds": lifetime.as_secs(),
        });
        if let Err(e) = self.audit.record(ctx, record) {
            tracing::error!(error = %e, "audit write failed; revoking the new CLI login");
            let _ = self.store.delete(&family_key(&family_id)).await;
            return Err(OAuthError::unavailable());
        }
        Ok(pair)
    }

    /// A single access token for an app (token exchange): its own short family (so it can
    /// be revoked), no refresh token, bound to a DPoP key when `jkt` is given.
    pub(in crate::access) async fn issue_app_access_token(
        &self,
        approval: Approval,
        lifetime: Duration,
        jkt: Option<String>,
    ) -> Result<(String, u64), OAuthError> {
        let now = now_unix();
        let family_id = random_token();
        let family = Family {
            approval,
            created: now,
            expires: now + lifetime.as_secs(),
        };
        let json = serde_json::to_string(&family).map_err(|_| OAuthError::unavailable())?;
        self.store
            .put(&family_key(&family_id), &json, lifetime)
            .await?;
        let token = format!("{ACCESS_PREFIX}{}", random_token());
        let at = AccessRecord {
            family: family_id,
            expires: now + lifetime.as_secs(),
            jkt,
        };
        let at = serde_json::to_string(&at).map_err(|_| OAuthError::unavailable())?;
        self.store
            .put(&access_key(&token_hash(&token)), &at, lifetime)
            .await?;
        Ok((token, lifetime.as_secs()))
    }

    /// A fresh access + refresh pair in `family`, the refresh token living as long as the
    /// family (`remaining`).
    async fn new_pair(
        &self,
        family: &str,
        remaining: Duration,
    ) -> Result<TokenResponse, OAuthError> {
        let access_lifetime = self.config.cli.access_token_lifetime.min(remaining);
        let access_token = format!("{ACCESS_PREFIX}{}", random_token());
        let refresh_token = format!("{REFRESH_PREFIX}{}", random_token());
        let at = AccessRecord {
            family: family.to_owned(),
            expires: now_unix() + access_lifetime.as_secs(),
            jkt: None,
        };
        let rt = RefreshRecord {
            family: family.to_owned(),
            rotated_at: None,
        };
        let at = serde_json::to_string(&at).map_err(|_| OAuthError::unavailable())?;
        let rt = serde_json::to_string(&rt).map_err(|_| OAuthError::unavailable())?;
        self.store
            .put(
                &access_key(&token_hash(&access_token)),
                &at,
                access_lifetime,
            )
            .await?;
        self.store
            .put(&refresh_key(&token_hash(&refresh_token)), &rt, remaining)
            .await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: access_lifetime.as_secs(),
            refresh_token,
        })
    }

    async fn family(&self, id: &str) -> Result<Option<Family>, OAuthError> {
        match self.store.get(&family_key(id)).await? {
            None => Ok(None),
            Some(json) => Ok(serde_json::from_str(&json).ok()),
        }
    }

    /// The `refresh_token` grant: rotation with reuse detection (see the module doc).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let expired = || {
            OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked; run `rolegate login`",
            )
        };
        if !refresh_token.starts_with(REFRESH_PREFIX) || refresh_token.len() > 100 {
            return Err(expired());
        }
        let hash = token_hash(refresh_token);
        let Some(json) = self.store.get(&refresh_key(&hash)).await? else {
            return Err(expired());
        };
        let rec: RefreshRecord = serde_json::from_str(&json).map_err(|_| expired())?;
        let Some(family) = self.family(&rec.family).await? else {
            return Err(expired());
        };
        if family.approval.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        let now = now_unix();
        let interval = self.config.cli.refresh_reuse_interval.as_secs();
        if let Some(rotated_at) = rec.rotated_at {
            if now.saturating_sub(rotated_at) <= interval {
                return self.successor(refresh_token, &hash).await;
            }
            self.revoke_family(&rec.family, &family, "refresh token reused", ctx)
                .await;
            return Err(OAuthError::invalid_grant(
                "this refresh token was already used; the login is revoked for safety. Run `rolegate login`",
            ));
        }
        // Claim the rotation: of several processes refreshing at once, one creates the
        // successor; the others get the same one.
        let claim_ttl = Duration::from_secs(interval.max(1) + 5);
        if self
            .store
            .mark_used("oauth:rotating", &hash, claim_ttl)
            .await?
            == FirstUse::Replay
        {
            return self.successor(refresh_token, &hash).await;
        }
        let remaining = Duration::from_secs(family.expires.saturating_sub(now));
        if remaining < Duration::from_secs(1) {
            return Err(expired());
        }
        let pair = self.new_pair(&rec.family, remaining).await?;
        let bundle = serde_json::to_vec(&Successor {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
            expires_in: pair.expires_in,
        })
        .map_err(|_| OAuthError::unavailable())?;
        self.store
            .put(
                &grace_key(&hash),
                &seal(refresh_token, &bundle),
                Duration::from_secs(interval.max(1)),
            )
            .await?;
        let rotated = RefreshRecord {
            family: rec.family.clone(),
            rotated_at: Some(now),
        };
        let rotated = serde_json::to_string(&rotated).map_err(|_| OAuthError::unavailable())?;
        self.store
            .put(&refresh_key(&hash), &rotated, remaining)
            .await?;
        Ok(pair)
    }

    /// The successor of a just-rotated refresh token (waiting briefly for the process
    /// that is creating it).
    async fn successor(&self, token: &str, hash: &str) -> Result<TokenResponse, OAuthError> {
        for _ in 0..40 {
            if let Some(sealed) = self.store.get(&grace_key(hash)).await? {
                let plain = open(token, &sealed)
                    .ok_or_else(|| OAuthError::invalid_grant("the refresh token is invalid"))?;
                let s: Successor = serde_json::from_slice(&plain)
                    .map_err(|_| OAuthError::invalid_grant("the refresh token is invalid"))?;
                return Ok(TokenResponse {
                    access_token: s.access_token,
                    token_type: "Bearer",
                    expires_in: s.expires_in,
                    refresh_token: s.refresh_token,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(OAuthError::invalid_grant(
            "the refresh token was just used; try again",
        ))
    }

    async fn revoke_family(&self, id: &str, family: &Family, reason: &str, ctx: &RequestContext) {
        let _ = self.store.delete(&family_key(id)).await;
        tracing::warn!(client_id = %family.approval.client_id, reason, "CLI login revoked");
        let record = serde_json::json!({
            "event": "cli_logout",
            "idp": family.approval.identity.idp(),
            "subject": family.approval.identity.subject(),
            "client_id": family.approval.client_id,
            "device_name": family.approval.device_name,
            "outcome": "revoked",
            "reason": reason,
        });
        if let Err(e) = self.audit.record(ctx, record) {
            tracing::error!(error = %e, "audit write failed for a revocation");
        }
    }

    /// RFC 7009: revokes a refresh token (its whole family: the CLI login ends) or an
    /// access token. Unknown tokens are not an error.
    pub async fn revoke(&self, token: &str, ctx: &RequestContext) -> Result<(), OAuthError> {
        let hash = token_hash(token);
        if token.starts_with(REFRESH_PREFIX)
            && let Some(json) = self.store.get(&refresh_key(&hash)).await?
            && let Ok(rec) = serde_json::from_str::<RefreshRecord>(&json)
        {
            if let Some(family) = self.family(&rec.family).await? {
                self.revoke_family(&rec.family, &family, "logout", ctx)
                    .await;
            }
            self.store.delete(&refresh_key(&hash)).await?;
        } else if token.starts_with(ACCESS_PREFIX) {
            self.store.delete(&access_key(&hash)).await?;
        }
        Ok(())
    }

    /// Ends the login an access token belongs to (the AWS SSO `Logout`): its family is
    /// revoked, so its refresh token and every access token of it stop working. `false`
    /// when the token is not (or no longer) valid.
    pub async fn end_login(
        &self,
        access_token: &str,
        ctx: &RequestContext,
    ) -> Result<bool, OAuthError> {
        if !access_token.starts_with(ACCESS_PREFIX) || access_token.len() > 100 {
            return Ok(false);
        }
        let Some(json) = self
            .store
            .get(&access_key(&token_hash(access_token)))
            .await?
        else {
            return Ok(false);
        };
        let Ok(at) = serde_json::from_str::<AccessRecord>(&json) else {
            return Ok(false);
        };
        let Some(family) = self.family(&at.family).await? else {
            return Ok(false);
        };
        self.revoke_family(&at.family, &family, "logout", ctx).await;
        Ok(true)
    }

    /// The identity behind a bearer access token, if it is valid, unexpired, and its
    /// login (family) has not ended or been revoked.
    pub async fn bearer(&self, token: &str) -> Result<Option<BearerGrant>, OAuthError> {
        if !token.starts_with(ACCESS_PREFIX) || token.len() > 100 {
            return Ok(None);
        }
        let Some(json) = self.store.get(&access_key(&token_hash(token))).await? else {
            return Ok(None);
        };
        let Ok(at) = serde_json::from_str::<AccessRecord>(&json) else {
            return Ok(None);
        };
        if at.expires <= now_unix() {
            return Ok(None);
        }
        let Some(family) = self.family(&at.family).await? else {
            return Ok(None);
        };
        let identity = family
            .approval
            .identity
            .clone()
            .into_identity()
            .map_err(|_| OAuthError::unavailable())?;
        // Per person (all their logins), per minute: a cap for a stolen token in a loop
        // or a runaway script, far above what tools refreshing credentials need.
        let claims = identity.claims();
        let now = now_unix();
        let calls = self
            .store
            .incr(
                &format!(
                    "ratelimit:bearer:{}:{}",
                    token_hash(&format!("{}\n{}", claims.idp, claims.subject)),
                    now / 60
                ),
                Duration::from_secs(61),
            )
            .await?;
        if calls > self.config.cli.requests_per_minute {
            return Err(OAuthError::too_many(
                format!(
                    "more than {} requests this minute for this person; try again in {} s",
                    self.config.cli.requests_per_minute,
                    60 - now % 60
                ),
                60 - now % 60,
            ));
        }
        Ok(Some(BearerGrant {
            identity,
            client_id: family.approval.client_id,
            device_name: family.approval.device_name,
            session_expires: family.expires,
            jkt: at.jkt,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_successor_opens_only_with_the_rotated_token() {
        let token = "rgr_abc";
        let sealed = seal(token, b"secret pair");
        assert_eq!(open(token, &sealed).as_deref(), Some(&b"secret pair"[..]));
        assert_eq!(open("rgr_abd", &sealed), None);
        assert!(!sealed.contains("secret"));
    }
}
