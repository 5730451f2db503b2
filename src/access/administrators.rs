//! Who administers access, and the admin actions as the web UI asks for them: `[admin]`
//! names administrators with a condition in the rules' own language (and, optionally, the
//! authentication methods their sign-in must show: step-up); locks placed or removed here
//! apply on this instance at once (on the others within a second, see `locks`).

use super::admin::{Actor, AdminError};
use super::locks::{Lock, LockTarget, Principal};
use super::{Access, RequestContext};

/// Whether a signed-in person may administer access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCheck {
    Admin,
    /// The condition matches, but the sign-in lacks a required `amr`: sign in again with it.
    StepUpRequired,
    NotAdmin,
}

impl Access {
    /// Whether `principal` is an administrator (see the module doc).
    pub fn admin_check(&self, principal: &Principal) -> AdminCheck {
        let cfg = &self.config.admin;
        let Some(when) = &cfg.when else {
            return AdminCheck::NotAdmin;
        };
        if !when.evaluate(principal.claims()).matched {
            return AdminCheck::NotAdmin;
        }
        let amr: Vec<&str> = principal
            .claims()
            .claims
            .get("amr")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        if cfg.require_amr.iter().all(|r| amr.contains(&r.as_str())) {
            AdminCheck::Admin
        } else {
            AdminCheck::StepUpRequired
        }
    }

    /// Whether a lock on `target` would apply to `principal` (an administrator about to
    /// lock themselves out is asked to confirm).
    pub fn lock_would_apply_to(&self, target: &LockTarget, principal: &Principal) -> bool {
        let c = principal.claims();
        match target {
            LockTarget::Person { idp, subject } => c.idp.as_str() == idp && &c.subject == subject,
            LockTarget::Group { idp, group } => {
                idp.as_deref().is_none_or(|i| i == c.idp.as_str())
                    && c.groups.iter().any(|g| g.as_str() == group)
            }
            LockTarget::Role { .. } => false,
        }
    }

    /// Places a lock (admin area): in force on this instance at once.
    pub async fn place_lock(
        &self,
        target: LockTarget,
        reason: &str,
        expires: Option<u64>,
        admin: &Principal,
        ctx: &RequestContext,
    ) -> Result<Lock, AdminError> {
        let lock = self
            .admin
            .lock(
                target,
                reason,
                expires,
                &Actor::admin(admin.identity()),
                ctx,
            )
            .await?;
        self.locks.invalidate();
        Ok(lock)
    }

    /// Removes a lock (admin area).
    pub async fn remove_lock(
        &self,
        id: &str,
        reason: &str,
        admin: &Principal,
        ctx: &RequestContext,
    ) -> Result<Lock, AdminError> {
        let lock = self
            .admin
            .unlock(id, &Actor::admin(admin.identity()), reason, ctx)
            .await?;
        self.locks.invalidate();
        Ok(lock)
    }
}
