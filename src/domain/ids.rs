//! Identifiers that rolegate's own configuration defines: IdP ids, role/rule/account keys,
//! and group names as received from an identity provider.

use std::fmt;

use super::DomainError;

/// A short machine name used as a key in the config (`[[role]] id`, `[[rule]] id`,
/// `[[account]] id`): lowercase ASCII letters, digits, `-` and `_`, 1 to 64 characters,
/// starting with a letter or digit. Such ids appear in URLs and metric labels, so the
/// charset is deliberately narrow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier(String);

impl Identifier {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > 64 {
            return Err(DomainError::new(format!(
                "id {s:?} must be 1 to 64 characters"
            )));
        }
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !first_ok || !rest_ok {
            return Err(DomainError::new(format!(
                "id {s:?} may only contain lowercase letters, digits, '-' and '_', and must start with a letter or digit"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Identifier {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The id of a configured identity provider (`[[idp]] id`). Same rules as [`Identifier`];
/// a distinct type so an IdP id can never be passed where a role id is expected.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdpId(Identifier);

impl IdpId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Identifier::parse(s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for IdpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group name exactly as an identity provider sent it (no trimming or case folding:
/// `Admins` and `admins` are different groups). Must be non-empty, at most 1024
/// characters and free of control characters, which no real directory emits and which
/// would make logs and `explain` output ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(DomainError::new("group name must not be empty"));
        }
        if s.chars().count() > 1024 {
            return Err(DomainError::new(
                "group name must be at most 1024 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::new(format!(
                "group name {:?} contains a control character",
                s
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_config_style_names() {
        for ok in ["prod-admin", "a", "dev_ro", "0day", &"x".repeat(64)] {
            assert!(Identifier::parse(ok).is_ok(), "{ok:?} should parse");
        }
    }

    #[test]
    fn identifiers_reject_everything_else() {
        for bad in ["", "Prod", "-x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(
                Identifier::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn group_names_are_kept_verbatim_but_not_empty_or_with_controls() {
        assert_eq!(GroupName::parse(" Admins ").unwrap().as_str(), " Admins ");
        assert!(GroupName::parse("").is_err());
        assert!(GroupName::parse("a\nb").is_err());
    }
}
