//! The role-mapping engine: from an identity's groups and claims to the AWS roles it may
//! use, with the session parameters of each.
//!
//! **Invariant: mapping is pure.** No I/O, no clock, no randomness, no async. The same
//! inputs always give the same [`Evaluation`], whatever order the rules were written in.
//! `rolegate explain` and the server both call [`MappingRules::evaluate`]; `explain` only
//! renders the trace the evaluation already carries.
//!
//! Semantics:
//! - a rule applies when its IdP filter admits the identity's IdP and its `when` condition
//!   matches (no `when` means it always matches);
//! - grant rules add roles; deny rules remove roles by id or glob; **deny always wins**;
//! - when several grant rules give the same role, their session parameters are merged:
//!   the shortest duration wins (and `explain` names the rule that set it); tags are united; two rules that set the same tag, source
//!   identity or session policy differently make that grant fail with a reason, rather
//!   than one silently overriding the other;
//! - a grant whose templated tags or source identity break AWS limits fails with a reason
//!   (never truncated).

mod condition;
pub mod elevation;
mod explain;
mod template;

use std::collections::{BTreeMap, BTreeSet};

use globset::GlobMatcher;

pub use condition::{ClaimOp, ClaimPath, Condition, Verdict};
pub use explain::{render_json, render_text};
pub use template::Template;

use crate::domain::{
    GroupName, Identifier, IdpId, RoleArn, RoleSessionName, SessionDuration, SessionPolicy,
    SessionTag, SessionTags, SourceIdentity,
};

/// What the mapping knows about a person: who vouched for them, who they are, their
/// groups, and every claim as JSON. The identity-provider modules build this from a
/// verified login; `explain` builds it from a claims file for "what if" questions.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityClaims {
    pub idp: IdpId,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    pub groups: Vec<GroupName>,
    pub claims: serde_json::Value,
}

/// A role the rules may grant, with the limits from its `[[role]]` entry.
#[derive(Debug, Clone)]
pub struct RoleTarget {
    pub id: Identifier,
    pub arn: RoleArn,
    pub max_session_duration: SessionDuration,
    pub session_policy: Option<SessionPolicy>,
}

#[derive(Debug, Clone)]
pub enum RolePattern {
    Exact(Identifier),
    Glob(String, GlobMatcher),
}

impl RolePattern {
    pub fn matches(&self, role: &Identifier) -> bool {
        match self {
            Self::Exact(id) => id == role,
            Self::Glob(_, m) => m.is_match(role.as_str()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact(id) => id.as_str(),
            Self::Glob(p, _) => p,
        }
    }
}

/// Session parameters a grant rule attaches to the roles it grants.
#[derive(Debug, Clone, Default)]
pub struct GrantSession {
    pub max_duration: Option<SessionDuration>,
    pub session_policy: Option<SessionPolicy>,
    /// Tag key → value template, sorted by key.
    pub tags: Vec<(String, Template)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<Template>,
}

#[derive(Debug, Clone)]
pub enum Effect {
    Grant {
        roles: Vec<Identifier>,
        session: GrantSession,
    },
    Deny {
        roles: Vec<RolePattern>,
    },
    /// The roles may be asked for, for a while, under the policy.
    Eligible {
        roles: Vec<Identifier>,
        policy: elevation::ElevationPolicy,
    },
}

#[derive(Debug, Clone)]
pub struct MappingRule {
    pub id: Identifier,
    pub description: Option<String>,
    /// `None`: every IdP.
    pub idps: Option<Vec<IdpId>>,
    /// `None`: always matches.
    pub when: Option<Condition>,
    pub effect: Effect,
}

/// The compiled rule set plus the roles it refers to.
#[derive(Debug, Clone, Default)]
pub struct MappingRules {
    rules: Vec<MappingRule>,
    roles: BTreeMap<Identifier, RoleTarget>,
}

/// How one rule fared against one identity.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    pub rule: Identifier,
    /// Position in the config (`rule[N]`), for messages.
    pub index: usize,
    pub description: Option<String>,
    pub is_deny: bool,
    /// The role ids or patterns the rule names.
    pub roles: Vec<String>,
    pub matched: bool,
    pub why: String,
}

/// A role the identity may assume, with the effective session parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub role: Identifier,
    pub arn: RoleArn,
    /// The grant rules that gave this role (sorted).
    pub rules: Vec<Identifier>,
    /// The longest session: the role's maximum, lowered by the grant rules' caps (the most
    /// restrictive wins).
    pub max_duration: SessionDuration,
    /// The rule whose cap set `max_duration`; `None` when it is the role's own maximum.
    pub capped_by: Option<Identifier>,
    pub session_policy: Option<SessionPolicy>,
    pub tags: SessionTags,
    pub source_identity: Option<SourceIdentity>,
    pub session_name: RoleSessionName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// Denied by these deny rules (sorted).
    Denied(Vec<Identifier>),
    /// The grant could not be built: conflicting rules, or a templated value AWS would refuse.
    Invalid(String),
}

