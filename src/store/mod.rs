//! Server-side state: browser sessions, CLI logins and their tokens, pending sign-ins and
//! approvals, replay markers, rate-limit windows, and the index of what each person holds.
//!
//! Two backends behind one enum (mini-redis's `Command` dispatch, no dyn-async traits):
//! Redis, which several instances can share, and an embedded in-memory map, which serves
//! one instance only (state is lost on restart). Both offer the same primitives
//! ([`Raw`]), proven by one contract suite; the access core never uses them directly but
//! the typed layers on top:
//!
//! - [`record`]: every kind of state is a [`Record`] type with its key namespace and
//!   lifetime; a person's records change in atomic [`Txn`]s with their index entries.
//! - [`flow`]: single-use values before anyone is signed in ([`FlowState`]).
//! - [`limits`]: the one rate limiter ([`Window`]) and the one replay cache.
//! - [`collections`]: small shared tables every instance reads (locks, the directory of
//!   people with live access) and a person's recent audit history.
//! - [`directory`]: each IdP's provisioned (SCIM) directory, changed with optimistic
//!   concurrency on its version.
//! - [`keys`]: the key layout, and why identifiers are stored only hashed.
//!
//! **Invariants.** Every identifier a client holds is stored only as its SHA-256
//! ([`Hashed`]). Single-use values are consumed with an atomic get-and-delete, never
//! read-then-delete. A store error is an error, never "not found": callers fail closed.
//! Every operation touches one key or keys of one person (one Redis Cluster hash slot),
//! so the Redis backend works unchanged on a cluster. Keys are prefixed here, once. Only
//! `store::redis` knows the `redis` crate.

mod collections;
mod directory;
mod flow;
mod keys;
mod limits;
mod memory;
mod outage;
mod record;
mod redis;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use collections::Collection;
pub use directory::{DirectoryChange, Table};
pub use flow::FlowState;
pub use keys::{Hashed, PersonTag, split_owned_id};
pub use limits::{Allowance, FirstUse, Window};
pub use memory::MemoryStore;
pub use record::{Record, Stored, Txn, until};
pub use redis::RedisStore;

use crate::config::{SessionConfig, StoreConfig};

/// Unix seconds now (records compute their lifetimes from it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// The in-memory store hit its entry cap; refusing new state beats unbounded growth.
    #[error("the in-memory store is full ({0} entries)")]
    Full(usize),
    /// A value in the store was not what rolegate wrote (corruption or a foreign writer).
    #[error("the state store returned an unexpected value: {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub enum Store {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend())
    }
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Redis($s) => $e,
            Store::Memory($s) => $e,
        }
    };
}

impl Store {
    /// Builds the store the config asks for. Redis connects lazily, so the broker starts
    /// (and reports not-ready) while Redis is down.
    pub fn from_config(cfg: &SessionConfig) -> Result<Self, StoreError> {
        match &cfg.store {
            StoreConfig::Memory => Ok(Self::Memory(MemoryStore::new(
                &cfg.key_prefix,
                memory::DEFAULT_MAX_ENTRIES,
            ))),
            StoreConfig::Redis { url, tls_ca } => Ok(Self::Redis(RedisStore::connect(
                url,
                &cfg.key_prefix,
                tls_ca.as_deref(),
            )?)),
            StoreConfig::RedisCluster { url, tls_ca } => Ok(Self::Redis(
                RedisStore::connect_cluster(url, &cfg.key_prefix, tls_ca.as_deref())?,
            )),
            StoreConfig::RedisSentinel(target) => {
                Ok(Self::Redis(RedisStore::sentinel(target, &cfg.key_prefix)?))
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Memory(_) => "memory",
        }
    }

    /// The string-keyed primitives, for the typed layers and the contract tests.
    pub fn raw(&self) -> Raw<'_> {
        Raw(self)
    }

    /// Checks the backend answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }
}

/// The primitives both backends implement (keys without the configured prefix).
pub struct Raw<'a>(&'a Store);

