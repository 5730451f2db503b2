//! Re-validation at the IdP (dex's model): for OIDC IdPs with `revalidate = "on_refresh"`,
//! the refresh token the IdP issued at sign-in is kept (sealed with
//! `session.encryption_key`, never logged) in one record per person, and used to ask the
//! IdP again who the person is: at each CLI or SDK token refresh, and for a browser session
//! at most every `session.revalidate_interval`.
//!
//! - The IdP answers: the identity (groups, claims) is replaced from that request on, in
//!   the session or login that asked and in the person's record (other holders take it from
//!   there at their next check without calling the IdP again within the interval).
//! - The IdP says the grant is over (`invalid_grant`: user disabled, grant revoked):
//!   everything the person holds is revoked, audited with the source `idp`.
//! - The IdP cannot be reached (or its answer not verified): the last identity is used for
//!   `session.revalidate_grace`, counted from the first failure, then access fails closed
//!   (refused until the IdP answers again).
//!
//! One refresh at a time per person (across instances): an IdP that rotates refresh
//! tokens and detects reuse must never see the same one twice.

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::admin::{Actor, ActorSource};
use super::session::{IdentityRecord, person_of, tag_of};
use super::{Access, RequestContext};
use crate::audit::Event;
use crate::config::IdpProtocol;
use crate::idp::VerifiedIdentity;
use crate::idp::oidc::RefreshError;
use crate::metrics::OutcomeLabels;
use crate::store::{Hashed, PersonTag, Record, StoreError, now_unix, until};

/// The person's IdP grant: the sealed refresh token and the identity the IdP last stated.
#[derive(Serialize, Deserialize)]
pub(super) struct Upstream {
    sealed: String,
    identity: IdentityRecord,
    revalidated_at: u64,
    #[serde(default)]
    failing_since: Option<u64>,
    expires: u64,
}

impl Record for Upstream {
    const KIND: &'static str = "upstream";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

pub(super) fn upstream_id() -> Hashed {
    Hashed::of("upstream")
}

/// Held while one instance asks the IdP for a person (single flight across instances);
/// removed when the answer is in, or gone after 15 s if the instance died meanwhile.
#[derive(Serialize, Deserialize)]
struct Refreshing {
    expires: u64,
}

impl Record for Refreshing {
    const KIND: &'static str = "upstream:refreshing";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

/// AES-256-GCM under a key derived from `session.encryption_key`; the person's tag is the
/// associated data, so a sealed token cannot be moved to another person.
pub(super) struct Sealer(LessSafeKey);

impl Sealer {
    pub(super) fn new(secret: &SecretString) -> Self {
        let k = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("rolegate upstream key\0{}", secret.expose_secret()).as_bytes(),
        );
        Self(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, k.as_ref()).expect("32-byte key"),
        ))
    }

    fn seal(&self, tag: &PersonTag, plain: &SecretString) -> Option<String> {
        let nonce: [u8; 12] = rand::random();
        let mut data = plain.expose_secret().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(tag.as_str().as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(base64::engine::general_purpose::STANDARD.encode(out))
    }

    fn open(&self, tag: &PersonTag, sealed: &str) -> Option<SecretString> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if raw.len() < 28 {
            return None;
        }
        let (nonce, data) = raw.split_at(12);
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(tag.as_str().as_bytes()),
                &mut data,
            )
            .ok()?;
        String::from_utf8(plain.to_vec())
            .ok()
            .map(SecretString::from)
    }
}

/// What re-validation says about an identity now.
pub(super) enum Revalidated {
    /// The IdP does not re-validate (SAML, `revalidate = "off"`, or no refresh token kept).
    NotApplicable,
    /// The identity to use from now on, and when the IdP last confirmed it.
    Current(VerifiedIdentity, u64),
    /// The IdP ended the grant; everything the person held is revoked.
    Revoked,
    /// The IdP could not confirm the person for longer than the grace: refuse for now.
    Unconfirmed(String),
}

