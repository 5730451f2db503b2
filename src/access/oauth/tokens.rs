//! Broker access and refresh tokens.
//!
//! A login (code or device grant, or an app's exchange) starts a *family*: a record that
//! lives at most `cli.session_lifetime` and is listed in the person's index; deleting it
//! revokes every token of the family. Access tokens live minutes to an hour and are
//! checked against their family at every use, so ending the family ends them at once. A
//! refresh token is used once: its use returns a new pair and marks it rotated.
//! Processes on one machine refresh lazily and without locks, so within
//! `cli.refresh_reuse_interval` a rotated token returns *the same* successor pair (kept
//! encrypted under a key derived from the rotated token, so the store never holds a
//! usable token); a use after that interval is reuse — a stolen copy, or a leak — and
//! revokes the family, so the legitimate holder's next refresh fails too.
//!
//! Tokens are `rga_TAG.SECRET` / `rgr_TAG.SECRET`: every record of a family lives in the
//! person's slot, so a rotation (new pair, sealed successor, old token marked, family still
//! there) is one store transaction. A store that fails mid-rotation leaves the old refresh
//! token as it was, and the client's retry works; a store failure is `503
//! temporarily_unavailable`, never `invalid_grant`.

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Approval, OAuthError, TokenResponse};
use crate::access::holdings::{Holding, HoldingKind};
use crate::access::locks::AdmitError;
use crate::access::revalidate::Revalidated;
use crate::access::session::{IdentityRecord, owned_id, random_token};
use crate::access::{Access, Audited, RequestContext};
use crate::audit::{Event, Outcome};
use crate::store::{Hashed, PersonTag, Record, now_unix, split_owned_id, until};

const ACCESS_PREFIX: &str = "rga_";
const REFRESH_PREFIX: &str = "rgr_";

/// A login: who approved it, for which client, until when.
#[derive(Serialize, Deserialize)]
pub(in crate::access) struct Family {
    pub(in crate::access) approval: Approval,
    created: u64,
    pub(in crate::access) expires: u64,
    holding: Holding,
}

