//! Inline session policies.

use std::path::PathBuf;
use std::sync::Arc;

use super::DomainError;

/// AWS refuses inline session policies longer than this many characters.
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;

/// An inline session policy: a JSON object, stored minified (AWS counts characters, and
/// whitespace from a pretty-printed file would waste the budget), within AWS's
/// 2048-character limit. `file` says where it came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    file: PathBuf,
    json: Arc<str>,
}

impl SessionPolicy {
    pub fn parse(file: PathBuf, text: &str) -> Result<Self, DomainError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| DomainError::new(format!("session policy is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(DomainError::new("session policy must be a JSON object"));
        }
        let json = value.to_string();
        let chars = json.chars().count();
        if chars > MAX_SESSION_POLICY_CHARS {
            return Err(DomainError::new(format!(
                "session policy is {chars} characters when minified; AWS allows at most {MAX_SESSION_POLICY_CHARS}"
            )));
        }
        Ok(Self {
            file,
            json: json.into(),
        })
    }

    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    pub fn json(&self) -> &str {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_minified_and_bounded() {
        let p = SessionPolicy::parse("p.json".into(), "{ \"Version\" : \"2012-10-17\" }").unwrap();
        assert_eq!(p.json(), r#"{"Version":"2012-10-17"}"#);
        assert!(SessionPolicy::parse("p".into(), "[1]").is_err());
        assert!(SessionPolicy::parse("p".into(), "{").is_err());
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(2100));
        assert!(
            SessionPolicy::parse("p".into(), &big)
                .unwrap_err()
                .to_string()
                .contains("2048")
        );
    }
}
