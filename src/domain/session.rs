//! The parameters of an STS session: session name, source identity, session tags and
//! duration, each with AWS's limits built in so that a request rolegate builds is never
//! refused by STS for a malformed parameter.

use std::fmt;
use std::time::Duration;

use super::{DomainError, is_aws_name_char};

/// `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`. It shows up in CloudTrail and in
/// the assumed-role ARN (`assumed-role/ROLE/SESSION`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleSessionName(String);

impl RoleSessionName {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let len = s.chars().count();
        if !(2..=64).contains(&len) {
            return Err(DomainError::new(format!(
                "role session name {s:?} must be 2 to 64 characters"
            )));
        }
        if !s.chars().all(is_aws_name_char) {
            return Err(DomainError::new(format!(
                "role session name {s:?} may only contain letters, digits and +=,.@_-"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// Builds a session name from a user identifier (e-mail, username, subject) that may
    /// contain anything: characters AWS refuses become `_`, the result is cut to 64
    /// characters and padded to at least 2. The session name is a label for humans
    /// reading CloudTrail, not an identity (that is [`SourceIdentity`]), so a lossy
    /// mapping is acceptable here.
    pub fn from_user(user: &str) -> Self {
        let mut s: String = user
            .chars()
            .map(|c| if is_aws_name_char(c) { c } else { '_' })
            .take(64)
            .collect();
        while s.len() < 2 {
            s.push('_');
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleSessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `SourceIdentity`: 2 to 64 characters of `[\w+=,.@-]`, not starting with `aws:`.
/// Once set, AWS carries it through role chaining and the user cannot change it, so it is
/// never built lossily: an invalid value is an error, not a sanitized approximation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceIdentity(String);

impl SourceIdentity {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let len = s.chars().count();
        if !(2..=64).contains(&len) {
            return Err(DomainError::new(format!(
                "source identity {s:?} must be 2 to 64 characters"
            )));
        }
        if !s.chars().all(is_aws_name_char) {
            return Err(DomainError::new(format!(
                "source identity {s:?} may only contain letters, digits and +=,.@_-"
            )));
        }
        if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(DomainError::new(format!(
                "source identity {s:?} must not start with \"aws:\""
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// AWS accepts at most this many session tags per AssumeRole call.
pub const MAX_SESSION_TAGS: usize = 50;

fn is_tag_char(c: char) -> bool {
    c.is_alphabetic()
        || c.is_numeric()
        || (c.is_whitespace() && !c.is_control())
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

/// One session tag. Key: 1 to 128 characters; value: 0 to 256 characters; both made of
/// Unicode letters, digits, spaces and `_.:/=+-@`; the key must not start with `aws:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionTag {
    key: String,
    value: String,
}

impl SessionTag {
    pub fn parse(key: &str, value: &str) -> Result<Self, DomainError> {
        let klen = key.chars().count();
        if !(1..=128).contains(&klen) {
            return Err(DomainError::new(format!(
                "session tag key {key:?} must be 1 to 128 characters"
            )));
        }
        if !key.chars().all(is_tag_char) {
            return Err(DomainError::new(format!(
                "session tag key {key:?} may only contain letters, digits, spaces and _.:/=+-@"
            )));
        }
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(DomainError::new(format!(
                "session tag key {key:?} must not start with \"aws:\""
            )));
        }
        let vlen = value.chars().count();
        if vlen > 256 {
            return Err(DomainError::new(format!(
                "session tag {key:?} has a value of {vlen} characters; AWS allows at most 256"
            )));
        }
        if !value.chars().all(is_tag_char) {
            return Err(DomainError::new(format!(
                "session tag {key:?} has a value with characters AWS does not allow (letters, digits, spaces and _.:/=+-@ only)"
            )));
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// A set of session tags that AWS will accept together: at most [`MAX_SESSION_TAGS`],
/// keys unique ignoring case (STS treats `Team` and `team` as the same key), and every
/// transitive key naming one of the tags. Kept sorted by key so output is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTags {
    tags: Vec<SessionTag>,
    transitive_keys: Vec<String>,
}

impl SessionTags {
    pub fn new(
        mut tags: Vec<SessionTag>,
        mut transitive_keys: Vec<String>,
    ) -> Result<Self, DomainError> {
        if tags.len() > MAX_SESSION_TAGS {
            return Err(DomainError::new(format!(
                "{} session tags; AWS allows at most {MAX_SESSION_TAGS}",
                tags.len()
            )));
        }
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        // Exact-key order can separate case variants ("A" < "Z" < "a"), so compare lowered keys.
        let mut lowered: Vec<String> = tags.iter().map(|t| t.key.to_lowercase()).collect();
        lowered.sort();
        if let Some(pair) = lowered.windows(2).find(|p| p[0] == p[1]) {
            return Err(DomainError::new(format!(
                "two session tags have the key {:?} (ignoring case); AWS treats them as one key",
                pair[0]
            )));
        }
        transitive_keys.sort();
        transitive_keys.dedup();
        for k in &transitive_keys {
            if !tags.iter().any(|t| &t.key == k) {
                return Err(DomainError::new(format!(
                    "transitive tag key {k:?} is not one of the session tags"
                )));
            }
        }
        Ok(Self {
            tags,
            transitive_keys,
        })
    }

    pub fn tags(&self) -> &[SessionTag] {
        &self.tags
    }

    pub fn transitive_keys(&self) -> &[String] {
        &self.transitive_keys
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// How long an STS session lasts: 15 minutes to 12 hours, in whole seconds, as AssumeRole
/// allows. A role's own maximum (its IAM `MaxSessionDuration`) can only lower this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionDuration(u32);

impl SessionDuration {
    pub const MIN: SessionDuration = SessionDuration(900);
    pub const MAX: SessionDuration = SessionDuration(43_200);

    pub fn parse(d: Duration) -> Result<Self, DomainError> {
        if d.subsec_nanos() != 0 {
            return Err(DomainError::new("session duration must be whole seconds"));
        }
        let secs = d.as_secs();
        if !(u64::from(Self::MIN.0)..=u64::from(Self::MAX.0)).contains(&secs) {
            return Err(DomainError::new(format!(
                "session duration {} must be between 15m and 12h",
                humantime::format_duration(d)
            )));
        }
        Ok(Self(secs as u32))
    }

    pub fn from_secs(secs: u32) -> Result<Self, DomainError> {
        Self::parse(Duration::from_secs(u64::from(secs)))
    }

    pub fn as_secs(self) -> u32 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl fmt::Display for SessionDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.as_duration()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn session_names_follow_the_aws_charset_and_length() {
        assert!(RoleSessionName::parse("alice@example.com").is_ok());
        assert!(RoleSessionName::parse("a").is_err());
        assert!(RoleSessionName::parse(&"a".repeat(65)).is_err());
        assert!(RoleSessionName::parse("alice smith").is_err());
    }

    #[test]
    fn source_identity_refuses_the_aws_prefix_and_bad_characters() {
        assert!(SourceIdentity::parse("alice@example.com").is_ok());
        assert!(SourceIdentity::parse("AWS:alice").is_err());
        assert!(SourceIdentity::parse("a").is_err());
        assert!(SourceIdentity::parse("al ice").is_err());
        assert!(SourceIdentity::parse(&"a".repeat(64)).is_ok());
        assert!(SourceIdentity::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn session_tags_enforce_aws_limits() {
        assert!(SessionTag::parse("team", "payments / EU").is_ok());
        assert!(SessionTag::parse("", "x").is_err());
        assert!(SessionTag::parse(&"k".repeat(129), "x").is_err());
        assert!(SessionTag::parse("k", &"v".repeat(257)).is_err());
        assert!(SessionTag::parse("aws:team", "x").is_err());
        assert!(SessionTag::parse("team", "a;b").is_err());
        assert!(SessionTag::parse("team", "").is_ok());
    }

    #[test]
    fn tag_sets_refuse_case_duplicates_excess_and_unknown_transitive_keys() {
        let t = |k: &str| SessionTag::parse(k, "v").unwrap();
        assert!(SessionTags::new(vec![t("Team"), t("b"), t("team")], vec![]).is_err());
        let many: Vec<_> = (0..51).map(|i| t(&format!("k{i}"))).collect();
        assert!(SessionTags::new(many, vec![]).is_err());
        assert!(SessionTags::new(vec![t("team")], vec!["other".into()]).is_err());
        let ok = SessionTags::new(vec![t("z"), t("a")], vec!["a".into()]).unwrap();
        assert_eq!(ok.tags()[0].key(), "a", "tags are sorted by key");
    }

    #[test]
    fn durations_are_bounded_to_sts_limits() {
        assert!(SessionDuration::from_secs(899).is_err());
        assert!(SessionDuration::from_secs(900).is_ok());
        assert!(SessionDuration::from_secs(43_200).is_ok());
        assert!(SessionDuration::from_secs(43_201).is_err());
        assert!(SessionDuration::parse(Duration::from_millis(900_500)).is_err());
    }

    proptest! {
        #[test]
        fn sanitized_session_names_always_parse(user in "\\PC{0,100}") {
            let name = RoleSessionName::from_user(&user);
            prop_assert!(RoleSessionName::parse(name.as_str()).is_ok());
        }

        #[test]
        fn valid_user_names_survive_sanitizing_unchanged(user in "[a-zA-Z0-9_+=,.@-]{2,64}") {
            let name = RoleSessionName::from_user(&user);
            prop_assert_eq!(name.as_str(), user.as_str());
        }
    }
}