impl Access {
    fn revalidating_idp(
        &self,
        idp: &str,
    ) -> Option<&std::sync::Arc<crate::idp::oidc::OidcProvider>> {
        self.oidc.iter().find(|p| {
            p.idp.id.as_str() == idp
                && matches!(&p.idp.protocol, IdpProtocol::Oidc(o) if o.revalidate)
        })
    }

    /// After a sign-in at an IdP that re-validates: keeps its refresh token (a sign-in
    /// replaces what an earlier one kept). Without one, the session lasts its lifetime
    /// unchecked, and the log says so.
    pub(super) async fn keep_upstream(
        &self,
        identity: &VerifiedIdentity,
        refresh_token: Option<SecretString>,
        lifetime: Duration,
    ) {
        let c = identity.claims();
        let (Some(_), Some(sealer)) = (self.revalidating_idp(c.idp.as_str()), &self.sealer) else {
            return;
        };
        let Some(rt) = refresh_token else {
            tracing::warn!(idp = %c.idp, "the IdP issued no refresh token (is offline_access allowed for this client?): this sign-in is not re-validated");
            return;
        };
        let tag = tag_of(identity);
        let now = now_unix();
        let Some(sealed) = sealer.seal(&tag, &rt) else {
            return;
        };
        let record = Upstream {
            sealed,
            identity: IdentityRecord::from_identity(identity),
            revalidated_at: now,
            failing_since: None,
            expires: now + lifetime.as_secs(),
        };
        let mut txn = self.store.txn(&tag);
        let stored = txn.put(&upstream_id(), &record).map(|_| ());
        if stored.is_err() || self.store.commit(&txn).await.is_err() {
            tracing::warn!(idp = %c.idp, "could not keep the IdP's refresh token: this sign-in is not re-validated");
        }
    }

