//! Authorization: what an identity may use, decided from the rules at the moment of each
//! request.
//!
//! [`Access::role_menu`] lists the granted roles. [`Access::authorize`] turns one request
//! (identity, role, duration) into an [`AuthorizedGrant`] or a [`Refusal`]. An
//! `AuthorizedGrant` has private fields and no public constructor: this module builds it
//! right after evaluating the mapping, pairing the grant with the role it is for and the
//! duration already checked against the grant's maximum. The issuer accepts nothing else,
//! so no caller can hand it a stale grant (one cached in a session or token) or a grant
//! for another role.

use std::time::Instant;

use super::locks::Principal;
use super::{Access, RequestContext, Requester};
use crate::config::Role;
use crate::domain::{AccountId, Identifier, RoleArn, SessionDuration};
use crate::idp::VerifiedIdentity;
use crate::mapping::{Grant, RefusalReason};

/// The roles an identity may use, grouped by account (config order).
#[derive(Debug, Clone)]
pub struct RoleMenu {
    pub accounts: Vec<AccountRoles>,
}

impl RoleMenu {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Every role in the menu, account by account.
    pub fn roles(&self) -> impl Iterator<Item = (&AccountRoles, &MenuRole)> {
        self.accounts
            .iter()
            .flat_map(|a| a.roles.iter().map(move |r| (a, r)))
    }
}

#[derive(Debug, Clone)]
pub struct AccountRoles {
    pub id: Identifier,
    pub display_name: String,
    pub number: AccountId,
    pub roles: Vec<MenuRole>,
}

#[derive(Debug, Clone)]
pub struct MenuRole {
    pub id: Identifier,
    pub display_name: String,
    pub arn: RoleArn,
    /// The longest session the grant allows: the role's maximum, lowered by any rule.
    pub max_duration: SessionDuration,
    /// When the role is held through an elevation: when it ends (Unix seconds).
    pub elevated_until: Option<u64>,
}

/// Why a request for a role was refused before any call to AWS. Each is audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the elevation to {role} ends in {minutes_left} minutes: AWS issues no credentials for less than 15 minutes"
    )]
    ElevationEnding { role: Identifier, minutes_left: u64 },
    #[error("there is no role {0:?}")]
    UnknownRole(String),
    #[error("no rule grants role {0}")]
    NotGranted(Identifier),
    #[error("role {role} is denied by rule(s) {}", rules.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))]
    Denied {
        role: Identifier,
        rules: Vec<Identifier>,
    },
    #[error("role {role} cannot be granted: {reason}")]
    InvalidGrant { role: Identifier, reason: String },
    #[error("access to role {role} is locked")]
    Locked { role: Identifier, lock_id: String },
    #[error("{0}")]
    ConsoleDestination(String),
    #[error("the requested session length {requested:?} is not a duration")]
    DurationUnreadable { requested: String },
    #[error("role {role} sessions last at least 15m and at most {max}")]
    DurationOutOfRange {
        role: Identifier,
        requested: String,
        max: SessionDuration,
    },
}

impl Refusal {
    /// A short machine-readable reason for audit records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownRole(_) => "unknown_role",
            Self::NotGranted(_) => "not_granted",
            Self::Denied { .. } => "denied",
            Self::InvalidGrant { .. } => "invalid_grant",
            Self::Locked { .. } => "locked",
            Self::ElevationEnding { .. } => "elevation_ending",
            Self::DurationUnreadable { .. } => "duration_unreadable",
            Self::ConsoleDestination(_) => "console_destination",
            Self::DurationOutOfRange { .. } => "duration_too_long",
        }
    }

    /// Whether the request itself is malformed (400) rather than forbidden (403).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::DurationUnreadable { .. }
                | Self::DurationOutOfRange { .. }
                | Self::ConsoleDestination(_)
        )
    }
}

/// A grant the rules gave this identity for this role just now, with the session length
/// decided. Built only by [`Access::authorize`]; consumed by the issuer.
pub struct AuthorizedGrant {
    identity: VerifiedIdentity,
    role: Role,
    grant: Grant,
    duration: SessionDuration,
    requester: Requester,
    evaluated_at: Instant,
}

impl AuthorizedGrant {
    pub(super) fn identity(&self) -> &VerifiedIdentity {
        &self.identity
    }
    pub(super) fn role(&self) -> &Role {
        &self.role
    }
    pub(super) fn grant(&self) -> &Grant {
        &self.grant
    }
    pub(super) fn duration(&self) -> SessionDuration {
        self.duration
    }
    pub(super) fn requester(&self) -> &Requester {
        &self.requester
    }
    /// How long ago the rules were evaluated (logged with the issuance).
    pub(super) fn age(&self) -> std::time::Duration {
        self.evaluated_at.elapsed()
    }
}

/// Reads a requested session length: seconds (`"3600"`) or a humantime duration
/// (`"1h"`, `"90m"`).
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    humantime::parse_duration(text).ok().map(|d| d.as_secs())
}

