//! SCIM filters (RFC 7644 §3.4.2.2): parsed into a [`Filter`] and evaluated against a
//! resource's JSON. `eq ne co sw ew gt ge lt le pr`, `and`/`or`/`not` with parentheses
//! (not binds tighter than and, and than or), value paths (`emails[type eq "work"]`),
//! attribute paths with a schema URN (`urn:…:User:department`) and sub-attributes
//! (`name.familyName`). Attribute names are case-insensitive; string comparisons too,
//! except for case-exact attributes (`id`, `externalId`). A filter is at most 1,000
//! characters and 20 levels deep.

use serde_json::Value as Json;

use super::ScimError;

const MAX_LEN: usize = 1000;
const MAX_DEPTH: usize = 20;

/// An attribute path: an optional schema URN, an attribute, an optional sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Reads `[URN:]attr[.sub]`.
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        let bad = || ScimError::invalid_filter(format!("{s:?} is not an attribute path"));
        let (uri, rest) = if s.to_ascii_lowercase().starts_with("urn:") {
            let i = s.rfind(':').ok_or_else(bad)?;
            (Some(s[..i].to_owned()), &s[i + 1..])
        } else {
            (None, s)
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 128
                && n.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !name_ok(attr) || sub.is_some_and(|s| !name_ok(s)) {
            return Err(bad());
        }
        Ok(Self {
            uri,
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, CompareOp, Json),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of a multi-valued attribute matches `filter` (whose
    /// paths are the element's sub-attributes).
    ValuePath(AttrPath, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Value(Json),
}

fn lex(s: &str) -> Result<Vec<Token>, ScimError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find its end, honouring escapes, and let serde read it.
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < chars.len() && (escaped || chars[i] != '"') {
                    escaped = !escaped && chars[i] == '\\';
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(ScimError::invalid_filter("a string is not closed"));
                }
                let text: String = chars[start..=i].iter().collect();
                let v: Json = serde_json::from_str(&text)
                    .map_err(|_| ScimError::invalid_filter("a string is not valid"))?;
                out.push(Token::Value(v));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], ' ' | '\t' | '(' | ')' | '[' | ']' | '"')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let token = match lower.as_str() {
                    "true" => Token::Value(Json::Bool(true)),
                    "false" => Token::Value(Json::Bool(false)),
                    "null" => Token::Value(Json::Null),
                    _ if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                        Token::Value(serde_json::from_str(&word).map_err(|_| {
                            ScimError::invalid_filter(format!("{word:?} is not a value"))
                        })?)
                    }
                    _ => Token::Word(word),
                };
                out.push(token);
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, ScimError> {
        if depth > MAX_DEPTH {
            return Err(ScimError::invalid_filter("the filter is nested too deeply"));
        }
        if self.keyword("not") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.group(depth + 1)?)));
        }
        if matches!(self.peek(), Some(Token::Open)) {
            return self.group(depth + 1);
        }
        self.attr_exp(depth)
    }

    fn group(&mut self, depth: usize) -> Result<Filter, ScimError> {
        if self.next() != Some(Token::Open) {
            return Err(ScimError::invalid_filter("expected ("));
        }
        let f = self.or(depth)?;
        if self.next() != Some(Token::Close) {
            return Err(ScimError::invalid_filter("a ( is not closed"));
        }
        Ok(f)
    }

    fn attr_exp(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let Some(Token::Word(path)) = self.next() else {
            return Err(ScimError::invalid_filter("expected an attribute"));
        };
        let path = AttrPath::parse(&path)?;
        if matches!(self.peek(), Some(Token::OpenBracket)) {
            self.at += 1;
            let inner = self.or(depth + 1)?;
            if self.next() != Some(Token::CloseBracket) {
                return Err(ScimError::invalid_filter("a [ is not closed"));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let Some(Token::Word(op)) = self.next() else {
            return Err(ScimError::invalid_filter("expected an operator"));
        };
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            other => {
                return Err(ScimError::invalid_filter(format!(
                    "{:?} is not an operator",
                    other.chars().take(20).collect::<String>()
                )));
            }
        };
        let Some(Token::Value(v)) = self.next() else {
            return Err(ScimError::invalid_filter("expected a value"));
        };
        Ok(Filter::Compare(path, op, v))
    }
}

impl Filter {
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        if s.len() > MAX_LEN {
            return Err(ScimError::invalid_filter(
                "the filter is longer than 1000 characters",
            ));
        }
        let mut p = Parser {
            tokens: lex(s)?,
            at: 0,
        };
        let f = p.or(0)?;
        if p.at != p.tokens.len() {
            return Err(ScimError::invalid_filter(
                "unexpected text after the filter",
            ));
        }
        Ok(f)
    }

    /// Whether `resource` matches.
    pub fn matches(&self, resource: &Json) -> bool {
        match self {
            Self::And(a, b) => a.matches(resource) && b.matches(resource),
            Self::Or(a, b) => a.matches(resource) || b.matches(resource),
            Self::Not(f) => !f.matches(resource),
            Self::Present(p) => values(resource, p)
                .iter()
                .any(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.is_empty())),
            Self::Compare(p, op, want) => {
                let exact = is_case_exact(&p.attr);
                let found = values(resource, p);
                match op {
                    CompareOp::Ne => !found.iter().any(|v| compare(v, CompareOp::Eq, want, exact)),
                    _ => found.iter().any(|v| compare(v, *op, want, exact)),
                }
            }
            Self::ValuePath(p, inner) => {
                let Some(items) = attribute(resource, p) else {
                    return false;
                };
                match items {
                    Json::Array(a) => a.iter().any(|e| inner.matches(e)),
                    other => inner.matches(other),
                }
            }
        }
    }
}