    fn count_revalidation(&self, outcome: &str) {
        self.metrics
            .revalidations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Re-validates `identity` at its IdP (see the module doc). `force`: a CLI refresh
    /// (asks the IdP unless someone did in the last 10 s); otherwise a browser session
    /// (asks at most every `revalidate_interval`).
    pub(super) async fn revalidate(
        &self,
        identity: &VerifiedIdentity,
        force: bool,
        ctx: &RequestContext,
    ) -> Result<Revalidated, StoreError> {
        let c = identity.claims();
        let (Some(provider), Some(sealer)) = (self.revalidating_idp(c.idp.as_str()), &self.sealer)
        else {
            return Ok(Revalidated::NotApplicable);
        };
        let tag = tag_of(identity);
        let Some(stored) = self
            .store
            .load_owned::<Upstream>(&tag, &upstream_id())
            .await?
        else {
            return Ok(Revalidated::NotApplicable);
        };
        let up = &stored.value;
        let now = now_unix();
        let cfg = &self.config.session;
        // A CLI refresh asks the IdP unless someone just did (several logins refreshing
        // at once); a browser session at most every interval.
        let recent = if force {
            Duration::from_secs(2)
        } else {
            cfg.revalidate_interval
        };
        let last = || -> Result<Revalidated, StoreError> {
            Ok(Revalidated::Current(
                up.identity.clone().into_identity()?,
                up.revalidated_at,
            ))
        };
        // The one grace rule: the last confirmed identity stands while the IdP has been
        // failing for less than `revalidate_grace`; past it, nobody is let in.
        let within_grace = |since: Option<u64>| {
            since.is_none_or(|s| now.saturating_sub(s) < cfg.revalidate_grace.as_secs())
        };
        if up.failing_since.is_none() && now.saturating_sub(up.revalidated_at) < recent.as_secs() {
            return last();
        }
        // One refresh per person at a time, across instances.
        let flight = Hashed::of(tag.as_str());
        if !self
            .store
            .save_new(&flight, &Refreshing { expires: now + 15 })
            .await?
        {
            return if within_grace(up.failing_since) {
                last()
            } else {
                Ok(Revalidated::Unconfirmed(provider.idp.display_name.clone()))
            };
        }
        let Some(rt) = sealer.open(&tag, &up.sealed) else {
            tracing::error!(person = %tag, "the kept IdP refresh token does not open (another encryption_key?): refusing until the person signs in again");
            return Ok(Revalidated::Unconfirmed(provider.idp.display_name.clone()));
        };
        let before = up.identity.clone().into_identity()?;
        let answer = crate::idp::revalidate(provider, &before, &rt).await;
        if let Err(e) = self.store.remove::<Refreshing>(&flight).await {
            tracing::debug!(error = %e, "could not end a re-validation's single flight");
        }
        match answer {
            Ok((fresh, rotated)) => {
                let sealed = match rotated {
                    Some(r) => sealer.seal(&tag, &r).unwrap_or_else(|| up.sealed.clone()),
                    None => up.sealed.clone(),
                };
                let record = Upstream {
                    sealed,
                    identity: IdentityRecord::from_identity(&fresh),
                    revalidated_at: now,
                    failing_since: None,
                    expires: up.expires,
                };
                let mut txn = self.store.txn(&tag);
                txn.require_unchanged(&upstream_id(), &stored)
                    .put(&upstream_id(), &record)?;
                self.store.commit(&txn).await?;
                let groups = |i: &VerifiedIdentity| -> Vec<String> {
                    i.claims()
                        .groups
                        .iter()
                        .map(|g| g.as_str().to_owned())
                        .collect()
                };
                if before != fresh {
                    self.count_revalidation("changed");
                    tracing::info!(person = %tag, "re-validation: the IdP states another identity now");
                    let event = Event::Revalidation {
                        person: person_of(&fresh),
                        outcome: "changed",
                        groups_before: Some(groups(&before)),
                        groups_after: Some(groups(&fresh)),
                        reason: String::new(),
                    };
                    if let Err(e) = self.record(ctx, &event) {
                        tracing::error!(error = %e, "audit write failed for a re-validation");
                    }
                    self.admin.note_person(&fresh, up.expires).await;
                } else {
                    self.count_revalidation("unchanged");
                }
                Ok(Revalidated::Current(fresh, now))
            }
            Err(RefreshError::Revoked(why)) => {
                self.count_revalidation("revoked");
                tracing::warn!(person = %tag, reason = %why, "re-validation: the IdP ended the grant; revoking");
                let event = Event::Revalidation {
                    person: person_of(&before),
                    outcome: "revoked",
                    groups_before: None,
                    groups_after: None,
                    reason: why.chars().take(200).collect(),
                };
                if let Err(e) = self.record(ctx, &event) {
                    tracing::error!(error = %e, "audit write failed for a re-validation");
                }
                let actor = Actor {
                    name: format!("idp {}", provider.idp.id),
                    source: ActorSource::Idp,
                };
                if let Err(e) = self
                    .admin
                    .revoke(
                        &tag,
                        None,
                        &actor,
                        "the identity provider ended the grant",
                        ctx,
                    )
                    .await
                {
                    tracing::error!(error = %e, "could not revoke after the IdP ended the grant");
                }
                Ok(Revalidated::Revoked)
            }
            Err(RefreshError::Unconfirmed(why)) => {
                let since = up.failing_since.unwrap_or(now);
                let record = Upstream {
                    sealed: up.sealed.clone(),
                    identity: up.identity.clone(),
                    revalidated_at: up.revalidated_at,
                    failing_since: Some(since),
                    expires: up.expires,
                };
                let mut txn = self.store.txn(&tag);
                txn.require_unchanged(&upstream_id(), &stored)
                    .put(&upstream_id(), &record)?;
                self.store.commit(&txn).await?;
                if !within_grace(Some(since)) {
                    self.count_revalidation("failed_closed");
                    tracing::warn!(person = %tag, reason = %why, "re-validation: the IdP has not confirmed the person for longer than the grace; refusing");
                    Ok(Revalidated::Unconfirmed(provider.idp.display_name.clone()))
                } else {
                    self.count_revalidation("unreachable");
                    tracing::info!(person = %tag, reason = %why, "re-validation: the IdP could not confirm the person; within the grace");
                    last()
                }
            }
        }
    }
}
