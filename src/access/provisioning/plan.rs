//! A change to one IdP's directory, planned from what it holds at one version: reads go
//! through the plan (so each is made once and later steps see earlier ones), writes
//! accumulate, and [`Plan::finish`] adds what follows from them (the users' inverted
//! group lists and membership views) and says what changed for access. Nothing is
//! written until the caller commits the whole change on the version it was read at.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::membership::{Membership, user_key_value};
use crate::config::ScimSettings;
use crate::scim::ScimError;
use crate::store::{DirectoryChange, Store, StoreError, Table};

pub(super) type Resource = Map<String, Json>;

/// A group a user is in, as the user's inverted list keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupRef {
    pub id: String,
    pub name: String,
}

/// What a change did to a person's access.
#[derive(Debug, Clone)]
pub(super) enum Effect {
    /// Active before, deactivated or deleted now: end everything they hold.
    Deactivated { key: String },
    /// Deactivated before, active now.
    Reactivated,
    /// Their groups changed.
    Groups,
}

impl Effect {
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Self::Deactivated { .. } => "deactivated",
            Self::Reactivated => "reactivated",
            Self::Groups => "groups",
        }
    }
}

pub(super) fn user_name_key(name: &str) -> String {
    format!("u:{}", name.to_lowercase())
}

pub(super) fn group_name_key(name: &str) -> String {
    format!("g:{}", name.to_lowercase())
}

pub(super) fn is_active(user: &Resource) -> bool {
    // RFC 7643 §4.1.1 leaves an absent `active` to the provider; Okta and Entra always
    // send it, and a user created without it is taken as active.
    user.get("active").and_then(Json::as_bool).unwrap_or(true)
}

fn decode(table: Table, json: &str) -> Result<Resource, StoreError> {
    match serde_json::from_str(json) {
        Ok(Json::Object(m)) => Ok(m),
        _ => Err(StoreError::Corrupt(format!(
            "scim {table:?}: not an object"
        ))),
    }
}

pub(super) struct Plan<'a> {
    store: &'a Store,
    idp: &'a str,
    settings: &'a ScimSettings,
    pub(super) change: DirectoryChange,
    /// Users as this plan leaves them (`None`: deleted or absent).
    users: HashMap<String, Option<Resource>>,
    /// Users as they were at the version read.
    before: HashMap<String, Option<Resource>>,
    member_of: HashMap<String, Vec<GroupRef>>,
    member_of_before: HashMap<String, Vec<GroupRef>>,
    groups: HashMap<String, Option<Resource>>,
    /// Users whose stored state or views must be rewritten.
    touched: BTreeSet<String>,
}

impl<'a> Plan<'a> {
    pub(super) fn new(
        store: &'a Store,
        idp: &'a str,
        settings: &'a ScimSettings,
        version: u64,
    ) -> Self {
        Self {
            store,
            idp,
            settings,
            change: store.directory_change(idp, version),
            users: HashMap::new(),
            before: HashMap::new(),
            member_of: HashMap::new(),
            member_of_before: HashMap::new(),
            groups: HashMap::new(),
            touched: BTreeSet::new(),
        }
    }

    /// Loads the users among `ids` not read yet (one round trip).
    pub(super) async fn load_users(&mut self, ids: &[String]) -> Result<(), StoreError> {
        let missing: Vec<String> = ids
            .iter()
            .filter(|i| !self.users.contains_key(*i))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = self
            .store
            .directory_get_many(self.idp, Table::Users, &missing)
            .await?;
        let lists = self
            .store
            .directory_get_many(self.idp, Table::MemberOf, &missing)
            .await?;
        for ((id, user), list) in missing.into_iter().zip(found).zip(lists) {
            let user = user.map(|j| decode(Table::Users, &j)).transpose()?;
            let list: Vec<GroupRef> = match list {
                Some(j) => serde_json::from_str(&j)
                    .map_err(|e| StoreError::Corrupt(format!("scim member-of: {e}")))?,
                None => Vec::new(),
            };
            self.before.insert(id.clone(), user.clone());
            self.users.insert(id.clone(), user);
            self.member_of_before.insert(id.clone(), list.clone());
            self.member_of.insert(id, list);
        }
        Ok(())
    }

    pub(super) async fn user(&mut self, id: &str) -> Result<Option<Resource>, StoreError> {
        self.load_users(&[id.to_owned()]).await?;
        Ok(self.users.get(id).cloned().flatten())
    }

    pub(super) async fn group(&mut self, id: &str) -> Result<Option<Resource>, StoreError> {
        if let Some(g) = self.groups.get(id) {
            return Ok(g.clone());
        }
        let g = self
            .store
            .directory_get(self.idp, Table::Groups, id)
            .await?
            .map(|j| decode(Table::Groups, &j))
            .transpose()?;
        self.groups.insert(id.to_owned(), g.clone());
        Ok(g)
    }

    /// Who holds a unique name (`u:…` or `g:…`), if anyone.
    pub(super) async fn name_owner(&self, name_key: &str) -> Result<Option<String>, StoreError> {
        self.store
            .directory_get(self.idp, Table::Names, name_key)
            .await
    }

