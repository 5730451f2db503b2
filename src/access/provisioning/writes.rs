//! The writes of the SCIM service provider, planned on one directory version: users and
//! groups created, replaced, patched or deleted, with the memberships that follow.

use serde_json::{Map, Value as Json};

use super::plan::{GroupRef, Plan, Resource, group_name_key, user_name_key};
use super::{MAX_MEMBERS, ScimWrite, member_ids, meta, name_of, new_id, unavailable, version_of};
use crate::scim::ScimError;
use crate::scim::patch;
use crate::scim::schema::{Kind, check_resource};
use crate::store::Table;

/// The resource a create, replace or patch leaves, from the client's body.
fn body_resource(
    kind: Kind,
    write: ScimWrite,
    existing: Option<&Resource>,
    body: Option<&Json>,
) -> Result<Resource, ScimError> {
    let body = body.ok_or_else(|| ScimError::invalid_syntax("a JSON body is required"))?;
    match write {
        ScimWrite::Patch => {
            let mut r = existing.cloned().unwrap_or_default();
            patch::apply(kind, &mut r, body)?;
            // The patched resource must still be a valid one (a required attribute removed,
            // say): checked, and put in canonical form, as if it had been PUT.
            check_resource(kind, &Json::Object(r))
        }
        _ => {
            let mut r = check_resource(kind, body)?;
            if kind == Kind::Group && !r.contains_key("members") {
                r.insert("members".into(), Json::Array(Vec::new()));
            }
            Ok(r)
        }
    }
}

pub(super) async fn plan_user(
    plan: &mut Plan<'_>,
    write: ScimWrite,
    id: Option<&str>,
    body: Option<&Json>,
) -> Result<(String, Option<Resource>), ScimError> {
    let (id, existing) = match (write, id) {
        (ScimWrite::Create, _) => (new_id(), None),
        (_, Some(id)) => match plan.user(id).await.map_err(unavailable)? {
            Some(u) => (id.to_owned(), Some(u)),
            None => return Err(ScimError::not_found("User")),
        },
        (_, None) => return Err(ScimError::invalid_syntax("an id is required")),
    };
    if let ScimWrite::Delete = write {
        let groups: Vec<GroupRef> = plan.groups_of(&id).to_vec();
        for g in &groups {
            if let Some(mut group) = plan.group(&g.id).await.map_err(unavailable)? {
                if let Some(Json::Array(m)) = group.get_mut("members") {
                    m.retain(|x| x.get("value").and_then(Json::as_str) != Some(id.as_str()));
                }
                let v = version_of(&group) + 1;
                let created = group.get("meta").and_then(|m| m.get("created")).cloned();
                group.insert("meta".into(), meta(Kind::Group, created.as_ref(), v));
                plan.set_group(&g.id, Some(group))?;
            }
            plan.set_membership(&id, g, false);
        }
        let old = existing
            .as_ref()
            .map(|u| user_name_key(&name_of(Kind::User, u)));
        if let Some(old) = old {
            plan.change.delete(Table::Names, &old);
        }
        plan.set_user(&id, None);
        return Ok((id, None));
    }
    let mut user = body_resource(Kind::User, write, existing.as_ref(), body)?;
    let old_name = existing
        .as_ref()
        .map(|u| user_name_key(&name_of(Kind::User, u)));
    plan.rename(
        &id,
        old_name.as_deref(),
        &user_name_key(&name_of(Kind::User, &user)),
        "user",
    )
    .await?;
    let created = existing
        .as_ref()
        .and_then(|u| u.get("meta"))
        .and_then(|m| m.get("created"))
        .cloned();
    let version = existing.as_ref().map(version_of).unwrap_or(0) + 1;
    user.remove("groups");
    user.insert("meta".into(), meta(Kind::User, created.as_ref(), version));
    plan.set_user(&id, Some(user.clone()));
    Ok((id, Some(user)))
}