impl Access {
    /// The grant that gives `role` to `principal` now: the rules' grant, or the role held
    /// through an elevation that is running and still eligible (deny wins, the rules are
    /// evaluated at this request), its sessions capped at the time left.
    fn effective_grant(
        &self,
        principal: &Principal,
        evaluation: &crate::mapping::Evaluation,
        role: &str,
    ) -> Option<(Grant, Option<u64>)> {
        if let Some(g) = evaluation.grant(role) {
            return Some((g.clone(), None));
        }
        let running = principal.elevation(role)?;
        let eligible = evaluation.eligibility(role)?;
        let mut g = self
            .config
            .rules
            .elevated_grant(&eligible.role, principal.claims())?;
        let left = running.until.saturating_sub(crate::store::now_unix());
        if let Ok(cap) = SessionDuration::from_secs(left.min(u64::from(u32::MAX)) as u32)
            && cap < g.max_duration
        {
            g.max_duration = cap;
        }
        Some((g, Some(running.until)))
    }

    /// The role menu: every role the rules grant `identity` now, grouped by account, with
    /// each role's effective maximum session length.
    /// Roles a lock refuses are left out.
    pub fn role_menu(&self, principal: &Principal) -> RoleMenu {
        let evaluation = self.config.rules.evaluate(principal.claims());
        let accounts = self
            .config
            .accounts
            .iter()
            .filter_map(|account| {
                let roles: Vec<MenuRole> = self
                    .config
                    .roles
                    .iter()
                    .filter(|r| r.account == account.id)
                    .filter(|r| self.lock_on(principal, r.id.as_str()).is_none())
                    .filter_map(|r| {
                        self.effective_grant(principal, &evaluation, r.id.as_str())
                            .map(|(g, until)| MenuRole {
                                id: r.id.clone(),
                                display_name: r.display_name.clone(),
                                arn: r.arn.clone(),
                                max_duration: g.max_duration,
                                elevated_until: until,
                            })
                    })
                    .collect();
                (!roles.is_empty()).then(|| AccountRoles {
                    id: account.id.clone(),
                    display_name: self.account_name(account),
                    number: account.number.clone(),
                    roles,
                })
            })
            .collect();
        RoleMenu { accounts }
    }

    /// Decides one request: the mapping is evaluated now for `identity`, the role must be
    /// granted (and not denied), and the requested duration (default: the grant's
    /// maximum) must be within 15 minutes and the grant's maximum. A refusal is audited
    /// with its reason before it is returned.
    pub fn authorize(
        &self,
        principal: &Principal,
        role_id: &str,
        requested_duration: Option<&str>,
        requester: &Requester,
        ctx: &RequestContext,
    ) -> Result<AuthorizedGrant, Refusal> {
        let result = self.decide(principal, role_id, requested_duration, requester);
        if let Err(refusal) = &result {
            self.issuer
                .audit_refusal(principal.identity(), role_id, requester, refusal, ctx);
        }
        result
    }

    fn decide(
        &self,
        principal: &Principal,
        role_id: &str,
        requested_duration: Option<&str>,
        requester: &Requester,
    ) -> Result<AuthorizedGrant, Refusal> {
        let identity = principal.identity();
        let Some(role) = self.config.role(role_id) else {
            return Err(Refusal::UnknownRole(
                role_id.chars().take(64).collect::<String>(),
            ));
        };
        if let Some(l) = self.lock_on(principal, role_id) {
            return Err(Refusal::Locked {
                role: role.id.clone(),
                lock_id: l.lock_id,
            });
        }
        let evaluation = self.config.rules.evaluate(identity.claims());
        let evaluated_at = Instant::now();
        let Some((grant, elevated_until)) = self.effective_grant(principal, &evaluation, role_id)
        else {
            let refusal = evaluation.refused.iter().find(|r| r.role == role.id);
            return Err(match refusal.map(|r| &r.reason) {
                Some(RefusalReason::Denied(rules)) => Refusal::Denied {
                    role: role.id.clone(),
                    rules: rules.clone(),
                },
                Some(RefusalReason::Invalid(reason)) => Refusal::InvalidGrant {
                    role: role.id.clone(),
                    reason: reason.clone(),
                },
                None => Refusal::NotGranted(role.id.clone()),
            });
        };
        if let Some(until) = elevated_until {
            // Sessions end with the elevation; AWS issues none shorter than 15 minutes.
            let left = until.saturating_sub(crate::store::now_unix());
            if left < 900 {
                return Err(Refusal::ElevationEnding {
                    role: role.id.clone(),
                    minutes_left: left / 60,
                });
            }
        }
        let max = grant.max_duration;
        let duration = match requested_duration.map(str::trim).filter(|d| !d.is_empty()) {
            None => max,
            Some(text) => {
                let secs = parse_duration(text).ok_or_else(|| Refusal::DurationUnreadable {
                    requested: text.chars().take(32).collect(),
                })?;
                match u32::try_from(secs)
                    .ok()
                    .and_then(|s| SessionDuration::from_secs(s).ok())
                {
                    Some(d) if d <= max => d,
                    // An elevated role's maximum shrinks by the second: a length chosen
                    // moments ago is capped at the time left, not refused.
                    Some(_) if elevated_until.is_some() => max,
                    _ => {
                        return Err(Refusal::DurationOutOfRange {
                            role: role.id.clone(),
                            requested: text.chars().take(32).collect(),
                            max,
                        });
                    }
                }
            }
        };
        Ok(AuthorizedGrant {
            identity: identity.clone(),
            role: role.clone(),
            grant,
            duration,
            requester: requester.clone(),
            evaluated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_are_read_as_seconds_or_humantime() {
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration(" 1h "), Some(3600));
        assert_eq!(parse_duration("90m"), Some(5400));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-5"), None);
    }
}
