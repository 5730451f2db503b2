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
    /// Unique names: `u:` + a user's lower-cased userName, `g:` + a group's lower-cased
    /// displayName, to the resource's id.
    Names,
    /// A user's groups (ids and names) by user id: the Group resources' members, inverted.
    MemberOf,
    /// A person's membership view (active, groups) by their identity key.
    Members,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
            Self::Names => "names",
            Self::MemberOf => "member-of",
            Self::Members => "members",
        }
    }

    /// Position in the keys a commit passes (the version lives in `meta`, first).
    fn slot(self) -> usize {
        match self {
            Self::Users => 1,
            Self::Groups => 2,
            Self::Names => 3,
            Self::MemberOf => 4,
            Self::Members => 5,
        }
    }
}

const TABLES: [Table; 5] = [
    Table::Users,
    Table::Groups,
    Table::Names,
    Table::MemberOf,
    Table::Members,
];

/// The directory's keys in commit order: `meta` (the version), then each table at its
/// slot.
pub(super) fn directory_keys(idp: &str) -> Vec<Key> {
    let mut keys = vec![Key::directory(idp, "meta")];
    keys.extend(TABLES.iter().map(|t| Key::directory(idp, t.name())));
    debug_assert!(
        TABLES
            .iter()
            .all(|t| keys[t.slot()] == Key::directory(idp, t.name()))
    );
    keys
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
        Ok(self
            .raw()
            .hash_get(Key::directory(idp, "meta").as_str(), VERSION)
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

    /// Several fields of one table (`None` for each field absent), in order.
    pub async fn directory_get_many(
        &self,
        idp: &str,
        table: Table,
        fields: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        self.raw()
            .hash_get_many(Key::directory(idp, table.name()).as_str(), fields)
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
