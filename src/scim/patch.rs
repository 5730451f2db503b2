//! SCIM PATCH (RFC 7644 §3.5.2) on a resource's canonical JSON: `add`, `replace`,
//! `remove` (in any case: Entra ID sends `Replace`), with or without a `path`: an
//! attribute (`active`, `name.givenName`, `urn:…:User:department`) or a value path
//! (`members[value eq "…"]`, `emails[type eq "work"].value`). The forms Okta and Entra ID
//! send for `active` (a boolean, or `"False"`) and `members` (added as a list, removed by
//! a value path or by a list of values) all work. Every operation is checked against the
//! schema; the caller applies the result only if all of them succeeded (nothing is partly
//! applied).

use serde_json::{Map, Value as Json};

use super::ScimError;
use super::filter::{AttrPath, CompareOp, Filter};
use super::schema::{Attr, Kind, check_value, lookup};

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH path: an attribute, with an optional filter on its elements and a
/// sub-attribute.
struct Path {
    attr: AttrPath,
    filter: Option<Filter>,
}

fn parse_path(raw: &str) -> Result<Path, ScimError> {
    if raw.len() > 1000 {
        return Err(ScimError::new(
            400,
            Some("invalidPath"),
            "the path is too long",
        ));
    }
    let Some(open) = raw.find('[') else {
        return AttrPath::parse(raw)
            .map(|attr| Path { attr, filter: None })
            .map_err(|_| {
                ScimError::new(400, Some("invalidPath"), format!("{raw:?} is not a path"))
            });
    };
    let close = raw
        .rfind(']')
        .filter(|c| *c > open)
        .ok_or_else(|| ScimError::new(400, Some("invalidPath"), "a [ is not closed"))?;
    let mut attr = AttrPath::parse(&raw[..open])
        .map_err(|_| ScimError::new(400, Some("invalidPath"), format!("{raw:?} is not a path")))?;
    let filter = Filter::parse(&raw[open + 1..close])
        .map_err(|e| ScimError::new(400, Some("invalidPath"), e.detail))?;
    let rest = &raw[close + 1..];
    if !rest.is_empty() {
        let sub = rest
            .strip_prefix('.')
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '$'))
            .ok_or_else(|| {
                ScimError::new(400, Some("invalidPath"), format!("{raw:?} is not a path"))
            })?;
        attr.sub = Some(sub.to_owned());
    }
    Ok(Path {
        attr,
        filter: Some(filter),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Add,
    Replace,
    Remove,
}

/// The container an attribute lives in: the resource, or an extension's object.
fn container<'a>(
    resource: &'a mut Map<String, Json>,
    scope: Option<&str>,
) -> &'a mut Map<String, Json> {
    match scope {
        None => resource,
        Some(urn) => {
            let e = resource
                .entry(urn.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if !e.is_object() {
                *e = Json::Object(Map::new());
            }
            e.as_object_mut().expect("just made an object")
        }
    }
}

fn sub_attr<'a>(attr: &'a Attr, name: &str) -> Result<&'a Attr, ScimError> {
    attr.sub
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            ScimError::new(
                400,
                Some("invalidPath"),
                format!("{}.{name} is not an attribute", attr.name),
            )
        })
}

