//! Typed records: every kind of stored state is a Rust type with its key namespace and
//! lifetime in one place ([`Record`]), saved and read through these functions only, so
//! no caller spells a key or serializes by hand.
//!
//! Records that belong to a person are written in [`Txn`]s: several keys of that person
//! (a record, its index entry, a guard that must still exist) change together or not at
//! all, because they share the person's Redis Cluster hash slot ([`PersonTag`]). A store
//! that fails in the middle of a change therefore leaves the person's state as it was.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{Hashed, Key, PersonTag, index_field};
use super::{Store, StoreError, now_unix};

/// A kind of stored state: what it holds, where it lives, how long it stays.
pub trait Record: Serialize + DeserializeOwned {
    /// The key namespace, e.g. `"oauth:family"`.
    const KIND: &'static str;
    /// How long the record stays in the store when written at `now` (Unix seconds).
    fn ttl(&self, now: u64) -> Duration;
}

/// The remaining lifetime until an absolute `expires` (Unix seconds), at least 1 s.
pub fn until(expires: u64, now: u64) -> Duration {
    Duration::from_secs(expires.saturating_sub(now).max(1))
}

fn encode<R: Record>(r: &R) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Corrupt(format!("{}: {e}", R::KIND)))
}

fn decode<R: Record>(json: &str) -> Result<R, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{}: {e}", R::KIND)))
}

/// A change to one person's records, applied atomically by [`Store::commit`]: every
/// guard must hold, then every operation is applied; otherwise nothing is.
pub struct Txn {
    pub(super) tag: PersonTag,
    pub(super) guards: Vec<Guard>,
    pub(super) ops: Vec<Op>,
}

pub(super) enum Guard {
    Exists(Key),
    Absent(Key),
    Unchanged(Key, String),
}

pub(super) enum Op {
    Set(Key, String, Duration),
    Delete(Key),
    /// An index entry: field, entry JSON, and how long the index must live at least.
    List(String, String, Duration),
    Unlist(String),
}

impl Txn {
    /// Applies only if the person's record `R` under `id` still exists.
    pub fn require<R: Record>(&mut self, id: &Hashed) -> &mut Self {
        self.guards
            .push(Guard::Exists(Key::owned(&self.tag, R::KIND, id)));
        self
    }

    /// Applies only if the person has no record `R` under `id` (the first writer wins).
    pub fn require_absent<R: Record>(&mut self, id: &Hashed) -> &mut Self {
        self.guards
            .push(Guard::Absent(Key::owned(&self.tag, R::KIND, id)));
        self
    }

    /// Applies only if the record still holds exactly `stored` (as read): a
    /// compare-and-set, so of several concurrent changes one wins.
    pub fn require_unchanged<R: Record>(&mut self, id: &Hashed, stored: &Stored<R>) -> &mut Self {
        self.guards.push(Guard::Unchanged(
            Key::owned(&self.tag, R::KIND, id),
            stored.json.clone(),
        ));
        self
    }

    /// Writes the record (for its lifetime).
    pub fn put<R: Record>(&mut self, id: &Hashed, record: &R) -> Result<&mut Self, StoreError> {
        let ttl = record.ttl(now_unix());
        self.ops.push(Op::Set(
            Key::owned(&self.tag, R::KIND, id),
            encode(record)?,
            ttl,
        ));
        Ok(self)
    }

    /// Writes the record and lists it in the person's index with `entry` (JSON), both
    /// for the record's lifetime.
    pub fn put_listed<R: Record>(
        &mut self,
        id: &Hashed,
        record: &R,
        entry: &impl Serialize,
    ) -> Result<&mut Self, StoreError> {
        let ttl = record.ttl(now_unix());
        let entry = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.ops.push(Op::Set(
            Key::owned(&self.tag, R::KIND, id),
            encode(record)?,
            ttl,
        ));
        self.ops
            .push(Op::List(index_field(R::KIND, id), entry, ttl));
        Ok(self)
    }

    /// Updates an index entry (e.g. its last use) without touching the record.
    pub fn relist<R: Record>(
        &mut self,
        id: &Hashed,
        entry: &impl Serialize,
        ttl: Duration,
    ) -> Result<&mut Self, StoreError> {
        let entry = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.ops
            .push(Op::List(index_field(R::KIND, id), entry, ttl));
        Ok(self)
    }

