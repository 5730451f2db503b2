//! The resources rolegate's SCIM service provider keeps, as schemas (RFC 7643 §8.7): the
//! core User (the attributes Okta and Entra ID provision), the enterprise extension, and
//! Group. One definition drives `/Schemas`, `/ResourceTypes`, and the checks of every
//! resource written: known attributes only (names case-insensitive, stored in their
//! canonical case), the right types (a boolean sent as `"True"` is read as one), required
//! attributes present, read-only ones ignored.

use serde_json::{Map, Value as Json, json};

use super::ScimError;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Complex,
    Reference,
}

#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub read_only: bool,
    pub unique: bool,
    pub sub: &'static [Attr],
}

const fn s(name: &'static str) -> Attr {
    Attr {
        name,
        ty: Type::String,
        multi: false,
        required: false,
        case_exact: false,
        read_only: false,
        unique: false,
        sub: &[],
    }
}

const fn b(name: &'static str) -> Attr {
    Attr {
        ty: Type::Boolean,
        ..s(name)
    }
}

const fn r(name: &'static str) -> Attr {
    Attr {
        ty: Type::Reference,
        ..s(name)
    }
}

const MULTI_SUB: &[Attr] = &[s("value"), s("display"), s("type"), b("primary")];

const NAME: &[Attr] = &[
    s("formatted"),
    s("familyName"),
    s("givenName"),
    s("middleName"),
    s("honorificPrefix"),
    s("honorificSuffix"),
];

pub static USER: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..s("userName")
    },
    Attr {
        ty: Type::Complex,
        sub: NAME,
        ..s("name")
    },
    s("displayName"),
    s("nickName"),
    s("title"),
    s("userType"),
    s("preferredLanguage"),
    s("locale"),
    s("timezone"),
    b("active"),
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: MULTI_SUB,
        ..s("emails")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: MULTI_SUB,
        ..s("phoneNumbers")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: ADDRESS,
        ..s("addresses")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: MULTI_SUB,
        ..s("ims")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: MULTI_SUB,
        ..s("photos")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: MULTI_SUB,
        ..s("entitlements")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: MULTI_SUB,
        ..s("roles")
    },
    r("profileUrl"),
    Attr {
        ty: Type::Complex,
        multi: true,
        read_only: true,
        sub: &[s("value"), r("$ref"), s("display"), s("type")],
        ..s("groups")
    },
];

const ADDRESS: &[Attr] = &[
    s("formatted"),
    s("streetAddress"),
    s("locality"),
    s("region"),
    s("postalCode"),
    s("country"),
    s("type"),
    b("primary"),
];

/// Schemas some IdPs name without defining them, accepted in `schemas` and otherwise
/// ignored: Entra ID sends this one with every group it creates.
pub const IGNORED_SCHEMAS: &[&str] =
    &["http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"];

/// Attributes accepted and dropped: rolegate never signs anyone in with a SCIM password
/// (Okta sends one when its app is set to sync passwords), so it is not kept.
pub fn is_dropped(name: &str) -> bool {
    name.eq_ignore_ascii_case("password")
}

const MANAGER: &[Attr] = &[s("value"), r("$ref"), s("displayName")];

pub static ENTERPRISE: &[Attr] = &[
    s("employeeNumber"),
    s("costCenter"),
    s("organization"),
    s("division"),
    s("department"),
    Attr {
        ty: Type::Complex,
        sub: MANAGER,
        ..s("manager")
    },
];

pub static GROUP: &[Attr] = &[
    Attr {
        required: true,
        ..s("displayName")
    },
    Attr {
        ty: Type::Complex,
        multi: true,
        sub: &[s("value"), r("$ref"), s("display"), s("type")],
        ..s("members")
    },
];

static USER_EXTENSIONS: &[(&str, &[Attr])] = &[(ENTERPRISE_SCHEMA, ENTERPRISE)];

/// The two kinds of resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "/Users",
            Self::Group => "/Groups",
        }
    }

    pub fn schema(self) -> &'static str {
        match self {
            Self::User => USER_SCHEMA,
            Self::Group => GROUP_SCHEMA,
        }
    }

    pub fn attrs(self) -> &'static [Attr] {
        match self {
            Self::User => USER,
            Self::Group => GROUP,
        }
    }

    /// The extensions this kind takes, with their attributes.
    pub fn extensions(self) -> &'static [(&'static str, &'static [Attr])] {
        match self {
            Self::User => USER_EXTENSIONS,
            Self::Group => &[],
        }
    }
}

fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// The canonical attribute of `kind` a name (or `URN:name`) means: its scope (the
/// extension URN or `None`) and definition.
pub fn lookup(
    kind: Kind,
    uri: Option<&str>,
    name: &str,
) -> Option<(Option<&'static str>, &'static Attr)> {
    match uri {
        None => find(kind.attrs(), name).map(|a| (None, a)),
        Some(u) if u.eq_ignore_ascii_case(kind.schema()) => {
            find(kind.attrs(), name).map(|a| (None, a))
        }
        Some(u) => kind
            .extensions()
            .iter()
            .find(|(urn, _)| urn.eq_ignore_ascii_case(u))
            .and_then(|(urn, attrs)| find(attrs, name).map(|a| (Some(*urn), a))),
    }
}

