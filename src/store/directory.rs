//! One IdP's provisioned directory (SCIM): its users, groups, and the membership view the
//! access core reads at every request, as hashes that share one Redis Cluster hash slot
//! (`{scim.HASH}:TABLE`). Every change is a [`DirectoryChange`]: written at once, and only
//! if the directory's version is still the one the change was computed from (optimistic
//! concurrency: of two concurrent writers one wins and the other recomputes), so a user,
//! the groups naming them and their membership view never disagree, even when the store
//! fails between two requests.

use super::keys::Key;
use super::{Store, StoreError};

/// A table of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// SCIM User resources by id.
    Users,
    /// SCIM Group resources by id.
    Groups,
    /// A person's membership view (active, groups) by their identity key.
    Members,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
            Self::Members => "members",
        }
    }

    /// Position in the keys a commit passes (the version lives in `meta`, first).
    fn slot(self) -> usize {
        match self {
            Self::Users => 1,
            Self::Groups => 2,
            Self::Members => 3,
        }
    }
}

/// The directory's keys in commit order: `meta` (the version), users, groups, members.
pub(super) fn directory_keys(idp: &str) -> [Key; 4] {
    [
        Key::directory(idp, "meta"),
        Key::directory(idp, Table::Users.name()),
        Key::directory(idp, Table::Groups.name()),
        Key::directory(idp, Table::Members.name()),
    ]
}

/// The field of `meta` holding the version.
pub(super) const VERSION: &str = "version";

/// A change to one directory, computed from its state at `version`.
#[derive(Debug)]
pub struct DirectoryChange {
    pub(super) idp: String,
    pub(super) version: u64,
    /// (table's slot, field, new value or `None` to delete).
    pub(super) ops: Vec<(usize, String, Option<String>)>,
}

impl DirectoryChange {
    pub fn put(&mut self, table: Table, field: &str, value: String) -> &mut Self {
        self.ops.push((table.slot(), field.to_owned(), Some(value)));
        self
    }

    pub fn delete(&mut self, table: Table, field: &str) -> &mut Self {
        self.ops.push((table.slot(), field.to_owned(), None));
        self
    }
}

impl Store {
    /// The directory's version: changes with every committed change.
    pub async fn directory_version(&self, idp: &str) -> Result<u64, StoreError> {
        let [meta, ..] = directory_keys(idp);
        Ok(self
            .raw()
            .hash_get(meta.as_str(), VERSION)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub async fn directory_get(
        &self,
        idp: &str,
        table: Table,
        field: &str,
    ) -> Result<Option<String>, StoreError> {
        self.raw()
            .hash_get(Key::directory(idp, table.name()).as_str(), field)
            .await
    }

    pub async fn directory_all(
        &self,
        idp: &str,
        table: Table,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.raw()
            .hash_all(Key::directory(idp, table.name()).as_str())
            .await
    }

    /// A change computed from the directory at `version`.
    pub fn directory_change(&self, idp: &str, version: u64) -> DirectoryChange {
        DirectoryChange {
            idp: idp.to_owned(),
            version,
            ops: Vec::new(),
        }
    }

    /// Applies the change atomically if the directory is still at its version (and bumps
    /// the version); `Ok(false)` when another change came first (nothing was written).
    pub async fn directory_commit(&self, change: &DirectoryChange) -> Result<bool, StoreError> {
        let keys = directory_keys(&change.idp);
        let keys: Vec<&str> = keys.iter().map(Key::as_str).collect();
        self.raw()
            .hash_commit(&keys, VERSION, change.version, &change.ops)
            .await
    }
}
