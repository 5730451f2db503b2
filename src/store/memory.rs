//! The embedded in-memory store, for a single broker instance.
//!
//! A `std::sync::Mutex` around a `HashMap`, as in mini-redis's `db.rs`: every operation is
//! a short critical section with no `.await` inside, so an async mutex would only add
//! overhead. Expired entries are invisible at once and swept every few thousand writes.
//! Time comes from `tokio::time::Instant`, so tests can pause and advance the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::StoreError;

pub(super) const DEFAULT_MAX_ENTRIES: usize = 1_000_000;
const SWEEP_EVERY: u64 = 4096;

struct Entry {
    value: String,
    expires: Instant,
}

struct Inner {
    map: HashMap<String, Entry>,
    writes: u64,
}

#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    prefix: String,
    max_entries: usize,
}

impl MemoryStore {
    pub fn new(prefix: &str, max_entries: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                map: HashMap::new(),
                writes: 0,
            })),
            prefix: prefix.to_owned(),
            max_entries,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // operation is a single insert/remove), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, k: &str) -> String {
        format!("{}{}", self.prefix, k)
    }

    /// Prepares for a write: sweeps now and then, and refuses when full.
    fn before_write(&self, inner: &mut Inner, now: Instant, key: &str) -> Result<(), StoreError> {
        inner.writes += 1;
        if inner.writes.is_multiple_of(SWEEP_EVERY) || inner.map.len() >= self.max_entries {
            inner.map.retain(|_, e| e.expires > now);
        }
        if inner.map.len() >= self.max_entries && !inner.map.contains_key(key) {
            return Err(StoreError::Full(self.max_entries));
        }
        Ok(())
    }

    fn live<'a>(map: &'a HashMap<String, Entry>, key: &str, now: Instant) -> Option<&'a Entry> {
        map.get(key).filter(|e| e.expires > now)
    }

    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        self.before_write(&mut inner, now, &key)?;
        inner.map.insert(
            key,
            Entry {
                value: value.to_owned(),
                expires: now + ttl,
            },
        );
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(Self::live(&inner.map, &self.key(key), now).map(|e| e.value.clone()))
    }

    pub async fn get_renewing(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let key = self.key(key);
        match inner.map.get_mut(&key).filter(|e| e.expires > now) {
            Some(e) => {
                e.expires = now + ttl;
                Ok(Some(e.value.clone()))
            }
            None => Ok(None),
        }
    }

    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        Ok(inner
            .map
            .remove(&self.key(key))
            .filter(|e| e.expires > now)
            .map(|e| e.value))
    }

    pub async fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        if Self::live(&inner.map, &key, now).is_some() {
            return Ok(false);
        }
        self.before_write(&mut inner, now, &key)?;
        inner.map.insert(
            key,
            Entry {
                value: value.to_owned(),
                expires: now + ttl,
            },
        );
        Ok(true)
    }

    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        let current = match Self::live(&inner.map, &key, now) {
            Some(e) => Some((
                e.value
                    .parse::<u64>()
                    .map_err(|_| StoreError::Corrupt(format!("counter holds {:?}", e.value)))?,
                e.expires,
            )),
            None => None,
        };
        self.before_write(&mut inner, now, &key)?;
        let (n, expires) = match current {
            Some((n, exp)) => (n + 1, exp),
            None => (1, now + ttl),
        };
        inner.map.insert(
            key,
            Entry {
                value: n.to_string(),
                expires,
            },
        );
        Ok(n)
    }

    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        Ok(inner
            .map
            .remove(&self.key(key))
            .is_some_and(|e| e.expires > now))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