fn is_case_exact(attr: &str) -> bool {
    matches!(
        attr.to_ascii_lowercase().as_str(),
        "id" | "externalid" | "$ref"
    )
}

/// The attribute `p.attr` (of the extension `p.uri`, when given) of `resource`.
pub fn attribute<'a>(resource: &'a Json, p: &AttrPath) -> Option<&'a Json> {
    let obj = resource.as_object()?;
    let scope = match &p.uri {
        Some(uri) => obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(uri))
            .map(|(_, v)| v)?
            .as_object()?,
        None => obj,
    };
    scope
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&p.attr))
        .map(|(_, v)| v)
}

/// The values a path names: the attribute, or a sub-attribute of it (of each element
/// of a multi-valued one). A complex multi-valued attribute without a sub-attribute is
/// compared by its elements' `value`.
fn values<'a>(resource: &'a Json, p: &AttrPath) -> Vec<&'a Json> {
    let Some(v) = attribute(resource, p) else {
        return Vec::new();
    };
    let items: Vec<&Json> = match v {
        Json::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let field = |e: &'a Json, name: &str| -> Option<&'a Json> {
        e.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    items
        .into_iter()
        .filter_map(|e| match (&p.sub, e) {
            (Some(sub), e) => field(e, sub),
            (None, Json::Object(_)) => field(e, "value"),
            (None, e) => Some(e),
        })
        .collect()
}

fn compare(have: &Json, op: CompareOp, want: &Json, exact: bool) -> bool {
    use CompareOp::*;
    match (have, want) {
        (Json::String(h), Json::String(w)) => {
            let (h, w) = if exact {
                (h.clone(), w.clone())
            } else {
                (h.to_lowercase(), w.to_lowercase())
            };
            match op {
                Eq => h == w,
                Ne => h != w,
                Co => h.contains(&w),
                Sw => h.starts_with(&w),
                Ew => h.ends_with(&w),
                Gt => h > w,
                Ge => h >= w,
                Lt => h < w,
                Le => h <= w,
            }
        }
        (Json::Number(h), Json::Number(w)) => {
            let (h, w) = (
                h.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            match op {
                Eq => h == w,
                Ne => h != w,
                Gt => h > w,
                Ge => h >= w,
                Lt => h < w,
                Le => h <= w,
                Co | Sw | Ew => false,
            }
        }
        (Json::Bool(h), Json::Bool(w)) => match op {
            Eq => h == w,
            Ne => h != w,
            _ => false,
        },
        // Booleans some clients send as strings ("True").
        (Json::Bool(h), Json::String(w)) => match (op, w.to_ascii_lowercase().as_str()) {
            (Eq, "true") => *h,
            (Eq, "false") => !*h,
            _ => false,
        },
        (Json::Null, Json::Null) => op == Eq,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Json {
        json!({
            "id": "u1", "userName": "Alice@Example.com", "externalId": "00uABC", "active": true,
            "name": { "givenName": "Alice", "familyName": "Example" },
            "emails": [{ "value": "alice@example.com", "type": "work", "primary": true },
                       { "value": "a@home.example", "type": "home" }],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "Platform" },
        })
    }

    fn m(f: &str) -> bool {
        Filter::parse(f)
            .unwrap_or_else(|e| panic!("{f}: {e:?}"))
            .matches(&user())
    }

    #[test]
    fn the_filters_okta_and_entra_send_match_as_they_should() {
        assert!(
            m(r#"userName eq "alice@example.com""#),
            "userName is case-insensitive"
        );
        assert!(!m(r#"externalId eq "00uabc""#), "externalId is case-exact");
        assert!(m(r#"externalId eq "00uABC""#));
        assert!(m(r#"userName sw "alice" and active eq true"#));
        assert!(m(r#"userName ne "bob@example.com""#));
        assert!(m(r#"emails co "home.example""#));
        assert!(m(r#"emails[type eq "work" and value ew "example.com"]"#));
        assert!(!m(r#"emails[type eq "other"]"#));
        assert!(m(r#"name.familyName eq "example""#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "platform""#
        ));
        assert!(m(r#"title pr or userName pr"#));
        assert!(!m(r#"title pr"#));
        assert!(m(
            r#"not (userName eq "bob") and (active eq true or active eq false)"#
        ));
        assert!(
            m(r#"USERNAME EQ "alice@example.com""#),
            "keywords and names in any case"
        );
        assert!(m(r#"active eq "True""#), "a boolean sent as a string");
    }

    #[test]
    fn malformed_and_hostile_filters_are_refused() {
        for bad in [
            r#"userName eq"#,
            r#"userName xx "a""#,
            r#"userName eq "unterminated"#,
            r#"(userName eq "a""#,
            r#"emails[type eq "work""#,
            r#"userName eq "a" junk"#,
            r#"userName eq "a" or"#,
            r#"" or 1=1 --"#,
            r#"userName eq 'a'"#,
            r#"$(rm -rf) eq "a""#,
            "",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}userName pr{}", "(".repeat(30), ")".repeat(30));
        assert!(Filter::parse(&deep).is_err());
        assert!(Filter::parse(&format!("userName eq \"{}\"", "a".repeat(1100))).is_err());
    }
}
