//! Small tables every instance shares, typed: a [`Collection`] is one hash of entries by
//! name (the locks; the directory of people with live access), written field by field
//! with a version field bumped in the same step, so readers can poll one field to learn
//! that something changed. And a person's recent audit history: a capped list in their
//! slot.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{Key, PersonTag};
use super::{Store, StoreError};

/// The field every collection keeps its version in (never an entry name).
const VERSION: &str = "_version";

/// A shared table of entries by name.
pub trait Collection: Serialize + DeserializeOwned {
    /// The hash's key, e.g. `"locks"`.
    const NAME: &'static str;
}

fn decode<C: Collection>(field: &str, json: &str) -> Result<C, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{}.{field}: {e}", C::NAME)))
}

impl Store {
    /// Sets an entry; returns whether it replaced one.
    pub async fn entry_put<C: Collection>(
        &self,
        name: &str,
        entry: &C,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.raw()
            .hash_write(C::NAME, name, Some(&json), Some(VERSION))
            .await
    }

    /// Removes an entry; returns whether it existed.
    pub async fn entry_remove<C: Collection>(&self, name: &str) -> Result<bool, StoreError> {
        self.raw()
            .hash_write(C::NAME, name, None, Some(VERSION))
            .await
    }

    pub async fn entry<C: Collection>(&self, name: &str) -> Result<Option<C>, StoreError> {
        match self.raw().hash_get(C::NAME, name).await? {
            None => Ok(None),
            Some(json) => decode::<C>(name, &json).map(Some),
        }
    }

    /// The collection's version: changes whenever an entry does.
    pub async fn collection_version<C: Collection>(&self) -> Result<u64, StoreError> {
        Ok(self
            .raw()
            .hash_get(C::NAME, VERSION)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Every entry.
    pub async fn entries<C: Collection>(&self) -> Result<Vec<(String, C)>, StoreError> {
        self.raw()
            .hash_all(C::NAME)
            .await?
            .into_iter()
            .filter(|(f, _)| f != VERSION)
            .map(|(f, v)| decode::<C>(&f, &v).map(|c| (f, c)))
            .collect()
    }

    /// Part of the entries from `cursor` (0 to start); the next cursor, 0 when done.
    pub async fn entries_from<C: Collection>(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(String, C)>), StoreError> {
        let (next, page) = self.raw().hash_scan(C::NAME, cursor, count).await?;
        let entries = page
            .into_iter()
            .filter(|(f, _)| f != VERSION)
            .map(|(f, v)| decode::<C>(&f, &v).map(|c| (f, c)))
            .collect::<Result<_, _>>()?;
        Ok((next, entries))
    }

    /// Adds a line to a person's recent history (newest first, at most `cap`, kept `ttl`).
    pub async fn history_push(
        &self,
        tag: &PersonTag,
        line: &str,
        cap: usize,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.raw()
            .list_push(&history_key(tag), line, cap, ttl)
            .await
    }

    /// A person's recent history, newest first.
    pub async fn history(&self, tag: &PersonTag, n: usize) -> Result<Vec<String>, StoreError> {
        self.raw().list_range(&history_key(tag), n).await
    }
}

fn history_key(tag: &PersonTag) -> String {
    format!(
        "{}:history",
        Key::index(tag).as_str().trim_end_matches(":person")
    )
}