/// A value checked against its definition, in canonical form.
pub fn check_value(attr: &Attr, v: &Json, whole: bool) -> Result<Json, ScimError> {
    if attr.multi && whole {
        let items: Vec<&Json> = match v {
            Json::Array(a) => a.iter().collect(),
            Json::Null => return Ok(Json::Array(Vec::new())),
            other => vec![other],
        };
        return items
            .into_iter()
            .map(|i| check_value(attr, i, false))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array);
    }
    let bad = |what: &str| ScimError::invalid_value(format!("{} must be {what}", attr.name));
    match attr.ty {
        Type::String | Type::Reference => match v {
            Json::String(s) if s.len() <= 2048 => Ok(v.clone()),
            Json::String(_) => Err(bad("at most 2048 characters")),
            Json::Null => Ok(Json::Null),
            _ => Err(bad("a string")),
        },
        Type::Boolean => match v {
            Json::Bool(_) => Ok(v.clone()),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(Json::Bool(true)),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(Json::Bool(false)),
            _ => Err(bad("true or false")),
        },
        Type::Complex => {
            let Some(obj) = v.as_object() else {
                // A complex attribute given a bare value (`"value"` only): Entra ID sets the
                // enterprise `manager` to the manager's id that way.
                if v.is_string() && attr.sub.iter().any(|s| s.name == "value") {
                    return Ok(json!({ "value": v }));
                }
                return Err(bad("an object"));
            };
            let mut out = Map::new();
            for (k, x) in obj {
                let Some(sub) = find(attr.sub, k) else {
                    return Err(ScimError::invalid_value(format!(
                        "{}.{} is not an attribute of this schema",
                        attr.name,
                        k.chars().take(64).collect::<String>()
                    )));
                };
                let x = check_value(sub, x, true)?;
                if !x.is_null() {
                    out.insert(sub.name.to_owned(), x);
                }
            }
            Ok(Json::Object(out))
        }
    }
}

/// A resource as a client wrote it (create or replace), checked and put in canonical
/// form: `schemas`, the core attributes, and each extension's object. `id` and `meta` are
/// the service provider's and are dropped; read-only attributes are ignored.
pub fn check_resource(kind: Kind, body: &Json) -> Result<Map<String, Json>, ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let schemas: Vec<&str> = match obj.get("schemas") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => return Err(ScimError::invalid_syntax("schemas is missing")),
    };
    if !schemas
        .iter()
        .any(|s| s.eq_ignore_ascii_case(kind.schema()))
    {
        return Err(ScimError::invalid_value(format!(
            "schemas must include {}",
            kind.schema()
        )));
    }
    for s in &schemas {
        if !s.eq_ignore_ascii_case(kind.schema())
            && !kind
                .extensions()
                .iter()
                .any(|(u, _)| u.eq_ignore_ascii_case(s))
            && !IGNORED_SCHEMAS.iter().any(|u| u.eq_ignore_ascii_case(s))
        {
            return Err(ScimError::invalid_value(format!(
                "{:?} is not a schema of this resource",
                s.chars().take(128).collect::<String>()
            )));
        }
    }
    let mut out = Map::new();
    let mut used = vec![kind.schema()];
    for (k, v) in obj {
        match k.to_ascii_lowercase().as_str() {
            "schemas" | "id" | "meta" => continue,
            k if is_dropped(k) || IGNORED_SCHEMAS.iter().any(|u| u.eq_ignore_ascii_case(k)) => {
                continue;
            }
            "externalid" => {
                out.insert("externalId".into(), check_value(&s("externalId"), v, true)?);
                continue;
            }
            _ => {}
        }
        if let Some((urn, attrs)) = kind
            .extensions()
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(k))
        {
            let Some(ext) = v.as_object() else {
                return Err(ScimError::invalid_value(format!("{urn} must be an object")));
            };
            let mut e = Map::new();
            for (ek, ev) in ext {
                let Some(a) = find(attrs, ek) else {
                    return Err(ScimError::invalid_value(format!(
                        "{urn}:{} is not an attribute of this schema",
                        ek.chars().take(64).collect::<String>()
                    )));
                };
                let ev = check_value(a, ev, true)?;
                if !ev.is_null() {
                    e.insert(a.name.to_owned(), ev);
                }
            }
            out.insert((*urn).to_owned(), Json::Object(e));
            used.push(urn);
            continue;
        }
        let Some(a) = find(kind.attrs(), k) else {
            return Err(ScimError::invalid_value(format!(
                "{:?} is not an attribute of {}",
                k.chars().take(64).collect::<String>(),
                kind.name()
            )));
        };
        if a.read_only {
            continue;
        }
        let v = check_value(a, v, true)?;
        if !v.is_null() {
            out.insert(a.name.to_owned(), v);
        }
    }
    for a in kind.attrs().iter().filter(|a| a.required) {
        match out.get(a.name) {
            Some(Json::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return Err(ScimError::invalid_value(format!("{} is required", a.name)));
            }
        }
    }
    out.insert(
        "schemas".into(),
        Json::Array(
            used.into_iter()
                .map(|s| Json::String(s.to_owned()))
                .collect(),
        ),
    );
    Ok(out)
}