impl Record for Family {
    const KIND: &'static str = "oauth:family";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

#[derive(Serialize, Deserialize)]
struct AccessRecord {
    family: Hashed,
    expires: u64,
    /// The DPoP key thumbprint the token is bound to (apps with `dpop = "required"`).
    #[serde(default)]
    jkt: Option<String>,
}

impl Record for AccessRecord {
    const KIND: &'static str = "oauth:at";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

#[derive(Serialize, Deserialize)]
struct RefreshRecord {
    family: Hashed,
    /// The family's end: a refresh token lives as long as its login.
    expires: u64,
    /// When this token was used (and a successor issued); `None` while current.
    rotated_at: Option<u64>,
}

impl Record for RefreshRecord {
    const KIND: &'static str = "oauth:rt";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

/// The successor pair of a rotated refresh token, sealed with a key derived from it, for
/// the reuse interval.
#[derive(Serialize, Deserialize)]
struct Grace {
    sealed: String,
    expires: u64,
}

impl Record for Grace {
    const KIND: &'static str = "oauth:grace";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

/// Marks an authorization code as redeemed, naming the family it started: a replay of
/// the code revokes that family (RFC 6749 §4.1.2).
#[derive(Serialize, Deserialize)]
pub(in crate::access) struct CodeRedeemed {
    pub(in crate::access) family: Hashed,
    expires: u64,
}

impl Record for CodeRedeemed {
    const KIND: &'static str = "oauth:code-redeemed";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

#[derive(Serialize, Deserialize)]
struct Successor {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// A token of the given kind: its person tag and stored id; `None` if it is not shaped
/// like one (it is then never looked up).
fn parse_token(token: &str, prefix: &str) -> Option<(PersonTag, Hashed)> {
    if token.len() > 100 {
        return None;
    }
    split_owned_id(token.strip_prefix(prefix)?)
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

/// A fresh pair and the records to store for it.
struct NewPair {
    response: TokenResponse,
    access: (Hashed, AccessRecord),
    refresh: (Hashed, RefreshRecord),
}

/// What a valid access token stands for.
pub struct BearerGrant {
    /// The person, admitted for this request (no lock applies).
    pub identity: crate::access::Principal,
    pub client_id: String,
    pub device_name: String,
    /// When the login (the refresh family) ends, Unix seconds.
    pub session_expires: u64,
    /// The DPoP key the token is bound to: requests must prove possession of it.
    pub jkt: Option<String>,
    /// Which client the login is (for the audit of what it asks for).
    pub requester: crate::access::Requester,
}

fn expired() -> OAuthError {
    OAuthError::invalid_grant(
        "the refresh token is invalid, expired or revoked; run `rolegate login`",
    )
}

impl Access {
    fn new_pair(&self, tag: &PersonTag, family: &Hashed, family_expires: u64) -> NewPair {
        let now = now_unix();
        let access_lifetime = self
            .config
            .cli
            .access_token_lifetime
            .as_secs()
            .min(family_expires.saturating_sub(now));
        let access_token = format!("{ACCESS_PREFIX}{}", owned_id(tag));
        let refresh_token = format!("{REFRESH_PREFIX}{}", owned_id(tag));
        let access = AccessRecord {
            family: family.clone(),
            expires: now + access_lifetime,
            jkt: None,
        };
        let refresh = RefreshRecord {
            family: family.clone(),
            expires: family_expires,
            rotated_at: None,
        };
        NewPair {
            access: (Hashed::of(&access_token[ACCESS_PREFIX.len()..]), access),
            refresh: (Hashed::of(&refresh_token[REFRESH_PREFIX.len()..]), refresh),
            response: TokenResponse {
                access_token,
                token_type: "Bearer".into(),
                expires_in: access_lifetime,
                refresh_token: Some(refresh_token),
            },
        }
    }

    /// Starts a family for an approved login and returns its first token pair, released
    /// with its `cli_login` record. With `code`, the redeemed authorization code is marked
    /// with the family (a replay of the code revokes it).
    pub(in crate::access) async fn issue_token_family(
        &self,
        approval: Approval,
        code: Option<&Hashed>,
        ctx: &RequestContext,
    ) -> Result<Audited<TokenResponse>, OAuthError> {
        let identity = approval
            .identity
            .clone()
            .into_identity()
            .map_err(|_| OAuthError::unavailable())?;
        if let Err(e) = self.admit(identity.clone()).await {
            return Err(self.refused_login(&approval, e, ctx));
        }
        let requester = self.requester_for(&approval.client_id);
        let now = now_unix();
        let lifetime = self.config.cli.session_lifetime;
        let expires = now + lifetime.as_secs();
        let tag = approval.identity.tag();
        let family_id = Hashed::of(&random_token());
        let family = Family {
            holding: Holding::new(
                HoldingKind::Login,
                &identity,
                requester.path.as_str(),
                Some(&approval.client_id),
                expires,
                ctx,
            )
            .with_device(&approval.device_name),
            approval,
            created: now,
            expires,
        };
        let pair = self.new_pair(&tag, &family_id, expires);
        let mut txn = self.store.txn(&tag);
        txn.put_listed(&family_id, &family, &family.holding)?
            .put(&pair.access.0, &pair.access.1)?
            .put(&pair.refresh.0, &pair.refresh.1)?;
        if let Some(code) = code {
            txn.put(
                code,
                &CodeRedeemed {
                    family: family_id.clone(),
                    expires,
                },
            )?;
        }
        self.store.commit(&txn).await?;
        // Approved before the person's access was revoked (a code or device approval in
        // flight at that moment): the login is ended again, not handed out.
        if let Some(revoked) = self.revoked_since(&tag).await?
            && revoked >= family.approval.approved_at
        {
            let mut undo = self.store.txn(&tag);
            undo.delete::<Family>(&family_id);
            self.store.commit(&undo).await?;
            return Err(OAuthError::new(
                "access_denied",
                "this person's access was revoked after the login was approved",
            ));
        }
        self.admin.note_person(&identity, expires).await;
        let event = Event::CliLogin {
            person: family.approval.identity.person(),
            client: requester.audit(),
            device_name: family.approval.device_name.clone(),
            outcome: Outcome::Success,
            reason: String::new(),
            session_expires_in_seconds: Some(lifetime.as_secs()),
        };
        match self.release(ctx, &event, pair.response) {
            Ok(released) => Ok(released),
            Err(e) => {
                tracing::error!(error = %e, "audit write failed; revoking the new login");
                let mut undo = self.store.txn(&tag);
                undo.delete::<Family>(&family_id);
                let _ = self.store.commit(&undo).await;
                Err(OAuthError::unavailable())
            }
        }
    }

    /// A login refused by a lock (or the store): audited, and the OAuth answer.
    fn refused_login(
        &self,
        approval: &Approval,
        e: AdmitError,
        ctx: &RequestContext,
    ) -> OAuthError {
        match e {
            AdmitError::Store(e) => e.into(),
            AdmitError::Locked(l) => {
                self.audit_locked(approval.identity.person(), "login", &l, ctx);
                OAuthError::new("access_denied", l.to_string())
            }
        }
    }

    /// A single access token for an app (token exchange): its own short family (so it can
    /// be listed and revoked), no refresh token, bound to a DPoP key when `jkt` is given.
    /// The caller releases it with its record.
    pub(in crate::access) async fn store_app_access_token(
        &self,
        approval: Approval,
        lifetime: Duration,
        jkt: Option<String>,
        ctx: &RequestContext,
    ) -> Result<(String, u64), OAuthError> {
        let identity = approval
            .identity
            .clone()
            .into_identity()
            .map_err(|_| OAuthError::unavailable())?;
        let now = now_unix();
        let expires = now + lifetime.as_secs();
        let tag = approval.identity.tag();
        let family_id = Hashed::of(&random_token());
        let requester = self.requester_for(&approval.client_id);
        let family = Family {
            holding: Holding::new(
                HoldingKind::Login,
                &identity,
                requester.path.as_str(),
                Some(&approval.client_id),
                expires,
                ctx,
            )
            .with_device(&approval.device_name),
            approval,
            created: now,
            expires,
        };
        let token = format!("{ACCESS_PREFIX}{}", owned_id(&tag));
        let at = AccessRecord {
            family: family_id.clone(),
            expires,
            jkt,
        };
        let mut txn = self.store.txn(&tag);
        txn.put_listed(&family_id, &family, &family.holding)?
            .put(&Hashed::of(&token[ACCESS_PREFIX.len()..]), &at)?;
        self.store.commit(&txn).await?;
        self.admin.note_person(&identity, expires).await;
        Ok((token, lifetime.as_secs()))
    }

    /// A family of `tag`'s, if it is still live.
    pub(in crate::access) async fn family(
        &self,
        tag: &PersonTag,
        id: &Hashed,
    ) -> Result<Option<Family>, OAuthError> {
        Ok(self
            .store
            .load_owned::<Family>(tag, id)
            .await?
            .map(|s| s.value)
            .filter(|f| f.expires > now_unix()))
    }

    /// A family as stored (for a change that must not overwrite another one).
    async fn family_stored(
        &self,
        tag: &PersonTag,
        id: &Hashed,
    ) -> Result<Option<crate::store::Stored<Family>>, OAuthError> {
        Ok(self
            .store
            .load_owned::<Family>(tag, id)
            .await?
            .filter(|f| f.value.expires > now_unix()))
    }

    /// The `refresh_token` grant: rotation with reuse detection (see the module doc), the
    /// person re-validated at their IdP and admitted (no lock).
    pub(in crate::access) async fn refresh(
        &self,
        refresh_token: &str,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<Audited<TokenResponse>, OAuthError> {
        let (tag, rt_id) = parse_token(refresh_token, REFRESH_PREFIX).ok_or_else(expired)?;
        let Some(stored) = self.store.load_owned::<RefreshRecord>(&tag, &rt_id).await? else {
            return Err(expired());
        };
        let family_id = stored.value.family.clone();
        let Some(family_stored) = self.family_stored(&tag, &family_id).await? else {
            return Err(expired());
        };
        let family = &family_stored.value;
        if family.approval.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        let now = now_unix();
        let interval = self.config.cli.refresh_reuse_interval.as_secs();
        if let Some(rotated_at) = stored.value.rotated_at {
            if now.saturating_sub(rotated_at) <= interval {
                return self
                    .successor(refresh_token, &tag, &rt_id, family, ctx)
                    .await;
            }
            self.revoke_family(&tag, &family_id, family, "refresh token reused", ctx)
                .await?;
            return Err(OAuthError::invalid_grant(
                "this refresh token was already used; the login is revoked for safety. Run `rolegate login`",
            ));
        }
        // Who the person is now, at their IdP (re-validation), and no lock on them.
        let current = family
            .approval
            .identity
            .clone()
            .into_identity()
            .map_err(|_| OAuthError::unavailable())?;
        let current = match self.revalidate(&current, true, ctx).await? {
            Revalidated::NotApplicable => current,
            Revalidated::Current(fresh, _) => fresh,
            Revalidated::Revoked => {
                return Err(OAuthError::invalid_grant(
                    "the identity provider ended your access; the login is revoked",
                ));
            }
            Revalidated::Unconfirmed(idp) => {
                return Err(OAuthError::new(
                    "temporarily_unavailable",
                    format!("{idp} cannot confirm your access right now; try again later"),
                ));
            }
        };
        if let Err(e) = self.admit(current.clone()).await {
            return Err(self.refused_login(&family.approval, e, ctx));
        }
        let mut renewed = Family {
            approval: family.approval.clone(),
            created: family.created,
            expires: family.expires,
            holding: family.holding.used_now(),
        };
        renewed.approval.identity = IdentityRecord::from_identity(&current);
        let pair = self.new_pair(&tag, &family_id, family.expires);
        let bundle = serde_json::to_vec(&Successor {
            access_token: pair.response.access_token.clone(),
            refresh_token: pair.response.refresh_token.clone().unwrap_or_default(),
            expires_in: pair.response.expires_in,
        })
        .map_err(|_| OAuthError::unavailable())?;
        let grace = Grace {
            sealed: seal(refresh_token, &bundle),
            // A second more than the interval: the check above is in whole seconds.
            expires: now + interval + 1,
        };
        let rotated = RefreshRecord {
            family: stored.value.family.clone(),
            expires: stored.value.expires,
            rotated_at: Some(now),
        };
        // One transaction: of several processes refreshing at once exactly one rotates
        // (the refresh token must still be as read, and the family must still exist);
        // a failure anywhere leaves everything as it was.
        let mut txn = self.store.txn(&tag);
        txn.require_unchanged(&rt_id, &stored)
            .require_unchanged(&family_id, &family_stored)
            .put(&pair.access.0, &pair.access.1)?
            .put(&pair.refresh.0, &pair.refresh.1)?
            .put(&rt_id, &grace)?
            .put(&rt_id, &rotated)?
            .put(&family_id, &renewed)?
            .relist::<Family>(&family_id, &renewed.holding, family.ttl(now))?;
        if !self.store.commit(&txn).await? {
            // Another process rotated it just now (or the login ended): its successor.
            return self
                .successor(refresh_token, &tag, &rt_id, family, ctx)
                .await;
        }
        self.release_refresh(ctx, family, pair.response)
    }

    fn release_refresh(
        &self,
        ctx: &RequestContext,
        family: &Family,
        response: TokenResponse,
    ) -> Result<Audited<TokenResponse>, OAuthError> {
        let event = Event::TokenRefresh {
            person: family.approval.identity.person(),
            client: self.requester_for(&family.approval.client_id).audit(),
            device_name: family.approval.device_name.clone(),
            outcome: Outcome::Success,
        };
        self.release(ctx, &event, response).map_err(|e| {
            tracing::error!(error = %e, "audit write failed; not handing out refreshed tokens");
            OAuthError::unavailable()
        })
    }

    /// The successor of a just-rotated refresh token.
    async fn successor(
        &self,
        token: &str,
        tag: &PersonTag,
        id: &Hashed,
        family: &Family,
        ctx: &RequestContext,
    ) -> Result<Audited<TokenResponse>, OAuthError> {
        let Some(grace) = self.store.load_owned::<Grace>(tag, id).await? else {
            return Err(expired());
        };
        let plain = open(token, &grace.value.sealed)
            .ok_or_else(|| OAuthError::invalid_grant("the refresh token is invalid"))?;
        let s: Successor = serde_json::from_slice(&plain)
            .map_err(|_| OAuthError::invalid_grant("the refresh token is invalid"))?;
        self.release_refresh(
            ctx,
            family,
            TokenResponse {
                access_token: s.access_token,
                token_type: "Bearer".into(),
                expires_in: s.expires_in,
                refresh_token: Some(s.refresh_token),
            },
        )
    }

    /// Ends a family (every token of a login) and audits why.
    pub(in crate::access) async fn revoke_family(
        &self,
        tag: &PersonTag,
        id: &Hashed,
        family: &Family,
        reason: &str,
        ctx: &RequestContext,
    ) -> Result<(), OAuthError> {
        let mut txn = self.store.txn(tag);
        txn.delete::<Family>(id);
        self.store.commit(&txn).await?;
        tracing::warn!(client_id = %family.approval.client_id, reason, "CLI login revoked");
        let event = Event::CliLogout {
            person: family.approval.identity.person(),
            client: self.requester_for(&family.approval.client_id).audit(),
            device_name: family.approval.device_name.clone(),
            outcome: Outcome::Revoked,
            reason: reason.to_owned(),
        };
        if let Err(e) = self.record(ctx, &event) {
            tracing::error!(error = %e, "audit write failed for a revocation");
        }
        Ok(())
    }

    /// RFC 7009: revokes a refresh token (its whole family: the login ends) or an access
    /// token. Unknown tokens are not an error.
    pub async fn revoke(&self, token: &str, ctx: &RequestContext) -> Result<(), OAuthError> {
        if let Some((tag, id)) = parse_token(token, REFRESH_PREFIX) {
            if let Some(rt) = self.store.load_owned::<RefreshRecord>(&tag, &id).await? {
                if let Some(family) = self.family(&tag, &rt.value.family).await? {
                    self.revoke_family(&tag, &rt.value.family, &family, "logout", ctx)
                        .await?;
                }
                let mut txn = self.store.txn(&tag);
                txn.delete::<RefreshRecord>(&id);
                self.store.commit(&txn).await?;
            }
        } else if let Some((tag, id)) = parse_token(token, ACCESS_PREFIX) {
            let mut txn = self.store.txn(&tag);
            txn.delete::<AccessRecord>(&id);
            self.store.commit(&txn).await?;
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
        let Some((tag, id)) = parse_token(access_token, ACCESS_PREFIX) else {
            return Ok(false);
        };
        let Some(at) = self.store.load_owned::<AccessRecord>(&tag, &id).await? else {
            return Ok(false);
        };
        let Some(family) = self.family(&tag, &at.value.family).await? else {
            return Ok(false);
        };
        self.revoke_family(&tag, &at.value.family, &family, "logout", ctx)
            .await?;
        Ok(true)
    }

    /// The live family and binding behind an access token: `None` when the token is
    /// malformed, unknown, expired, or its login ended.
    pub(in crate::access) async fn access_token(
        &self,
        token: &str,
    ) -> Result<Option<(PersonTag, Hashed, Family, Option<String>)>, OAuthError> {
        let Some((tag, id)) = parse_token(token, ACCESS_PREFIX) else {
            return Ok(None);
        };
        let Some(at) = self.store.load_owned::<AccessRecord>(&tag, &id).await? else {
            return Ok(None);
        };
        let now = now_unix();
        if at.value.expires <= now {
            return Ok(None);
        }
        let Some(family) = self.family(&tag, &at.value.family).await? else {
            return Ok(None);
        };
        if self.touches.due(at.value.family.as_str()) {
            let mut txn = self.store.txn(&tag);
            txn.require::<Family>(&at.value.family).relist::<Family>(
                &at.value.family,
                &family.holding.used_now(),
                family.ttl(now),
            )?;
            self.store.commit(&txn).await?;
        }
        Ok(Some((tag, at.value.family, family, at.value.jkt)))
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

    #[test]
    fn tokens_name_their_person_and_kind() {
        let tag = PersonTag::of("corp", "alice");
        let at = format!("{ACCESS_PREFIX}{}", owned_id(&tag));
        assert_eq!(parse_token(&at, ACCESS_PREFIX).unwrap().0, tag);
        assert!(parse_token(&at, REFRESH_PREFIX).is_none());
        assert!(parse_token(&format!("{at}x"), ACCESS_PREFIX).is_none());
        assert!(parse_token("rga_short", ACCESS_PREFIX).is_none());
    }
}
