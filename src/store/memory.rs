//! The embedded in-memory store, for a single broker instance.
//!
//! A `std::sync::Mutex` around a `HashMap`, as in mini-redis's `db.rs`: every operation is
//! a short critical section with no `.await` inside, so an async mutex would only add
//! overhead, and a person's transaction is trivially atomic. Expired entries are invisible
//! at once and swept every few thousand writes. Time comes from `tokio::time::Instant`, so
//! tests can pause and advance the clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::StoreError;
use super::keys::{Key, PersonTag};
use super::record::{Guard, Op, Txn};

pub(super) const DEFAULT_MAX_ENTRIES: usize = 1_000_000;
const SWEEP_EVERY: u64 = 4096;

enum Value {
    Text(String),
    Hash(HashMap<String, String>),
    List(VecDeque<String>),
}

struct Entry {
    value: Value,
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

fn wrong_type(key: &str) -> StoreError {
    StoreError::Corrupt(format!("{key} holds another kind of value"))
}

impl Inner {
    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.map.get(key).filter(|e| e.expires > now)
    }

    fn live_mut(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        self.map.get_mut(key).filter(|e| e.expires > now)
    }

    fn text(&self, key: &str, now: Instant) -> Result<Option<&str>, StoreError> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// The live hash at `key`, created empty (with `ttl`) when absent.
    fn hash_mut(
        &mut self,
        key: &str,
        now: Instant,
        ttl: Duration,
    ) -> Result<&mut Entry, StoreError> {
        if self.live(key, now).is_none() {
            self.map.insert(
                key.to_owned(),
                Entry {
                    value: Value::Hash(HashMap::new()),
                    expires: now + ttl,
                },
            );
        }
        let e = self.map.get_mut(key).expect("just ensured");
        match e.value {
            Value::Hash(_) => Ok(e),
            _ => Err(wrong_type(key)),
        }
    }
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
        // A panic while holding the lock cannot leave the map half-updated for a single
        // insert/remove; a transaction checks every guard before it changes anything.
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