fn attr_json(a: &Attr) -> Json {
    let ty = match a.ty {
        Type::String => "string",
        Type::Boolean => "boolean",
        Type::Complex => "complex",
        Type::Reference => "reference",
    };
    let mut j = json!({
        "name": a.name,
        "type": ty,
        "multiValued": a.multi,
        "description": a.name,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": if a.read_only { "readOnly" } else { "readWrite" },
        "returned": "default",
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if a.ty == Type::Complex {
        j["subAttributes"] = Json::Array(a.sub.iter().map(attr_json).collect());
    }
    if a.ty == Type::Reference {
        j["referenceTypes"] = json!(["User", "Group", "external"]);
    }
    j
}

fn schema_json(id: &str, name: &str, attrs: &[Attr], base: &str) -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": name,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

/// `/Schemas`.
pub fn schemas(base: &str) -> Vec<Json> {
    vec![
        schema_json(USER_SCHEMA, "User", USER, base),
        schema_json(ENTERPRISE_SCHEMA, "EnterpriseUser", ENTERPRISE, base),
        schema_json(GROUP_SCHEMA, "Group", GROUP, base),
    ]
}

/// `/ResourceTypes`.
pub fn resource_types(base: &str) -> Vec<Json> {
    [Kind::User, Kind::Group]
        .iter()
        .map(|k| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": k.name(),
                "name": k.name(),
                "endpoint": k.endpoint(),
                "description": k.name(),
                "schema": k.schema(),
                "schemaExtensions": k.extensions().iter().map(|(u, _)| json!({ "schema": u, "required": false })).collect::<Vec<_>>(),
                "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", k.name()) },
            })
        })
        .collect()
}

/// `/ServiceProviderConfig`.
pub fn service_provider_config(base: &str, max_results: usize) -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/rolegate/rolegate#provisioning-scim",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": max_results },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The IdP's SCIM token from rolegate's configuration (scim_token)",
            "primary": true,
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_checked_and_put_in_canonical_form() {
        let body = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "USERNAME": "alice@example.com", "Active": "False", "id": "ignored",
            "emails": [{ "Value": "alice@example.com", "primary": "true" }],
            "groups": [{ "value": "ignored: read-only" }],
            ENTERPRISE_SCHEMA: { "Department": "Platform" },
        });
        let u = check_resource(Kind::User, &body).unwrap();
        assert_eq!(u["userName"], "alice@example.com");
        assert_eq!(u["active"], false);
        assert_eq!(u["emails"][0]["value"], "alice@example.com");
        assert_eq!(u["emails"][0]["primary"], true);
        assert!(!u.contains_key("groups") && !u.contains_key("id"));
        assert_eq!(u[ENTERPRISE_SCHEMA]["department"], "Platform");
    }

    #[test]
    fn unknown_attributes_schemas_and_types_are_refused() {
        let base = |extra: Json| {
            let mut b = json!({ "schemas": [USER_SCHEMA], "userName": "a" });
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            check_resource(Kind::User, &b)
        };
        assert!(base(json!({ "favouriteColour": "blue" })).is_err());
        assert!(base(json!({ "schemas": [USER_SCHEMA, "urn:evil:schema"] })).is_err());
        assert!(base(json!({ "schemas": [GROUP_SCHEMA] })).is_err());
        assert!(base(json!({ "active": "maybe" })).is_err());
        assert!(base(json!({ "name": "not an object" })).is_err());
        assert!(base(json!({ "emails": [{ "value": "a", "extra": 1 }] })).is_err());
        assert!(base(json!({ "userName": "" })).is_err());
        assert!(base(json!({})).is_ok());
        assert!(
            check_resource(Kind::Group, &json!({ "schemas": [GROUP_SCHEMA] })).is_err(),
            "displayName required"
        );
        assert!(check_resource(Kind::User, &json!([1, 2])).is_err());
        let okta = base(json!({ "password": "t1meMa$heen" })).unwrap();
        assert!(!okta.contains_key("password"), "a password is never kept");
        let entra_group =
            json!({ "schemas": [GROUP_SCHEMA, IGNORED_SCHEMAS[0]], "displayName": "g" });
        assert!(check_resource(Kind::Group, &entra_group).is_ok());
    }
}
