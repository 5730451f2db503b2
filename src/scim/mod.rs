//! SCIM 2.0 (RFC 7643 resources, RFC 7644 protocol) as pure functions over JSON: the
//! schemas rolegate's service provider keeps ([`schema`]), filters ([`filter`]), PATCH
//! ([`patch`]), list queries and responses, attribute projection and errors. No store,
//! no HTTP: the provisioning use cases (`access::provisioning`) and the routes
//! (`web::routes::scim`) are built on these.

pub mod filter;
pub mod patch;
pub mod schema;

use serde_json::{Map, Value as Json, json};

use filter::{AttrPath, Filter};

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The most resources one page returns (`count` above it is lowered to it).
pub const MAX_RESULTS: usize = 200;

/// A SCIM error (RFC 7644 §3.12): the HTTP status, the `scimType` where the RFC defines
/// one, and a detail safe to show the client (never a secret or an internal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {detail}", scim_type.unwrap_or("-"))]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// For 429 and 503: when to try again (seconds).
    pub retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidFilter"), detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidValue"), detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidSyntax"), detail)
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(404, None, format!("no {what} with that id"))
    }

    /// The error's JSON body.
    pub fn body(&self) -> Json {
        let mut b = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            b["scimType"] = Json::String(t.to_owned());
        }
        b
    }
}

/// What a list request (`GET /Users?…`) asks for.
#[derive(Debug)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based index of the first result.
    pub start_index: usize,
    pub count: usize,
    pub projection: Projection,
}

impl ListQuery {
    /// Reads the query parameters (names case-insensitive, as clients differ). A repeated
    /// parameter is refused rather than guessed at.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ScimError> {
        let one = |name: &str| -> Result<Option<&str>, ScimError> {
            let mut found = pairs.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
            let first = found.next().map(|(_, v)| v.as_str());
            if found.next().is_some() {
                return Err(ScimError::invalid_syntax(format!("{name} is given twice")));
            }
            Ok(first)
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            one(name)?
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        ScimError::invalid_syntax(format!("{name} must be an integer"))
                    })
                })
                .transpose()
        };
        let filter = one("filter")?
            .filter(|f| !f.trim().is_empty())
            .map(Filter::parse)
            .transpose()?;
        // RFC 7644 §3.4.2.4: below 1 means 1; a negative count means 0.
        let start_index = number("startIndex")?.unwrap_or(1).max(1) as usize;
        let count = number("count")?
            .map(|c| (c.max(0) as usize).min(MAX_RESULTS))
            .unwrap_or(MAX_RESULTS);
        Ok(Self {
            filter,
            start_index,
            count,
            projection: Projection::from_params(one("attributes")?, one("excludedAttributes")?)?,
        })
    }
}

/// Which attributes a response carries (`attributes` / `excludedAttributes`). `id` and
/// `schemas` are always returned (RFC 7643 §7, `returned: always`).
#[derive(Debug, Default)]
pub struct Projection {
    only: Option<Vec<AttrPath>>,
    except: Vec<AttrPath>,
}

impl Projection {
    pub fn from_params(only: Option<&str>, except: Option<&str>) -> Result<Self, ScimError> {
        let list = |s: &str| -> Result<Vec<AttrPath>, ScimError> {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .take(100)
                .map(|a| {
                    AttrPath::parse(a).map_err(|_| {
                        ScimError::invalid_syntax(format!(
                            "{:?} is not an attribute",
                            a.chars().take(64).collect::<String>()
                        ))
                    })
                })
                .collect()
        };
        Ok(Self {
            only: only.map(list).transpose()?,
            except: except.map(list).transpose()?.unwrap_or_default(),
        })
    }

    /// The resource as the client asked to see it.
    pub fn apply(&self, resource: Json) -> Json {
        let Json::Object(mut obj) = resource else {
            return resource;
        };
        let always = |k: &str| k == "id" || k == "schemas";
        if let Some(only) = &self.only {
            let mut kept = Map::new();
            for (k, v) in obj {
                if always(&k) {
                    kept.insert(k, v);
                    continue;
                }
                if let Some(v) = keep_named(&k, v, only) {
                    kept.insert(k, v);
                }
            }
            obj = kept;
        }
        for p in &self.except {
            remove_named(&mut obj, p, &always);
        }
        Json::Object(obj)
    }
}

fn named(key: &str, p: &AttrPath) -> bool {
    match &p.uri {
        None => key.eq_ignore_ascii_case(&p.attr),
        // `urn:…:User:userName` names a core attribute; `urn:…:enterprise…:department`
        // names one inside the extension's object (handled below).
        Some(u) => {
            u.eq_ignore_ascii_case(schema::USER_SCHEMA) && key.eq_ignore_ascii_case(&p.attr)
                || u.eq_ignore_ascii_case(schema::GROUP_SCHEMA) && key.eq_ignore_ascii_case(&p.attr)
        }
    }
}

