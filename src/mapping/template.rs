//! Value templates for session tags and source identity: literal text with placeholders
//! `{idp}`, `{subject}`, `{username}`, `{email}` and `{claims.PATH}`; `{{` and `}}` are
//! literal braces. Parsed once at config load, rendered per identity without I/O.

use super::IdentityClaims;
use super::condition::ClaimPath;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Idp,
    Subject,
    Username,
    Email,
    Claim(ClaimPath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(format!(
                        "template {s:?} has an unmatched '}}' (write '}}}}' for a literal brace)"
                    ));
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => return Err(format!("template {s:?} has an unclosed '{{'")),
                        }
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(match name.as_str() {
                        "idp" => Part::Idp,
                        "subject" => Part::Subject,
                        "username" => Part::Username,
                        "email" => Part::Email,
                        other => match other.strip_prefix("claims.") {
                            Some(path) => Part::Claim(ClaimPath::parse(path)?),
                            None => {
                                return Err(format!(
                                    "template {s:?} uses unknown placeholder {{{other}}} (known: {{idp}}, {{subject}}, {{username}}, {{email}}, {{claims.PATH}})"
                                ));
                            }
                        },
                    });
                }
                other => lit.push(other),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self {
            source: s.to_owned(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template for one identity. A missing claim or a claim that is not a
    /// scalar is an error: an empty or `[..]` tag would mislead every policy that reads it.
    pub fn render(&self, id: &IdentityClaims) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Idp => out.push_str(id.idp.as_str()),
                Part::Subject => out.push_str(&id.subject),
                Part::Username => out.push_str(&id.username),
                Part::Email => match &id.email {
                    Some(e) => out.push_str(e),
                    None => return Err("the identity has no email".into()),
                },
                Part::Claim(path) => match path.lookup(&id.claims) {
                    None => return Err(format!("claim {} is missing", path.as_str())),
                    Some(serde_json::Value::String(s)) => out.push_str(s),
                    Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                        out.push_str(&v.to_string())
                    }
                    Some(_) => {
                        return Err(format!("claim {} is not a single value", path.as_str()));
                    }
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_reject_unknown_placeholders_and_unbalanced_braces() {
        assert!(Template::parse("{claims.department}").is_ok());
        assert!(Template::parse("x-{{literal}}").is_ok());
        assert!(
            Template::parse("{department}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(Template::parse("{claims.a").is_err());
        assert!(Template::parse("a}").is_err());
    }
}