impl Raw<'_> {
    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        dispatch!(self.0, s => s.put(key, value, ttl).await)
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self.0, s => s.get(key).await)
    }

    /// Reads the value and, if it exists, sets its TTL to `ttl`, in one step (one round
    /// trip: `GETEX`). For values renewed on every use, such as sessions.
    pub async fn get_renewing(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        dispatch!(self.0, s => s.get_renewing(key, ttl).await)
    }

    /// Atomically returns and deletes the value: of two concurrent takers, one gets it.
    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self.0, s => s.take(key).await)
    }

    /// Stores the value only if the key is absent; `true` when this call stored it.
    pub async fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self.0, s => s.put_if_absent(key, value, ttl).await)
    }

    /// Increments a counter and returns the new value; the TTL starts at the first
    /// increment (a fixed window), so a counter never lives forever.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        dispatch!(self.0, s => s.incr(key, ttl).await)
    }

    /// Decrements a counter that exists (never creates one, never below zero).
    pub async fn decr_existing(&self, key: &str) -> Result<(), StoreError> {
        dispatch!(self.0, s => s.decr_existing(key).await)
    }

    /// Deletes the key; `true` if it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        dispatch!(self.0, s => s.delete(key).await)
    }

    /// Applies a person's [`Txn`] atomically; `false` when a guard failed.
    pub async fn commit(&self, txn: &Txn) -> Result<bool, StoreError> {
        dispatch!(self.0, s => s.commit(txn).await)
    }

    /// GETDEL of a person's record and HDEL of its index entry in one step.
    pub async fn take_listed(
        &self,
        key: &str,
        index: &str,
        field: &str,
    ) -> Result<Option<String>, StoreError> {
        dispatch!(self.0, s => s.take_listed(key, index, field).await)
    }

    /// A person's live index entries; entries whose record is gone are removed.
    pub async fn index_live(&self, tag: &PersonTag) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self.0, s => s.index_live(tag).await)
    }

    /// Part of a hash: up to about `count` fields from `cursor` (0 to start); the next
    /// cursor (0 when done).
    pub async fn hash_scan(
        &self,
        key: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(String, String)>), StoreError> {
        dispatch!(self.0, s => s.hash_scan(key, cursor, count).await)
    }

    /// One field of a hash.
    pub async fn hash_get(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self.0, s => s.hash_get(key, field).await)
    }

    /// Several fields of a hash (`HMGET`), in order.
    pub async fn hash_get_many(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        dispatch!(self.0, s => s.hash_get_many(key, fields).await)
    }

    /// Every field of a hash.
    pub async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self.0, s => s.hash_all(key).await)
    }

    /// Sets (`Some`) or deletes (`None`) one field of a hash and, with `version`, increments
    /// that field in the same step (readers poll it to see that something changed).
    /// Returns whether the field existed before.
    pub async fn hash_write(
        &self,
        key: &str,
        field: &str,
        value: Option<&str>,
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.0, s => s.hash_write(key, field, value, version).await)
    }

    /// Sets (`Some`) or deletes (`None`) fields of several hashes of one slot (`ops`: the
    /// hash's index in `keys`, the field, the value) only if field `version` of `keys[0]`
    /// still holds `expected` (absent reads as 0), then increments it; all in one step.
    /// `false` (and nothing written) when the version moved.
    pub async fn hash_commit(
        &self,
        keys: &[&str],
        version: &str,
        expected: u64,
        ops: &[(usize, String, Option<String>)],
    ) -> Result<bool, StoreError> {
        dispatch!(self.0, s => s.hash_commit(keys, version, expected, ops).await)
    }

    /// Prepends to a list kept at most `cap` long, living `ttl` from this write.
    pub async fn list_push(
        &self,
        key: &str,
        value: &str,
        cap: usize,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dispatch!(self.0, s => s.list_push(key, value, cap, ttl).await)
    }

    /// The first `n` items of a list (newest first).
    pub async fn list_range(&self, key: &str, n: usize) -> Result<Vec<String>, StoreError> {
        dispatch!(self.0, s => s.list_range(key, n).await)
    }
}

/// TTLs below one millisecond would mean "no expiry" or an error in Redis; clamp up.
fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