pub(super) async fn plan_group(
    plan: &mut Plan<'_>,
    write: ScimWrite,
    id: Option<&str>,
    body: Option<&Json>,
) -> Result<(String, Option<Resource>), ScimError> {
    let (id, existing) = match (write, id) {
        (ScimWrite::Create, _) => (new_id(), None),
        (_, Some(id)) => match plan.group(id).await.map_err(unavailable)? {
            Some(g) => (id.to_owned(), Some(g)),
            None => return Err(ScimError::not_found("Group")),
        },
        (_, None) => return Err(ScimError::invalid_syntax("an id is required")),
    };
    let before: Vec<String> = existing.as_ref().map(member_ids).unwrap_or_default();
    let old_name = existing.as_ref().map(|g| name_of(Kind::Group, g));
    let after_group = match write {
        ScimWrite::Delete => None,
        _ => Some(body_resource(Kind::Group, write, existing.as_ref(), body)?),
    };
    let after: Vec<String> = after_group.as_ref().map(member_ids).unwrap_or_default();
    if after.len() > MAX_MEMBERS {
        return Err(ScimError::invalid_value(format!(
            "a group holds at most {MAX_MEMBERS} members"
        )));
    }
    // Memberships are of users of this directory; other members (a nested group, an id
    // the directory does not have) are kept as sent but make nobody a member.
    plan.load_users(&after).await.map_err(unavailable)?;
    plan.load_users(&before).await.map_err(unavailable)?;
    let mut users = std::collections::HashSet::new();
    for m in after.iter().chain(&before) {
        if plan.user(m).await.map_err(unavailable)?.is_some() {
            users.insert(m.clone());
        }
    }
    let before: Vec<String> = before.into_iter().filter(|m| users.contains(m)).collect();
    let after_users: Vec<String> = after
        .iter()
        .filter(|m| users.contains(*m))
        .cloned()
        .collect();
    let new_name = after_group.as_ref().map(|g| name_of(Kind::Group, g));
    match (&new_name, &old_name) {
        (Some(new), old) => {
            plan.rename(
                &id,
                old.as_deref().map(group_name_key).as_deref(),
                &group_name_key(new),
                "group",
            )
            .await?;
        }
        (None, Some(old)) => {
            plan.change.delete(Table::Names, &group_name_key(old));
        }
        (None, None) => {}
    }
    let old_ref = old_name.map(|name| GroupRef {
        id: id.clone(),
        name,
    });
    let new_ref = new_name.map(|name| GroupRef {
        id: id.clone(),
        name,
    });
    for m in before.iter().filter(|m| !after_users.contains(m)) {
        if let Some(r) = &old_ref {
            plan.set_membership(m, r, false);
        }
    }
    if let Some(r) = &new_ref {
        // Everyone now in it (a rename reaches those who stayed, too).
        let renamed = old_ref.as_ref().is_some_and(|o| o.name != r.name);
        for m in after_users
            .iter()
            .filter(|m| renamed || !before.contains(m))
        {
            plan.set_membership(m, r, true);
        }
    }
    let Some(mut group) = after_group else {
        plan.set_group(&id, None)?;
        return Ok((id, None));
    };
    // Members as stored: a user's id and name; anything else as the client sent it.
    let sent: std::collections::HashMap<String, Json> = group
        .get("members")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m.get("value")?.as_str()?.to_owned(), m.clone())))
        .collect();
    let mut members = Vec::new();
    for m in &after {
        match plan.user(m).await.map_err(unavailable)? {
            Some(u) => {
                let mut entry = Map::new();
                entry.insert("value".into(), Json::String(m.clone()));
                entry.insert("display".into(), Json::String(name_of(Kind::User, &u)));
                entry.insert("type".into(), Json::String("User".into()));
                members.push(Json::Object(entry));
            }
            None => members.extend(sent.get(m).cloned()),
        }
    }
    group.insert("members".into(), Json::Array(members));
    let created = existing
        .as_ref()
        .and_then(|g| g.get("meta"))
        .and_then(|m| m.get("created"))
        .cloned();
    let version = existing.as_ref().map(version_of).unwrap_or(0) + 1;
    group.insert("meta".into(), meta(Kind::Group, created.as_ref(), version));
    plan.set_group(&id, Some(group.clone()))?;
    Ok((id, Some(group)))
}
