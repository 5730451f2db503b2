//! Server-side state: browser sessions, pending sign-ins (OIDC `state`, SAML RelayState and
//! hand-off), the SAML replay cache, and counters.
//!
//! Two backends behind one enum (mini-redis's `Command` dispatch, no dyn-async traits):
//! Redis, which several instances can share, and an embedded in-memory map, which serves
//! one instance only (state is lost on restart). Both enforce TTLs and offer the same
//! primitives, proven by one contract suite.
//!
//! Single-use values go through the typed API in [`flow`] ([`Store::save_flow`],
//! [`Store::consume_flow`], [`Store::mark_used`]), which consumes atomically.
//!
//! **Invariants.** Single-use values are consumed with an atomic get-and-delete, never
//! read-then-delete. A store error is an error, never "not found": callers fail closed.
//! Keys are namespaced with the configured prefix here, once. Only `store::redis` knows
//! the `redis` crate.

mod flow;
mod memory;
mod outage;
mod redis;

use std::time::Duration;

pub use flow::{FirstUse, FlowState};
pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::config::{SessionConfig, StoreConfig};

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
    ($self:ident, $s:ident => $e:expr) => {
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

    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        dispatch!(self, s => s.put(key, value, ttl).await)
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get(key).await)
    }

    /// Reads the value and, if it exists, sets its TTL to `ttl`, in one step (one round
    /// trip: `GETEX`). For values renewed on every use, such as sessions.
    pub async fn get_renewing(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get_renewing(key, ttl).await)
    }

    /// Atomically returns and deletes the value: of two concurrent takers, one gets it.
    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.take(key).await)
    }

    /// Stores the value only if the key is absent; `true` when this call stored it.
    /// The replay-cache primitive: the first use of an id wins, every later one sees `false`.
    pub async fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.put_if_absent(key, value, ttl).await)
    }

    /// Increments a counter and returns the new value; the TTL starts at the first
    /// increment (a fixed window), so a counter never lives forever.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        dispatch!(self, s => s.incr(key, ttl).await)
    }

    /// Deletes the key; `true` if it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(key).await)
    }

    /// Checks the backend answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }
}

/// TTLs below one millisecond would mean "no expiry" or an error in Redis; clamp up.
fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