    fn set(inner: &mut Inner, key: String, value: &str, expires: Instant) {
        inner.map.insert(
            key,
            Entry {
                value: Value::Text(value.to_owned()),
                expires,
            },
        );
    }

    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        self.before_write(&mut inner, now, &key)?;
        Self::set(&mut inner, key, value, now + ttl);
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner.text(&self.key(key), now)?.map(str::to_owned))
    }

    pub async fn get_renewing(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let key = self.key(key);
        match inner.live_mut(&key, now) {
            Some(e) => {
                e.expires = now + ttl;
                match &e.value {
                    Value::Text(t) => Ok(Some(t.clone())),
                    _ => Err(wrong_type(&key)),
                }
            }
            None => Ok(None),
        }
    }

    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let key = self.key(key);
        inner.text(&key, now)?;
        Ok(match inner.map.remove(&key).filter(|e| e.expires > now) {
            Some(Entry {
                value: Value::Text(t),
                ..
            }) => Some(t),
            _ => None,
        })
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
        if inner.live(&key, now).is_some() {
            return Ok(false);
        }
        self.before_write(&mut inner, now, &key)?;
        Self::set(&mut inner, key, value, now + ttl);
        Ok(true)
    }

    fn counter(
        inner: &Inner,
        key: &str,
        now: Instant,
    ) -> Result<Option<(i64, Instant)>, StoreError> {
        match inner.text(key, now)? {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .parse::<i64>()
                    .map_err(|_| StoreError::Corrupt(format!("counter holds {v:?}")))?;
                Ok(Some((
                    n,
                    inner.live(key, now).map(|e| e.expires).unwrap_or(now),
                )))
            }
        }
    }

    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        let current = Self::counter(&inner, &key, now)?;
        self.before_write(&mut inner, now, &key)?;
        let (n, expires) = match current {
            Some((n, exp)) => (n + 1, exp),
            None => (1, now + ttl),
        };
        Self::set(&mut inner, key, &n.to_string(), expires);
        Ok(n.max(0) as u64)
    }

    pub async fn decr_existing(&self, key: &str) -> Result<(), StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        if let Some((n, expires)) = Self::counter(&inner, &key, now)?
            && n > 0
        {
            Self::set(&mut inner, key, &(n - 1).to_string(), expires);
        }
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        Ok(inner
            .map
            .remove(&self.key(key))
            .is_some_and(|e| e.expires > now))
    }

    pub async fn commit(&self, txn: &Txn) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        for guard in &txn.guards {
            let holds = match guard {
                Guard::Exists(k) => inner.live(&self.key(k.as_str()), now).is_some(),
                Guard::Absent(k) => inner.live(&self.key(k.as_str()), now).is_none(),
                Guard::Unchanged(k, v) => {
                    inner.text(&self.key(k.as_str()), now)? == Some(v.as_str())
                }
            };
            if !holds {
                return Ok(false);
            }
        }
        let index = self.key(Key::index(&txn.tag).as_str());
        for op in &txn.ops {
            match op {
                Op::Set(k, v, ttl) => {
                    let k = self.key(k.as_str());
                    self.before_write(&mut inner, now, &k)?;
                    Self::set(&mut inner, k, v, now + *ttl);
                }
                Op::Delete(k) => {
                    inner.map.remove(&self.key(k.as_str()));
                }
                Op::List(field, entry, ttl) => {
                    self.before_write(&mut inner, now, &index)?;
                    let e = inner.hash_mut(&index, now, *ttl)?;
                    e.expires = e.expires.max(now + *ttl);
                    if let Value::Hash(h) = &mut e.value {
                        h.insert(field.clone(), entry.clone());
                    }
                }
                Op::Unlist(field) => {
                    if let Some(Entry {
                        value: Value::Hash(h),
                        ..
                    }) = inner.live_mut(&index, now)
                    {
                        h.remove(field);
                    }
                }
            }
        }
        Ok(true)
    }

    pub async fn take_listed(
        &self,
        key: &str,
        index: &str,
        field: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let (key, index) = (self.key(key), self.key(index));
        inner.text(&key, now)?;
        if let Some(Entry {
            value: Value::Hash(h),
            ..
        }) = inner.live_mut(&index, now)
        {
            h.remove(field);
        }
        Ok(match inner.map.remove(&key).filter(|e| e.expires > now) {
            Some(Entry {
                value: Value::Text(t),
                ..
            }) => Some(t),
            _ => None,
        })
    }

    pub async fn index_live(&self, tag: &PersonTag) -> Result<Vec<(String, String)>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let index = self.key(Key::index(tag).as_str());
        let fields: Vec<(String, String)> = match inner.live(&index, now).map(|e| &e.value) {
            None => return Ok(Vec::new()),
            Some(Value::Hash(h)) => h.iter().map(|(f, v)| (f.clone(), v.clone())).collect(),
            Some(_) => return Err(wrong_type(&index)),
        };
        let (live, dead): (Vec<_>, Vec<_>) = fields.into_iter().partition(|(f, _)| {
            inner
                .live(&self.key(Key::of_field(tag, f).as_str()), now)
                .is_some()
        });
        if let Some(Entry {
            value: Value::Hash(h),
            ..
        }) = inner.live_mut(&index, now)
        {
            for (f, _) in &dead {
                h.remove(f);
            }
        }
        Ok(live)
    }

    pub async fn hash_scan(
        &self,
        key: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(String, String)>), StoreError> {
        let mut all = self.hash_all(key).await?;
        all.sort();
        let start = cursor as usize;
        let end = (start + count.max(1)).min(all.len());
        let next = if end >= all.len() { 0 } else { end as u64 };
        Ok((
            next,
            all.get(start..end).map(<[_]>::to_vec).unwrap_or_default(),
        ))
    }

    pub async fn hash_get(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        let key = self.key(key);
        match inner.live(&key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(h.get(field).cloned()),
            Some(_) => Err(wrong_type(&key)),
        }
    }

    pub async fn hash_get_many(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        let key = self.key(key);
        match inner.live(&key, now).map(|e| &e.value) {
            None => Ok(vec![None; fields.len()]),
            Some(Value::Hash(h)) => Ok(fields.iter().map(|f| h.get(f).cloned()).collect()),
            Some(_) => Err(wrong_type(&key)),
        }
    }

    pub async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        let key = self.key(key);
        match inner.live(&key, now).map(|e| &e.value) {
            None => Ok(Vec::new()),
            Some(Value::Hash(h)) => Ok(h.iter().map(|(f, v)| (f.clone(), v.clone())).collect()),
            Some(_) => Err(wrong_type(&key)),
        }
    }

    pub async fn hash_write(
        &self,
        key: &str,
        field: &str,
        value: Option<&str>,
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        self.before_write(&mut inner, now, &key)?;
        // Hashes written this way (locks, directories) do not expire as a whole.
        let e = inner.hash_mut(&key, now, Duration::from_secs(100 * 365 * 24 * 3600))?;
        let Value::Hash(h) = &mut e.value else {
            return Err(wrong_type(&key));
        };
        let existed = match value {
            Some(v) => h.insert(field.to_owned(), v.to_owned()).is_some(),
            None => h.remove(field).is_some(),
        };
        if let Some(vf) = version {
            let n = h.get(vf).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            h.insert(vf.to_owned(), n.to_string());
        }
        Ok(existed)
    }

    pub async fn hash_commit(
        &self,
        keys: &[&str],
        version: &str,
        expected: u64,
        ops: &[(usize, String, Option<String>)],
    ) -> Result<bool, StoreError> {
        const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let now = Instant::now();
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut inner = self.lock();
        let current = match inner.live(&keys[0], now).map(|e| &e.value) {
            None => 0,
            Some(Value::Hash(h)) => h.get(version).and_then(|v| v.parse().ok()).unwrap_or(0),
            Some(_) => return Err(wrong_type(&keys[0])),
        };
        if current != expected {
            return Ok(false);
        }
        for k in &keys {
            self.before_write(&mut inner, now, k)?;
            if !matches!(
                inner.live(k, now).map(|e| &e.value),
                None | Some(Value::Hash(_))
            ) {
                return Err(wrong_type(k));
            }
        }
        for (slot, field, value) in ops {
            let e = inner.hash_mut(&keys[*slot], now, FOREVER)?;
            if let Value::Hash(h) = &mut e.value {
                match value {
                    Some(v) => h.insert(field.clone(), v.clone()),
                    None => h.remove(field),
                };
            }
        }
        let e = inner.hash_mut(&keys[0], now, FOREVER)?;
        if let Value::Hash(h) = &mut e.value {
            h.insert(version.to_owned(), (expected + 1).to_string());
        }
        Ok(true)
    }

    pub async fn list_push(
        &self,
        key: &str,
        value: &str,
        cap: usize,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut inner = self.lock();
        self.before_write(&mut inner, now, &key)?;
        if inner.live(&key, now).is_none() {
            inner.map.insert(
                key.clone(),
                Entry {
                    value: Value::List(VecDeque::new()),
                    expires: now + ttl,
                },
            );
        }
        let e = inner.map.get_mut(&key).expect("just ensured");
        e.expires = now + ttl;
        let Value::List(l) = &mut e.value else {
            return Err(wrong_type(&key));
        };
        l.push_front(value.to_owned());
        l.truncate(cap);
        Ok(())
    }

    pub async fn list_range(&self, key: &str, n: usize) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        let key = self.key(key);
        match inner.live(&key, now).map(|e| &e.value) {
            None => Ok(Vec::new()),
            Some(Value::List(l)) => Ok(l.iter().take(n).cloned().collect()),
            Some(_) => Err(wrong_type(&key)),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