/// A role some grant rule offered but the identity does not get, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub role: Identifier,
    pub granted_by: Vec<Identifier>,
    pub reason: RefusalReason,
}

/// The full result of mapping one identity: each rule's verdict (in config order), the
/// roles granted and the roles refused (both sorted by role id).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub rules: Vec<RuleOutcome>,
    pub grants: Vec<Grant>,
    pub refused: Vec<Refusal>,
    /// Roles the identity may ask for (not granted, not denied), sorted by role id.
    pub eligible: Vec<elevation::Eligibility>,
}

impl Evaluation {
    pub fn grant(&self, role: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.role.as_str() == role)
    }

    pub fn eligibility(&self, role: &str) -> Option<&elevation::Eligibility> {
        self.eligible.iter().find(|e| e.role.as_str() == role)
    }
}

impl MappingRules {
    pub fn new(rules: Vec<MappingRule>, roles: Vec<RoleTarget>) -> Self {
        Self {
            rules,
            roles: roles.into_iter().map(|r| (r.id.clone(), r)).collect(),
        }
    }

    pub fn rules(&self) -> &[MappingRule] {
        &self.rules
    }

    pub fn evaluate(&self, id: &IdentityClaims) -> Evaluation {
        let mut outcomes = Vec::with_capacity(self.rules.len());
        // role -> granting rules; role -> denying rules. BTree: deterministic order.
        let mut granted: BTreeMap<&Identifier, Vec<&MappingRule>> = BTreeMap::new();
        let mut denied: BTreeMap<&Identifier, BTreeSet<Identifier>> = BTreeMap::new();
        let mut eligible: BTreeMap<&Identifier, Vec<&MappingRule>> = BTreeMap::new();

        for (index, rule) in self.rules.iter().enumerate() {
            let verdict = match &rule.idps {
                Some(idps) if !idps.contains(&id.idp) => Verdict {
                    matched: false,
                    why: format!(
                        "applies only to IdP {}, not {}",
                        idps.iter()
                            .map(IdpId::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                        id.idp
                    ),
                },
                _ => match &rule.when {
                    Some(c) => c.evaluate(id),
                    None => Verdict {
                        matched: true,
                        why: "no conditions".into(),
                    },
                },
            };
            let (is_deny, roles) = match &rule.effect {
                Effect::Grant { roles, .. } => {
                    (false, roles.iter().map(|r| r.to_string()).collect())
                }
                Effect::Deny { roles } => {
                    (true, roles.iter().map(|p| p.as_str().to_owned()).collect())
                }
                Effect::Eligible { roles, .. } => {
                    (false, roles.iter().map(|r| r.to_string()).collect())
                }
            };
            if verdict.matched {
                match &rule.effect {
                    Effect::Grant { roles, .. } => {
                        for r in roles {
                            granted.entry(r).or_default().push(rule);
                        }
                    }
                    Effect::Deny { roles: patterns } => {
                        for role in self.roles.keys() {
                            if patterns.iter().any(|p| p.matches(role)) {
                                denied.entry(role).or_default().insert(rule.id.clone());
                            }
                        }
                    }
                    Effect::Eligible { roles, .. } => {
                        for r in roles {
                            eligible.entry(r).or_default().push(rule);
                        }
                    }
                }
            }
            outcomes.push(RuleOutcome {
                rule: rule.id.clone(),
                index,
                description: rule.description.clone(),
                is_deny,
                roles,
                matched: verdict.matched,
                why: verdict.why,
            });
        }

        let mut grants = Vec::new();
        let mut refused = Vec::new();
        for (role, mut rules) in granted {
            rules.sort_by(|a, b| a.id.cmp(&b.id));
            rules.dedup_by(|a, b| a.id == b.id);
            let granted_by: Vec<Identifier> = rules.iter().map(|r| r.id.clone()).collect();
            if let Some(deniers) = denied.get(role) {
                refused.push(Refusal {
                    role: role.clone(),
                    granted_by,
                    reason: RefusalReason::Denied(deniers.iter().cloned().collect()),
                });
                continue;
            }
            let Some(target) = self.roles.get(role) else {
                // Config validation guarantees every granted role exists; stay total anyway.
                refused.push(Refusal {
                    role: role.clone(),
                    granted_by,
                    reason: RefusalReason::Invalid("role is not configured".into()),
                });
                continue;
            };
            match build_grant(target, &rules, id) {
                Ok(g) => grants.push(g),
                Err(why) => refused.push(Refusal {
                    role: role.clone(),
                    granted_by,
                    reason: RefusalReason::Invalid(why),
                }),
            }
        }
        // Eligible: not granted already, and deny wins here too.
        let eligible = eligible
            .into_iter()
            .filter(|(role, _)| {
                !denied.contains_key(role) && !grants.iter().any(|g| &g.role == *role)
            })
            .map(|(role, mut rules)| {
                rules.sort_by(|a, b| a.id.cmp(&b.id));
                rules.dedup_by(|a, b| a.id == b.id);
                let policies: Vec<(&Identifier, &elevation::ElevationPolicy)> = rules
                    .iter()
                    .filter_map(|r| match &r.effect {
                        Effect::Eligible { policy, .. } => Some((&r.id, policy)),
                        _ => None,
                    })
                    .collect();
                elevation::Eligibility::merge(role.clone(), &policies)
            })
            .collect();
        Evaluation {
            rules: outcomes,
            grants,
            refused,
            eligible,
        }
    }
}

impl MappingRules {
    /// Whether any rule makes roles eligible (just-in-time access is on).
    pub fn has_eligible(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.effect, Effect::Eligible { .. }))
    }

    /// The grant of a role held through an approved elevation: the role's own limits and
    /// no rule's session settings (the caller caps it at the elevation's end).
    pub fn elevated_grant(&self, role: &Identifier, id: &IdentityClaims) -> Option<Grant> {
        let target = self.roles.get(role)?;
        build_grant(target, &[], id).ok()
    }
}