    /// Deletes the record (and its index entry, if it has one).
    pub fn delete<R: Record>(&mut self, id: &Hashed) -> &mut Self {
        self.ops
            .push(Op::Delete(Key::owned(&self.tag, R::KIND, id)));
        self.ops.push(Op::Unlist(index_field(R::KIND, id)));
        self
    }

    /// Deletes the record an index field names, and the entry.
    pub fn delete_field(&mut self, field: &str) -> &mut Self {
        self.ops.push(Op::Delete(Key::of_field(&self.tag, field)));
        self.ops.push(Op::Unlist(field.to_owned()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A record as read, with the exact stored text (for [`Txn::require_unchanged`]).
pub struct Stored<R> {
    pub value: R,
    json: String,
}

impl Store {
    /// Saves a global record under `id`, replacing any previous one.
    pub async fn save<R: Record>(&self, id: &Hashed, record: &R) -> Result<(), StoreError> {
        let ttl = record.ttl(now_unix());
        self.raw()
            .put(Key::global(R::KIND, id).as_str(), &encode(record)?, ttl)
            .await
    }

    /// Saves a global record only if none exists under `id`; `true` if this call did.
    pub async fn save_new<R: Record>(&self, id: &Hashed, record: &R) -> Result<bool, StoreError> {
        let ttl = record.ttl(now_unix());
        self.raw()
            .put_if_absent(Key::global(R::KIND, id).as_str(), &encode(record)?, ttl)
            .await
    }

    pub async fn load<R: Record>(&self, id: &Hashed) -> Result<Option<R>, StoreError> {
        match self.raw().get(Key::global(R::KIND, id).as_str()).await? {
            None => Ok(None),
            Some(json) => decode(&json).map(Some),
        }
    }

    /// Returns the global record and deletes it, atomically (single use).
    pub async fn take<R: Record>(&self, id: &Hashed) -> Result<Option<R>, StoreError> {
        match self.raw().take(Key::global(R::KIND, id).as_str()).await? {
            None => Ok(None),
            Some(json) => decode(&json).map(Some),
        }
    }

    pub async fn remove<R: Record>(&self, id: &Hashed) -> Result<bool, StoreError> {
        self.raw().delete(Key::global(R::KIND, id).as_str()).await
    }

    /// A person's record.
    pub async fn load_owned<R: Record>(
        &self,
        tag: &PersonTag,
        id: &Hashed,
    ) -> Result<Option<Stored<R>>, StoreError> {
        match self
            .raw()
            .get(Key::owned(tag, R::KIND, id).as_str())
            .await?
        {
            None => Ok(None),
            Some(json) => Ok(Some(Stored {
                value: decode(&json)?,
                json,
            })),
        }
    }

    /// A person's record, its lifetime renewed to `ttl` in the same step (sessions).
    pub async fn load_owned_renewing<R: Record>(
        &self,
        tag: &PersonTag,
        id: &Hashed,
        ttl: Duration,
    ) -> Result<Option<Stored<R>>, StoreError> {
        match self
            .raw()
            .get_renewing(Key::owned(tag, R::KIND, id).as_str(), ttl)
            .await?
        {
            None => Ok(None),
            Some(json) => Ok(Some(Stored {
                value: decode(&json)?,
                json,
            })),
        }
    }

    /// Returns a person's record and deletes it with its index entry, atomically (single
    /// use: of two concurrent takers, one gets it).
    pub async fn take_owned<R: Record>(
        &self,
        tag: &PersonTag,
        id: &Hashed,
    ) -> Result<Option<R>, StoreError> {
        match self
            .raw()
            .take_listed(
                Key::owned(tag, R::KIND, id).as_str(),
                Key::index(tag).as_str(),
                &index_field(R::KIND, id),
            )
            .await?
        {
            None => Ok(None),
            Some(json) => decode(&json).map(Some),
        }
    }

    /// A change to `tag`'s records, applied by [`Store::commit`].
    pub fn txn(&self, tag: &PersonTag) -> Txn {
        Txn {
            tag: tag.clone(),
            guards: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// Applies a change atomically: `Ok(false)` when a guard did not hold (nothing was
    /// changed), an error when the store failed (nothing was changed either).
    pub async fn commit(&self, txn: &Txn) -> Result<bool, StoreError> {
        self.raw().commit(txn).await
    }

    /// What a person holds: every live entry of their index as (field, entry JSON). Entries
    /// whose record has ended (expired, deleted) are pruned on the way.
    pub async fn holdings(&self, tag: &PersonTag) -> Result<Vec<(String, String)>, StoreError> {
        self.raw().index_live(tag).await
    }
}