fn same_value(a: &Json, b: &Json) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Applies one operation with a path.
fn apply_path(
    kind: Kind,
    resource: &mut Map<String, Json>,
    op: OpKind,
    path: &Path,
    value: Option<&Json>,
) -> Result<(), ScimError> {
    let Some((scope, attr)) = lookup(kind, path.attr.uri.as_deref(), &path.attr.attr) else {
        return Err(ScimError::new(
            400,
            Some("invalidPath"),
            format!("{} is not an attribute of {}", path.attr.attr, kind.name()),
        ));
    };
    if attr.read_only {
        return Err(ScimError::new(
            400,
            Some("mutability"),
            format!("{} is read-only", attr.name),
        ));
    }
    let need_value =
        || value.ok_or_else(|| ScimError::invalid_value(format!("{} needs a value", attr.name)));
    let target = container(resource, scope);
    if let Some(filter) = &path.filter {
        if !attr.multi {
            return Err(ScimError::new(
                400,
                Some("invalidPath"),
                format!("{} is not multi-valued", attr.name),
            ));
        }
        // An element to create may need its list first (see below).
        let creates = op != OpKind::Remove
            && path.attr.sub.is_some()
            && matches!(filter, Filter::Compare(fp, CompareOp::Eq, _) if fp.uri.is_none() && fp.sub.is_none());
        if creates && !target.get(attr.name).is_some_and(Json::is_array) {
            target.insert(attr.name.to_owned(), Json::Array(Vec::new()));
        }
        let items = target.get_mut(attr.name).and_then(Json::as_array_mut);
        let Some(items) = items else {
            return match op {
                OpKind::Remove => Ok(()),
                _ => Err(ScimError::new(
                    400,
                    Some("noTarget"),
                    format!("no {} matches", attr.name),
                )),
            };
        };
        let matching: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, e)| filter.matches(e))
            .map(|(i, _)| i)
            .collect();
        // `emails[type eq "work"].value` naming an element that is not there yet: Entra ID
        // sends replace (and add) that way to set it, so the element is created.
        if matching.is_empty()
            && op != OpKind::Remove
            && let (Some(sub), Filter::Compare(fp, CompareOp::Eq, fv)) = (&path.attr.sub, filter)
            && fp.uri.is_none()
            && fp.sub.is_none()
        {
            let key = sub_attr(attr, &fp.attr)?;
            let sub = sub_attr(attr, sub)?;
            let mut element = Map::new();
            element.insert(key.name.to_owned(), check_value(key, fv, true)?);
            element.insert(sub.name.to_owned(), check_value(sub, need_value()?, true)?);
            items.push(Json::Object(element));
            return Ok(());
        }
        if matching.is_empty() && op != OpKind::Remove {
            return Err(ScimError::new(
                400,
                Some("noTarget"),
                format!("no {} matches", attr.name),
            ));
        }
        match (&path.attr.sub, op) {
            (Some(sub), OpKind::Remove) => {
                let sub = sub_attr(attr, sub)?;
                for i in matching {
                    if let Some(o) = items[i].as_object_mut() {
                        o.remove(sub.name);
                    }
                }
            }
            (Some(sub), _) => {
                let sub = sub_attr(attr, sub)?;
                let v = check_value(sub, need_value()?, true)?;
                for i in matching {
                    if let Some(o) = items[i].as_object_mut() {
                        o.insert(sub.name.to_owned(), v.clone());
                    }
                }
            }
            (None, OpKind::Remove) => {
                let mut i = 0;
                items.retain(|_| {
                    let keep = !matching.contains(&i);
                    i += 1;
                    keep
                });
            }
            (None, _) => {
                let v = check_value(attr, need_value()?, false)?;
                for i in matching {
                    if let (Some(o), Some(new)) = (items[i].as_object_mut(), v.as_object()) {
                        for (k, x) in new {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                }
            }
        }
        return Ok(());
    }
    match (&path.attr.sub, op) {
        (Some(sub), op) => {
            if attr.multi {
                return Err(ScimError::new(
                    400,
                    Some("invalidPath"),
                    format!("name an element of {} with a filter", attr.name),
                ));
            }
            let sub = sub_attr(attr, sub)?;
            let obj = target
                .entry(attr.name.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if !obj.is_object() {
                *obj = Json::Object(Map::new());
            }
            let obj = obj.as_object_mut().expect("an object");
            if op == OpKind::Remove {
                obj.remove(sub.name);
            } else {
                obj.insert(sub.name.to_owned(), check_value(sub, need_value()?, true)?);
            }
        }
        (None, OpKind::Remove) => {
            if attr.required {
                return Err(ScimError::invalid_value(format!(
                    "{} is required",
                    attr.name
                )));
            }
            match (attr.multi, value) {
                // Entra ID: remove these members (a list of values).
                (true, Some(v)) => {
                    let gone = check_value(attr, v, true)?;
                    let gone = gone.as_array().cloned().unwrap_or_default();
                    if let Some(items) = target.get_mut(attr.name).and_then(Json::as_array_mut) {
                        items.retain(|e| !gone.iter().any(|g| same_value(e, g)));
                    }
                }
                _ => {
                    target.remove(attr.name);
                }
            }
        }
        (None, OpKind::Add) if attr.multi => {
            let add = check_value(attr, need_value()?, true)?;
            let items = target
                .entry(attr.name.to_owned())
                .or_insert_with(|| Json::Array(Vec::new()));
            if !items.is_array() {
                *items = Json::Array(Vec::new());
            }
            let items = items.as_array_mut().expect("an array");
            for v in add.as_array().cloned().unwrap_or_default() {
                if !items.iter().any(|e| same_value(e, &v)) {
                    items.push(v);
                }
            }
        }
        (None, _) => {
            let v = check_value(attr, need_value()?, true)?;
            if attr.required && v.as_str().is_none_or(|s| s.trim().is_empty()) {
                return Err(ScimError::invalid_value(format!(
                    "{} is required",
                    attr.name
                )));
            }
            // A complex single attribute is merged on add, replaced on replace.
            match (op, target.get_mut(attr.name), &v) {
                (OpKind::Add, Some(Json::Object(old)), Json::Object(new)) if !attr.multi => {
                    for (k, x) in new {
                        old.insert(k.clone(), x.clone());
                    }
                }
                _ => {
                    target.insert(attr.name.to_owned(), v);
                }
            }
        }
    }
    Ok(())
}

/// Applies a PatchOp request to `resource` (a copy: the caller stores it only if this
/// returns `Ok`).
pub fn apply(kind: Kind, resource: &mut Map<String, Json>, body: &Json) -> Result<(), ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let schema_ok = obj
        .get("schemas")
        .and_then(Json::as_array)
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(PATCH_SCHEMA)));
    if !schema_ok {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must be [{PATCH_SCHEMA:?}]"
        )));
    }
    let ops = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::invalid_syntax("Operations is missing"))?;
    if ops.is_empty() || ops.len() > 1000 {
        return Err(ScimError::invalid_syntax(
            "Operations must hold 1 to 1000 operations",
        ));
    }
    for op in ops {
        let get = |k: &str| {
            op.as_object()
                .and_then(|o| o.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)))
                .map(|(_, v)| v)
        };
        let kind_of = match get("op")
            .and_then(Json::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => OpKind::Add,
            Some("replace") => OpKind::Replace,
            Some("remove") => OpKind::Remove,
            _ => {
                return Err(ScimError::invalid_syntax(
                    "op must be add, replace or remove",
                ));
            }
        };
        let value = get("value");
        let path = get("path").and_then(Json::as_str).filter(|p| !p.is_empty());
        let extension = path.and_then(|p| {
            kind.extensions()
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(p))
                .map(|(u, _)| *u)
        });
        match path {
            // `externalId` is common to every resource (RFC 7643 §3.1), not a schema's.
            Some(p) if crate::scim::schema::is_dropped(p) => {}
            Some(p) if p.eq_ignore_ascii_case("externalId") => match (kind_of, value) {
                (OpKind::Remove, _) => {
                    resource.remove("externalId");
                }
                (_, Some(Json::String(v))) => {
                    resource.insert("externalId".into(), Json::String(v.clone()));
                }
                _ => return Err(ScimError::invalid_value("externalId must be a string")),
            },
            // A whole extension: its object.
            Some(_) if extension.is_some() => {
                let urn = extension.expect("matched");
                if kind_of != OpKind::Add {
                    resource.remove(urn);
                }
                if kind_of != OpKind::Remove {
                    let Some(Json::Object(values)) = value else {
                        return Err(ScimError::invalid_value(format!("{urn} must be an object")));
                    };
                    for (ek, ev) in values {
                        if ek.eq_ignore_ascii_case("schemas") {
                            continue;
                        }
                        let p = parse_path(&format!("{urn}:{ek}"))?;
                        apply_path(kind, resource, OpKind::Replace, &p, Some(ev))?;
                    }
                }
            }
            Some(p) => apply_path(kind, resource, kind_of, &parse_path(p)?, value)?,
            None => {
                if kind_of == OpKind::Remove {
                    return Err(ScimError::new(400, Some("noTarget"), "remove needs a path"));
                }
                let Some(Json::Object(values)) = value else {
                    return Err(ScimError::invalid_value(
                        "without a path, value must be an object",
                    ));
                };
                for (k, v) in values {
                    // An extension's object: each of its attributes.
                    if k.to_ascii_lowercase().starts_with("urn:")
                        && let Some(ext) = v.as_object()
                        && kind
                            .extensions()
                            .iter()
                            .any(|(u, _)| u.eq_ignore_ascii_case(k))
                    {
                        for (ek, ev) in ext {
                            let path = parse_path(&format!("{k}:{ek}"))?;
                            apply_path(kind, resource, kind_of, &path, Some(ev))?;
                        }
                        continue;
                    }
                    if k.eq_ignore_ascii_case("externalId") {
                        let v = v.as_str().map(str::to_owned).ok_or_else(|| {
                            ScimError::invalid_value("externalId must be a string")
                        })?;
                        resource.insert("externalId".into(), Json::String(v));
                        continue;
                    }
                    if k.eq_ignore_ascii_case("schemas")
                        || k.eq_ignore_ascii_case("id")
                        || crate::scim::schema::is_dropped(k)
                    {
                        continue;
                    }
                    let path = parse_path(k)?;
                    apply_path(kind, resource, kind_of, &path, Some(v))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_SCHEMA, check_resource};
    use serde_json::json;

    fn patch(kind: Kind, start: Json, ops: Json) -> Result<Map<String, Json>, ScimError> {
        let mut r = check_resource(kind, &start).unwrap();
        apply(
            kind,
            &mut r,
            &json!({ "schemas": [PATCH_SCHEMA], "Operations": ops }),
        )?;
        Ok(r)
    }

    fn user() -> Json {
        json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice", "active": true,
                "emails": [{ "value": "a@x", "type": "work" }, { "value": "a@home", "type": "home" }] })
    }

    fn group() -> Json {
        json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "aws-admins",
                "members": [{ "value": "u1" }, { "value": "u2" }] })
    }

    #[test]
    fn okta_and_entra_deactivations_both_work() {
        let okta = patch(
            Kind::User,
            user(),
            json!([{ "op": "replace", "value": { "active": false } }]),
        )
        .unwrap();
        assert_eq!(okta["active"], false);
        let entra = patch(
            Kind::User,
            user(),
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )
        .unwrap();
        assert_eq!(entra["active"], false);
    }

    #[test]
    fn members_are_added_and_removed_in_both_styles() {
        let added = patch(Kind::Group, group(), json!([{ "op": "add", "path": "members", "value": [{ "value": "u3", "display": "c" }, { "value": "u1" }] }])).unwrap();
        assert_eq!(
            added["members"].as_array().unwrap().len(),
            3,
            "u1 is not added twice"
        );
        let okta = patch(
            Kind::Group,
            group(),
            json!([{ "op": "remove", "path": "members[value eq \"u1\"]" }]),
        )
        .unwrap();
        assert_eq!(okta["members"], json!([{ "value": "u2" }]));
        let entra = patch(
            Kind::Group,
            group(),
            json!([{ "op": "Remove", "path": "members", "value": [{ "value": "u2" }] }]),
        )
        .unwrap();
        assert_eq!(entra["members"], json!([{ "value": "u1" }]));
        let replaced = patch(
            Kind::Group,
            group(),
            json!([{ "op": "replace", "path": "members", "value": [{ "value": "u9" }] }]),
        )
        .unwrap();
        assert_eq!(replaced["members"], json!([{ "value": "u9" }]));
        let renamed = patch(
            Kind::Group,
            group(),
            json!([{ "op": "replace", "value": { "displayName": "new" } }]),
        )
        .unwrap();
        assert_eq!(renamed["displayName"], "new");
    }

    #[test]
    fn paths_with_filters_sub_attributes_and_extensions() {
        let r = patch(Kind::User, user(), json!([
            { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@x" },
            { "op": "add", "path": "name.givenName", "value": "Alice" },
            { "op": "replace", "path": format!("{ENTERPRISE_SCHEMA}:department"), "value": "Ops" },
            { "op": "add", "value": { ENTERPRISE_SCHEMA: { "employeeNumber": "42" } } },
        ])).unwrap();
        assert_eq!(r["emails"][0]["value"], "new@x");
        assert_eq!(r["emails"][1]["value"], "a@home");
        assert_eq!(r["name"]["givenName"], "Alice");
        assert_eq!(r[ENTERPRISE_SCHEMA]["department"], "Ops");
        assert_eq!(r[ENTERPRISE_SCHEMA]["employeeNumber"], "42");
    }

    #[test]
    fn entra_sets_an_element_that_is_not_there_yet_through_its_filter() {
        let r = patch(Kind::User, user(), json!([
            { "op": "Replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555" },
            { "op": "Add", "path": "emails[type eq \"other\"].value", "value": "o@x" },
            { "op": "Replace", "path": "password", "value": "dropped" },
        ])).unwrap();
        assert_eq!(
            r["phoneNumbers"],
            json!([{ "type": "work", "value": "+1 555" }])
        );
        assert_eq!(r["emails"][2], json!({ "type": "other", "value": "o@x" }));
        assert!(!r.contains_key("password"));
    }

    #[test]
    fn bad_operations_are_refused_whole() {
        for ops in [
            json!([{ "op": "explode", "path": "active" }]),
            json!([{ "op": "replace", "path": "shoeSize", "value": 42 }]),
            json!([{ "op": "replace", "path": "active", "value": "maybe" }]),
            json!([{ "op": "remove" }]),
            json!([{ "op": "remove", "path": "userName" }]),
            json!([{ "op": "replace", "path": "emails[type eq \"other\"]", "value": { "value": "x" } }]),
            json!([{ "op": "replace", "path": "emails[value co \"q\"].value", "value": "x" }]),
            json!([{ "op": "add", "path": "groups", "value": [{ "value": "g" }] }]),
            json!([{ "op": "replace", "path": "emails[type eq", "value": "x" }]),
            json!([]),
        ] {
            assert!(patch(Kind::User, user(), ops.clone()).is_err(), "{ops}");
        }
        let mut r = check_resource(Kind::User, &user()).unwrap();
        assert!(
            apply(
                Kind::User,
                &mut r,
                &json!({ "Operations": [{ "op": "add", "path": "title", "value": "x" }] })
            )
            .is_err(),
            "no PatchOp schema"
        );
    }
}