/// Merges the session parameters of every rule granting `target` (already sorted by rule id).
fn build_grant(
    target: &RoleTarget,
    rules: &[&MappingRule],
    id: &IdentityClaims,
) -> Result<Grant, String> {
    let mut max_duration = target.max_session_duration;
    let mut capped_by: Option<&Identifier> = None;
    let mut policy: Option<(&Identifier, &SessionPolicy)> = None;
    let mut tags: BTreeMap<String, (String, &Identifier)> = BTreeMap::new();
    let mut transitive = BTreeSet::new();
    let mut source: Option<(String, &Identifier)> = None;

    for rule in rules {
        let Effect::Grant { session, .. } = &rule.effect else {
            continue;
        };
        if let Some(d) = session.max_duration
            && d < max_duration
        {
            max_duration = d;
            capped_by = Some(&rule.id);
        }
        if let Some(p) = &session.session_policy {
            match policy {
                Some((other, q)) if q != p => {
                    return Err(format!(
                        "rules {other} and {} attach different session policies ({} and {})",
                        rule.id,
                        q.file().display(),
                        p.file().display()
                    ));
                }
                _ => policy = Some((&rule.id, p)),
            }
        }
        for (key, tpl) in &session.tags {
            let value = tpl
                .render(id)
                .map_err(|e| format!("session tag {key:?} from rule {}: {e}", rule.id))?;
            match tags.get(key) {
                Some((v, other)) if *v != value => {
                    return Err(format!(
                        "rules {other} and {} set session tag {key:?} to different values ({v:?} and {value:?})",
                        rule.id
                    ));
                }
                _ => {
                    tags.insert(key.clone(), (value, &rule.id));
                }
            }
        }
        transitive.extend(session.transitive_tag_keys.iter().cloned());
        if let Some(tpl) = &session.source_identity {
            let value = tpl
                .render(id)
                .map_err(|e| format!("source identity from rule {}: {e}", rule.id))?;
            match &source {
                Some((v, other)) if *v != value => {
                    return Err(format!(
                        "rules {other} and {} set different source identities ({v:?} and {value:?})",
                        rule.id
                    ));
                }
                _ => source = Some((value, &rule.id)),
            }
        }
    }

    let tags = tags
        .into_iter()
        .map(|(k, (v, _))| SessionTag::parse(&k, &v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let tags =
        SessionTags::new(tags, transitive.into_iter().collect()).map_err(|e| e.to_string())?;
    let source_identity = source
        .map(|(v, _)| SourceIdentity::parse(&v))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Grant {
        role: target.id.clone(),
        arn: target.arn.clone(),
        rules: rules.iter().map(|r| r.id.clone()).collect(),
        max_duration,
        capped_by: capped_by.cloned(),
        session_policy: policy
            .map(|(_, p)| p.clone())
            .or_else(|| target.session_policy.clone()),
        tags,
        source_identity,
        session_name: RoleSessionName::from_user(&id.username),
    })
}