/// `key`'s value cut to what `only` names, or `None` when nothing of it is named.
fn keep_named(key: &str, value: Json, only: &[AttrPath]) -> Option<Json> {
    // An extension object: kept whole when named by its URN, else the attributes named.
    if key.to_ascii_lowercase().starts_with("urn:") {
        let whole = only.iter().any(|p| {
            let full = match &p.uri {
                Some(u) => format!("{u}:{}", p.attr),
                None => p.attr.clone(),
            };
            full.eq_ignore_ascii_case(key)
        });
        if whole {
            return Some(value);
        }
        let Json::Object(ext) = value else {
            return None;
        };
        let inner: Map<String, Json> = ext
            .into_iter()
            .filter(|(k, _)| {
                only.iter().any(|p| {
                    p.uri
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(key))
                        && p.attr.eq_ignore_ascii_case(k)
                })
            })
            .collect();
        return (!inner.is_empty()).then_some(Json::Object(inner));
    }
    let hits: Vec<&AttrPath> = only.iter().filter(|p| named(key, p)).collect();
    if hits.is_empty() {
        return None;
    }
    if hits.iter().any(|p| p.sub.is_none()) {
        return Some(value);
    }
    let subs: Vec<&str> = hits.iter().filter_map(|p| p.sub.as_deref()).collect();
    let cut = |v: Json| -> Json {
        match v {
            Json::Object(o) => Json::Object(
                o.into_iter()
                    .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                    .collect(),
            ),
            other => other,
        }
    };
    Some(match value {
        Json::Array(a) => Json::Array(a.into_iter().map(cut).collect()),
        other => cut(other),
    })
}

fn remove_named(obj: &mut Map<String, Json>, p: &AttrPath, always: &dyn Fn(&str) -> bool) {
    if let Some(uri) = &p.uri
        && let Some((_, Json::Object(ext))) =
            obj.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(uri))
    {
        ext.retain(|k, _| !k.eq_ignore_ascii_case(&p.attr));
        return;
    }
    let keys: Vec<String> = obj
        .keys()
        .filter(|k| !always(k) && named(k, p))
        .cloned()
        .collect();
    for k in keys {
        match &p.sub {
            None => {
                obj.remove(&k);
            }
            Some(sub) => match obj.get_mut(&k) {
                Some(Json::Object(o)) => o.retain(|n, _| !n.eq_ignore_ascii_case(sub)),
                Some(Json::Array(a)) => {
                    for e in a.iter_mut() {
                        if let Json::Object(o) = e {
                            o.retain(|n, _| !n.eq_ignore_ascii_case(sub));
                        }
                    }
                }
                _ => {}
            },
        }
    }
}

/// A page of a list (RFC 7644 §3.4.2): `resources` already filtered and sorted; this
/// takes the page `query` asks for and projects each resource.
pub fn list_response(resources: Vec<Json>, query: &ListQuery) -> Json {
    let total = resources.len();
    let page: Vec<Json> = resources
        .into_iter()
        .skip(query.start_index - 1)
        .take(query.count)
        .map(|r| query.projection.apply(r))
        .collect();
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": query.start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, ScimError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ListQuery::from_pairs(&pairs)
    }

    #[test]
    fn paging_follows_the_rfc_for_odd_values() {
        let all: Vec<Json> = (1..=5).map(|i| json!({ "id": i.to_string() })).collect();
        let page = |pairs: &[(&str, &str)]| list_response(all.clone(), &q(pairs).unwrap());
        let p = page(&[("startIndex", "2"), ("count", "2")]);
        assert_eq!(
            (p["totalResults"].as_u64(), p["itemsPerPage"].as_u64()),
            (Some(5), Some(2))
        );
        assert_eq!(p["Resources"][0]["id"], "2");
        let p = page(&[("startIndex", "0"), ("count", "-3")]);
        assert_eq!(
            (p["startIndex"].as_u64(), p["itemsPerPage"].as_u64()),
            (Some(1), Some(0))
        );
        let p = page(&[("startIndex", "9")]);
        assert_eq!(p["Resources"], json!([]));
        assert_eq!(p["totalResults"], 5);
        assert!(q(&[("count", "ten")]).is_err());
        assert!(q(&[("count", "1"), ("COUNT", "2")]).is_err());
        assert_eq!(q(&[("count", "100000")]).unwrap().count, MAX_RESULTS);
    }

    #[test]
    fn projection_keeps_id_and_what_was_asked_for() {
        let user = json!({
            "schemas": [schema::USER_SCHEMA], "id": "1", "userName": "a",
            "name": { "givenName": "A", "familyName": "B" },
            "emails": [{ "value": "a@x", "type": "work" }],
            schema::ENTERPRISE_SCHEMA: { "department": "D", "costCenter": "C" },
        });
        let only = |a: &str| {
            Projection::from_params(Some(a), None)
                .unwrap()
                .apply(user.clone())
        };
        let v = only("userName");
        assert_eq!(
            v,
            json!({ "schemas": [schema::USER_SCHEMA], "id": "1", "userName": "a" })
        );
        let v = only("name.familyName,emails.value");
        assert_eq!(v["name"], json!({ "familyName": "B" }));
        assert_eq!(v["emails"], json!([{ "value": "a@x" }]));
        let v = only(&format!("{}:department", schema::ENTERPRISE_SCHEMA));
        assert_eq!(v[schema::ENTERPRISE_SCHEMA], json!({ "department": "D" }));
        let except = Projection::from_params(None, Some("emails,id,name.givenName")).unwrap();
        let v = except.apply(user.clone());
        assert!(v.get("emails").is_none());
        assert_eq!(v["id"], "1", "id is always returned");
        assert_eq!(v["name"], json!({ "familyName": "B" }));
        assert!(Projection::from_params(Some("bad name"), None).is_err());
    }

    #[test]
    fn errors_have_the_rfc_shape() {
        let e = ScimError::invalid_filter("x");
        assert_eq!(
            e.body(),
            json!({ "schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter", "detail": "x" })
        );
        assert!(
            ScimError::not_found("User")
                .body()
                .get("scimType")
                .is_none()
        );
    }
}
