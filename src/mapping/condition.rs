//! Rule conditions: what a rule asks of an identity, parsed from the config's `when` table
//! and evaluated without any I/O.
//!
//! Forms (each a TOML table with exactly one matcher):
//! `{ all = [..] }`, `{ any = [..] }`, `{ not = {..} }`,
//! `{ group = "name" }`, `{ group_glob = "aws-*-admins" }`, `{ group_regex = "aws-(dev|qa)" }`,
//! `{ claim = "path", equals = V }`, `in = [V, ..]`, `starts_with = "s"`, `ends_with = "s"`,
//! `regex = "r"`, `exists = true|false`.
//!
//! Regexes must match the whole value (they are anchored): an unanchored `admins` matching
//! `not-admins` is the kind of mistake that grants a production role by accident.

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde_json::Value as Json;

use super::IdentityClaims;
use crate::domain::GroupName;

/// A path into the claim set: `email`, `realm_access.roles`. A top-level claim whose name
/// itself contains dots (SAML attribute URIs such as
/// `http://schemas.xmlsoap.org/claims/Group`) is found by its exact name first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.split('.').any(str::is_empty) && !s.contains("://") {
            return Err(format!("claim path {s:?} must be dot-separated names"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value at this path, or `None` when absent or `null`.
    pub fn lookup<'a>(&self, claims: &'a Json) -> Option<&'a Json> {
        if let Some(v) = claims.get(&self.0) {
            return (!v.is_null()).then_some(v);
        }
        let mut cur = claims;
        for seg in self.0.split('.') {
            cur = cur.get(seg)?;
        }
        (!cur.is_null()).then_some(cur)
    }
}

#[derive(Debug, Clone)]
pub enum ClaimOp {
    Equals(Json),
    In(Vec<Json>),
    StartsWith(String),
    EndsWith(String),
    Regex(Regex),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Group(GroupName),
    GroupGlob(String, GlobMatcher),
    GroupRegex(Regex),
    Claim { path: ClaimPath, op: ClaimOp },
}

impl std::fmt::Display for Condition {
    /// The condition as a short phrase (who approves, in `explain` and on pages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |items: &[Condition], sep: &str| {
            items
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(sep)
        };
        match self {
            Self::All(c) => write!(f, "({})", list(c, " and ")),
            Self::Any(c) => write!(f, "({})", list(c, " or ")),
            Self::Not(c) => write!(f, "not {c}"),
            Self::Group(g) => write!(f, "group {g}"),
            Self::GroupGlob(p, _) => write!(f, "a group matching {p}"),
            Self::GroupRegex(r) => write!(f, "a group matching /{}/", r.as_str()),
            Self::Claim { path, op } => {
                let op = match op {
                    ClaimOp::Equals(v) => format!("= {v}"),
                    ClaimOp::In(v) => format!("in {}", Json::Array(v.clone())),
                    ClaimOp::StartsWith(s) => format!("starts with {s:?}"),
                    ClaimOp::EndsWith(s) => format!("ends with {s:?}"),
                    ClaimOp::Regex(r) => format!("matches /{}/", r.as_str()),
                    ClaimOp::Exists(true) => "exists".into(),
                    ClaimOp::Exists(false) => "is absent".into(),
                };
                write!(f, "claim {} {op}", path.as_str())
            }
        }
    }
}

/// The outcome of checking one condition, with a sentence saying why, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub matched: bool,
    pub why: String,
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

