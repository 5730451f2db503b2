//! Eligibility: rules that make roles *eligible* rather than granted. A person may ask
//! for an eligible role for a while, with a reason; someone the rule names approves (or
//! the rule approves by itself); the access core then grants it until a fixed end. This
//! module is the pure part: the policy a rule attaches, and the one policy that applies
//! when several rules make the same role eligible (the strictest of them).

use std::time::Duration;

use regex::Regex;

use super::{Condition, IdentityClaims};
use crate::domain::Identifier;

/// When a request is approved without anyone deciding: the requester matches
/// `condition` (when given) and the request is made in `window` (when given).
#[derive(Debug, Clone)]
pub struct AutoApprove {
    pub condition: Option<Condition>,
    pub window: Option<Window>,
}

/// A weekly time window in UTC: these days, from `from` to `to` (minutes after midnight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Days of the week, 0 = Monday.
    pub days: Vec<u8>,
    pub from: u16,
    pub to: u16,
}

impl Window {
    /// Whether `weekday` (0 = Monday) at `minute` (after midnight, UTC) is inside.
    pub fn contains(&self, weekday: u8, minute: u16) -> bool {
        self.days.contains(&weekday) && minute >= self.from && minute < self.to
    }
}

/// What a rule making roles eligible requires of a request.
#[derive(Debug, Clone)]
pub struct ElevationPolicy {
    /// Who may approve (over the approver's groups and claims).
    pub approvers: Condition,
    /// How many different approvers (1 or 2); never the requester.
    pub approvals: u8,
    /// The longest elevation.
    pub max_elevation: Duration,
    pub reason_required: bool,
    /// When set, a ticket reference matching it is required.
    pub ticket_pattern: Option<Regex>,
    pub auto_approve: Option<AutoApprove>,
}

/// A role the person may ask for, the rules that make it so, and the policy that applies.
#[derive(Debug, Clone)]
pub struct Eligibility {
    pub role: Identifier,
    pub rules: Vec<Identifier>,
    pub policy: ElevationPolicy,
    /// The approver conditions of each rule (an approver must satisfy one of them).
    pub approvers: Vec<Condition>,
}

impl Eligibility {
    /// The strictest policy of several rules: the most approvals, the shortest maximum, a
    /// reason if any rule wants one, every ticket pattern (checked in turn), auto-approval
    /// only when every rule has one (each must hold).
    pub(super) fn merge(role: Identifier, rules: &[(&Identifier, &ElevationPolicy)]) -> Self {
        let first = rules[0].1;
        let mut policy = first.clone();
        for (_, p) in &rules[1..] {
            policy.approvals = policy.approvals.max(p.approvals);
            policy.max_elevation = policy.max_elevation.min(p.max_elevation);
            policy.reason_required |= p.reason_required;
            if policy.ticket_pattern.is_none() {
                policy.ticket_pattern = p.ticket_pattern.clone();
            }
            if p.auto_approve.is_none() {
                policy.auto_approve = None;
            }
        }
        Self {
            role,
            rules: rules.iter().map(|(id, _)| (*id).clone()).collect(),
            approvers: rules.iter().map(|(_, p)| p.approvers.clone()).collect(),
            policy,
        }
    }

    /// Whether `approver` may approve (another person than the requester, checked by
    /// the caller, who satisfies one of the rules' approver conditions).
    pub fn may_approve(&self, approver: &IdentityClaims) -> bool {
        self.approvers.iter().any(|c| c.evaluate(approver).matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_weekly_and_half_open() {
        let w = Window {
            days: vec![0, 1, 2, 3, 4],
            from: 9 * 60,
            to: 17 * 60,
        };
        assert!(w.contains(0, 9 * 60));
        assert!(!w.contains(0, 17 * 60));
        assert!(!w.contains(5, 12 * 60), "Saturday");
    }
}