    /// Claims a unique name for `id` (and frees `old`, when the name changed): a 409 when
    /// another resource holds it.
    pub(super) async fn rename(
        &mut self,
        id: &str,
        old: Option<&str>,
        new: &str,
        what: &str,
    ) -> Result<(), ScimError> {
        if old == Some(new) {
            return Ok(());
        }
        match self.name_owner(new).await.map_err(super::unavailable)? {
            Some(owner) if owner != id => {
                return Err(ScimError::uniqueness(format!(
                    "another {what} has that name"
                )));
            }
            _ => {}
        }
        if let Some(old) = old {
            self.change.delete(Table::Names, old);
        }
        self.change.put(Table::Names, new, id.to_owned());
        Ok(())
    }

    pub(super) fn set_user(&mut self, id: &str, user: Option<Resource>) {
        self.users.insert(id.to_owned(), user);
        self.touched.insert(id.to_owned());
    }

    pub(super) fn set_group(&mut self, id: &str, group: Option<Resource>) -> Result<(), ScimError> {
        match &group {
            Some(g) => {
                let json = serde_json::to_string(g)
                    .map_err(|e| ScimError::invalid_value(e.to_string()))?;
                self.change.put(Table::Groups, id, json);
            }
            None => {
                self.change.delete(Table::Groups, id);
            }
        }
        self.groups.insert(id.to_owned(), group);
        Ok(())
    }

    /// A user's groups as this plan leaves them.
    pub(super) fn groups_of(&self, user: &str) -> &[GroupRef] {
        self.member_of.get(user).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Sets the groups a user is in to include (or not) `group`.
    pub(super) fn set_membership(&mut self, user: &str, group: &GroupRef, member: bool) {
        let list = self.member_of.entry(user.to_owned()).or_default();
        list.retain(|g| g.id != group.id);
        if member {
            list.push(group.clone());
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.touched.insert(user.to_owned());
    }

    /// Adds the derived writes (each touched user's record, inverted list and membership
    /// view) and returns the change with what it did to each person's access.
    pub(super) fn finish(mut self) -> Result<(DirectoryChange, Vec<Effect>), ScimError> {
        let mut effects = Vec::new();
        for id in std::mem::take(&mut self.touched) {
            let before = self.before.get(&id).cloned().flatten();
            let after = self.users.get(&id).cloned().flatten();
            let groups = self.member_of.get(&id).cloned().unwrap_or_default();
            let old_key = before.as_ref().and_then(|u| self.key_of(u));
            let new_key = after.as_ref().and_then(|u| self.key_of(u));
            match &after {
                Some(u) => {
                    let json = serde_json::to_string(u)
                        .map_err(|e| ScimError::invalid_value(e.to_string()))?;
                    self.change.put(Table::Users, &id, json);
                    let list = serde_json::to_string(&groups)
                        .map_err(|e| ScimError::invalid_value(e.to_string()))?;
                    self.change.put(Table::MemberOf, &id, list);
                }
                None => {
                    self.change.delete(Table::Users, &id);
                    self.change.delete(Table::MemberOf, &id);
                }
            }
            if let Some((old, _)) = &old_key
                && new_key.as_ref().is_none_or(|(new, _)| new != old)
            {
                if after.is_none() {
                    // Deleted: a tombstone keeps the person refused until provisioned again.
                    let tomb = Membership {
                        id: None,
                        active: false,
                        groups: Vec::new(),
                    };
                    self.change.put(Table::Members, old, json_of(&tomb)?);
                } else {
                    self.change.delete(Table::Members, old);
                }
            }
            if let (Some(u), Some((key, _))) = (&after, &new_key) {
                let view = Membership {
                    id: Some(id.clone()),
                    active: is_active(u),
                    groups: groups.iter().map(|g| g.name.clone()).collect(),
                };
                self.change.put(Table::Members, key, json_of(&view)?);
            }
            let was_active = before.as_ref().is_some_and(is_active);
            let is_now = after.as_ref().is_some_and(is_active);
            if was_active && !is_now {
                // The key as sent: a person whose key is their subject is found by it.
                if let Some((_, raw)) = old_key.or(new_key) {
                    effects.push(Effect::Deactivated { key: raw });
                }
            } else if !was_active && is_now && before.is_some() {
                effects.push(Effect::Reactivated);
            }
            let names = |l: &[GroupRef]| l.iter().map(|g| g.id.clone()).collect::<BTreeSet<_>>();
            let old_groups = self
                .member_of_before
                .get(&id)
                .map(|l| names(l))
                .unwrap_or_default();
            if after.is_some() && names(&groups) != old_groups {
                effects.push(Effect::Groups);
            }
        }
        Ok((self.change, effects))
    }

    /// The user's identity key: (lower-cased for matching, as sent).
    fn key_of(&self, user: &Resource) -> Option<(String, String)> {
        let raw = user_key_value(self.settings, &Json::Object(user.clone()))?;
        Some((raw.to_lowercase(), raw))
    }
}

fn json_of(m: &Membership) -> Result<String, ScimError> {
    serde_json::to_string(m).map_err(|e| ScimError::invalid_value(e.to_string()))
}