fn toml_to_json(v: &toml::Value) -> Json {
    match v {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

impl Condition {
    /// Parses a condition. On error returns (relative key path, reason), e.g.
    /// (`all[1].group_regex`, `invalid regex ...`).
    pub fn from_toml(v: &toml::Value) -> Result<Self, (String, String)> {
        let err = |k: &str, r: String| Err((k.to_owned(), r));
        let Some(t) = v.as_table() else {
            return err(
                "",
                "a condition must be a table such as { group = \"admins\" }".into(),
            );
        };
        let str_of = |k: &str| -> Result<String, (String, String)> {
            t.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| (k.to_owned(), "must be a string".to_owned()))
        };
        let list = |k: &str| -> Result<Vec<Condition>, (String, String)> {
            let Some(items) = t.get(k).and_then(|v| v.as_array()) else {
                return Err((k.to_owned(), "must be an array of conditions".into()));
            };
            if items.is_empty() {
                return Err((k.to_owned(), "must not be empty".into()));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    Condition::from_toml(c).map_err(|(p, r)| {
                        (
                            if p.is_empty() {
                                format!("{k}[{i}]")
                            } else {
                                format!("{k}[{i}].{p}")
                            },
                            r,
                        )
                    })
                })
                .collect()
        };
        let only = |keys: &[&str]| -> Result<(), (String, String)> {
            for k in t.keys() {
                if !keys.contains(&k.as_str()) {
                    return Err((
                        k.clone(),
                        format!(
                            "unexpected key here (this condition takes: {})",
                            keys.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        if t.contains_key("all") {
            only(&["all"])?;
            return Ok(Self::All(list("all")?));
        }
        if t.contains_key("any") {
            only(&["any"])?;
            return Ok(Self::Any(list("any")?));
        }
        if let Some(inner) = t.get("not") {
            only(&["not"])?;
            let c = Condition::from_toml(inner).map_err(|(p, r)| {
                (
                    if p.is_empty() {
                        "not".into()
                    } else {
                        format!("not.{p}")
                    },
                    r,
                )
            })?;
            return Ok(Self::Not(Box::new(c)));
        }
        if t.contains_key("group") {
            only(&["group"])?;
            let g = GroupName::parse(&str_of("group")?)
                .map_err(|e| ("group".to_owned(), e.to_string()))?;
            return Ok(Self::Group(g));
        }
        if t.contains_key("group_glob") {
            only(&["group_glob"])?;
            let p = str_of("group_glob")?;
            let m = Glob::new(&p)
                .map_err(|e| ("group_glob".to_owned(), format!("invalid glob {p:?}: {e}")))?
                .compile_matcher();
            return Ok(Self::GroupGlob(p, m));
        }
        if t.contains_key("group_regex") {
            only(&["group_regex"])?;
            let r = anchored(&str_of("group_regex")?).map_err(|e| ("group_regex".to_owned(), e))?;
            return Ok(Self::GroupRegex(r));
        }
        if t.contains_key("claim") {
            let path = ClaimPath::parse(&str_of("claim")?).map_err(|e| ("claim".to_owned(), e))?;
            let ops: Vec<&String> = t.keys().filter(|k| k.as_str() != "claim").collect();
            const OPS: [&str; 6] = [
                "equals",
                "in",
                "starts_with",
                "ends_with",
                "regex",
                "exists",
            ];
            let [op] = ops.as_slice() else {
                return err(
                    "claim",
                    format!("a claim condition needs exactly one of: {}", OPS.join(", ")),
                );
            };
            let val = &t[op.as_str()];
            let op = match op.as_str() {
                "equals" => ClaimOp::Equals(toml_to_json(val)),
                "in" => match val.as_array() {
                    Some(a) if !a.is_empty() => ClaimOp::In(a.iter().map(toml_to_json).collect()),
                    _ => return err("in", "must be a non-empty array".into()),
                },
                "starts_with" => ClaimOp::StartsWith(str_of("starts_with")?),
                "ends_with" => ClaimOp::EndsWith(str_of("ends_with")?),
                "regex" => ClaimOp::Regex(
                    anchored(&str_of("regex")?).map_err(|e| ("regex".to_owned(), e))?,
                ),
                "exists" => match val.as_bool() {
                    Some(b) => ClaimOp::Exists(b),
                    None => return err("exists", "must be true or false".into()),
                },
                other => {
                    return err(
                        other,
                        format!(
                            "unknown claim operator (expected one of: {})",
                            OPS.join(", ")
                        ),
                    );
                }
            };
            return Ok(Self::Claim { path, op });
        }
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        err(
            keys.first().copied().unwrap_or(""),
            "unknown condition (expected one of: all, any, not, group, group_glob, group_regex, claim)".into(),
        )
    }

    pub fn evaluate(&self, id: &IdentityClaims) -> Verdict {
        let yes = |why: String| Verdict { matched: true, why };
        let no = |why: String| Verdict {
            matched: false,
            why,
        };
        match self {
            Self::All(cs) => {
                let mut whys = Vec::new();
                for (i, c) in cs.iter().enumerate() {
                    let v = c.evaluate(id);
                    if !v.matched {
                        return no(format!("all[{i}] failed: {}", v.why));
                    }
                    whys.push(v.why);
                }
                yes(whys.join("; and "))
            }
            Self::Any(cs) => {
                let mut whys = Vec::new();
                for (i, c) in cs.iter().enumerate() {
                    let v = c.evaluate(id);
                    if v.matched {
                        return yes(format!("any[{i}]: {}", v.why));
                    }
                    whys.push(v.why);
                }
                no(format!("none of any[..] matched: {}", whys.join("; ")))
            }
            Self::Not(c) => {
                let v = c.evaluate(id);
                Verdict {
                    matched: !v.matched,
                    why: format!("not ({})", v.why),
                }
            }
            Self::Group(g) => {
                if id.groups.contains(g) {
                    yes(format!("member of group {:?}", g.as_str()))
                } else {
                    no(format!("not a member of group {:?}", g.as_str()))
                }
            }
            Self::GroupGlob(p, m) => match id.groups.iter().find(|g| m.is_match(g.as_str())) {
                Some(g) => yes(format!("group {:?} matches glob {p:?}", g.as_str())),
                None => no(format!("no group matches glob {p:?}")),
            },
            Self::GroupRegex(r) => match id.groups.iter().find(|g| r.is_match(g.as_str())) {
                Some(g) => yes(format!(
                    "group {:?} matches regex {}",
                    g.as_str(),
                    r.as_str()
                )),
                None => no(format!("no group matches regex {}", r.as_str())),
            },
            Self::Claim { path, op } => eval_claim(path, op, id),
        }
    }
}

/// Scalars of a claim value: the value itself, or each element when it is an array
/// (`amr`, `roles` and group-like claims are arrays; a condition matches if any element does).
fn scalars(v: &Json) -> Vec<&Json> {
    match v {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn eval_claim(path: &ClaimPath, op: &ClaimOp, id: &IdentityClaims) -> Verdict {
    let p = path.as_str();
    let value = path.lookup(&id.claims);
    if let ClaimOp::Exists(want) = op {
        let present = value.is_some();
        return Verdict {
            matched: present == *want,
            why: format!(
                "claim {p} is {}",
                if present { "present" } else { "absent" }
            ),
        };
    }
    let Some(value) = value else {
        return Verdict {
            matched: false,
            why: format!("claim {p} is absent"),
        };
    };
    let items = scalars(value);
    let as_str = |j: &&Json| j.as_str().map(str::to_owned);
    let (matched, what) = match op {
        ClaimOp::Equals(want) => (items.contains(&want), format!("equal {want}")),
        ClaimOp::In(set) => (
            items.iter().any(|j| set.contains(j)),
            format!("be one of {}", Json::Array(set.clone())),
        ),
        ClaimOp::StartsWith(s) => (
            items
                .iter()
                .filter_map(as_str)
                .any(|v| v.starts_with(s.as_str())),
            format!("start with {s:?}"),
        ),
        ClaimOp::EndsWith(s) => (
            items
                .iter()
                .filter_map(as_str)
                .any(|v| v.ends_with(s.as_str())),
            format!("end with {s:?}"),
        ),
        ClaimOp::Regex(r) => (
            items.iter().filter_map(as_str).any(|v| r.is_match(&v)),
            format!("match regex {}", r.as_str()),
        ),
        ClaimOp::Exists(_) => unreachable!("handled above"),
    };
    let shown = truncate_for_display(&value.to_string());
    Verdict {
        matched,
        why: if matched {
            format!("claim {p} = {shown} does {what}")
        } else {
            format!("claim {p} = {shown} does not {what}")
        },
    }
}

fn truncate_for_display(s: &str) -> String {
    if s.chars().count() <= 120 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(120).collect::<String>())
    }
}
