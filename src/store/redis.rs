//! The Redis backend (Redis 7+), shared by every broker instance: one server (or a
//! replica set behind a stable address), a Redis Cluster, or a master found through
//! Redis Sentinel (re-resolved after any error, so a failover is followed).
//!
//! Single server: one lazily connecting `ConnectionManager` (it multiplexes and reconnects
//! by itself). Cluster: the `redis` crate's async cluster connection, created on first
//! use (so the broker starts, not ready, while the cluster is down) and following slot
//! moves and failovers by itself. Every operation touches exactly one key, so nothing
//! crosses slots: the counter's increment and expiry are one Lua script on one key.
//! Timeouts are short and retries few on purpose: a login waiting on a dead Redis should
//! fail closed in about a second, not hang. Errors never include the URL, which may hold a
//! password.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, RedisConnectionInfo};

use crate::config::SentinelTarget;
use secrecy::{ExposeSecret, SecretString};

use super::keys::{Key, PersonTag};
use super::outage::OutageLog;
use super::record::{Guard, Op, Txn};
use super::{StoreError, ttl_millis};

#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    prefix: String,
    outage: Arc<OutageLog>,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
    Sentinel(Arc<SentinelMaster>),
}

/// The master Sentinel names, connected on first use. Any error drops the connection, so
/// the next call asks the sentinels again: after a failover the old master is gone or a
/// read-only replica, and the promoted one is found within a call or two.
struct SentinelMaster {
    client: tokio::sync::Mutex<SentinelClient>,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl SentinelMaster {
    async fn get(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let mut client = self.client.lock().await;
        let fresh = tokio::time::timeout(
            Duration::from_secs(3),
            client.get_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| StoreError::Unavailable("no sentinel named a master in time".into()))?
        .map_err(unavailable)?;
        *conn = Some(fresh.clone());
        Ok(fresh)
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }
}

/// A cluster connection made on first use; a failed attempt is retried by the next call.
struct LazyCluster {
    client: ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn get(&self) -> Result<ClusterConnection, StoreError> {
        let conn = tokio::time::timeout(
            Duration::from_secs(2),
            self.conn
                .get_or_try_init(|| async { self.client.get_async_connection().await }),
        )
        .await
        .map_err(|_| StoreError::Unavailable("no Redis Cluster node answered in time".into()))?
        .map_err(unavailable)?;
        Ok(conn.clone())
    }
}

/// `INCR` and the window's expiry in one step on one key (cluster-safe, unlike MULTI
/// across a cluster connection); `NX` keeps the window fixed from the first increment.
const INCR_WITH_WINDOW: &str =
    "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1], 'NX') return n";

/// A decrement that never creates a counter (a missing one would live forever) nor goes
/// below zero.
const DECR_EXISTING: &str = "local n = tonumber(redis.call('GET', KEYS[1]) or '0') \
     if n > 0 then redis.call('DECR', KEYS[1]) end return 0";

/// A person's transaction (see `record::Txn`): KEYS[1] is the person's index, the others
/// their records (one hash slot). ARGV: the number of guards, each `E key#` (exists),
/// `A key#` (absent) or `V key# value` (unchanged); then the operations, `S key# value ms` (set),
/// `D key#` (delete), `L field entry ms` (index entry; the index lives at least `ms`),
/// `U field` (index entry removed). Guards are all checked before anything is written,
/// so a failed guard changes nothing.
const COMMIT: &str = r"
local a, i = ARGV, 2
for _ = 1, tonumber(a[1]) do
  local k = KEYS[tonumber(a[i+1])]
  if a[i] == 'E' then
    if redis.call('EXISTS', k) == 0 then return 0 end
    i = i + 2
  elseif a[i] == 'A' then
    if redis.call('EXISTS', k) == 1 then return 0 end
    i = i + 2
  else
    if redis.call('GET', k) ~= a[i+2] then return 0 end
    i = i + 3
  end
end
while i <= #a do
  local op = a[i]
  if op == 'S' then redis.call('SET', KEYS[tonumber(a[i+1])], a[i+2], 'PX', a[i+3]) i = i + 4
  elseif op == 'D' then redis.call('DEL', KEYS[tonumber(a[i+1])]) i = i + 2
  elseif op == 'L' then
    redis.call('HSET', KEYS[1], a[i+1], a[i+2])
    if redis.call('PTTL', KEYS[1]) < tonumber(a[i+3]) then redis.call('PEXPIRE', KEYS[1], a[i+3]) end
    i = i + 4
  else redis.call('HDEL', KEYS[1], a[i+1]) i = i + 2 end
end
return 1";

/// GETDEL of a person's record and HDEL of its index entry.
const TAKE_LISTED: &str =
    "local v = redis.call('GETDEL', KEYS[1]) redis.call('HDEL', KEYS[2], ARGV[1]) return v";

/// Removes index entries whose record is gone; returns the fields removed.
const PRUNE_INDEX: &str = r"
local dead = {}
for j = 1, #ARGV do
  if redis.call('EXISTS', KEYS[j+1]) == 0 then
    redis.call('HDEL', KEYS[1], ARGV[j]) dead[#dead+1] = ARGV[j]
  end
end
return dead";

/// One field of a hash set (ARGV[2] = 'S') or deleted, and a version field bumped in the
/// same step (ARGV[4], when not empty).
const HASH_WRITE: &str = r"
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
if ARGV[2] == 'S' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[4], 1) end
return existed";

/// Several hashes of one slot changed together if KEYS[1]'s version field (ARGV[1]) still
/// holds ARGV[2]: then each `S key# field value` / `D key# field`, and the version bumped.
const HASH_COMMIT: &str = r"
if (redis.call('HGET', KEYS[1], ARGV[1]) or '0') ~= ARGV[2] then return 0 end
local i = 3
while i <= #ARGV do
  local k = KEYS[tonumber(ARGV[i+1])]
  if ARGV[i] == 'S' then redis.call('HSET', k, ARGV[i+2], ARGV[i+3]) i = i + 4
  else redis.call('HDEL', k, ARGV[i+2]) i = i + 3 end
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1";

/// LPUSH, LTRIM to a cap, and the list's lifetime, in one step.
const LIST_PUSH: &str = "redis.call('LPUSH', KEYS[1], ARGV[1]) \
     redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1) redis.call('PEXPIRE', KEYS[1], ARGV[3]) return 0";

fn certificates(ca_pem: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem.to_vec()),
    }
}

/// The process links two rustls crypto providers (from the AWS SDK and reqwest); the Redis
/// client builds its TLS config with the process default, so one is chosen here.
fn choose_tls_provider(url: &SecretString) {
    if url.expose_secret().starts_with("rediss:") {
        // Err means a default is already installed, which is all that is needed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    // `RedisError`'s text names the failing operation and kind, not the URL.
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    pub fn new(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        Self::connect(url, prefix, None)
    }

    /// One server; `tls_ca` (PEM) is the CA a `rediss://` server's certificate must chain
    /// to, instead of the system's roots.
    pub fn connect(
        url: &SecretString,
        prefix: &str,
        tls_ca: Option<&[u8]>,
    ) -> Result<Self, StoreError> {
        let invalid = |_| StoreError::Unavailable("the Redis URL is not valid".into());
        choose_tls_provider(url);
        let client = match tls_ca {
            None => redis::Client::open(url.expose_secret()).map_err(invalid)?,
            Some(ca) => redis::Client::build_with_tls(url.expose_secret(), certificates(ca))
                .map_err(invalid)?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self {
            conn: Connection::Single(conn),
            prefix: prefix.to_owned(),
            outage: Arc::new(OutageLog::default()),
        })
    }

    /// A Redis Cluster reached through `seed` (any node: the others are discovered).
    pub fn cluster(seed: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_cluster(seed, prefix, None)
    }

    pub fn connect_cluster(
        seed: &SecretString,
        prefix: &str,
        tls_ca: Option<&[u8]>,
    ) -> Result<Self, StoreError> {
        choose_tls_provider(seed);
        let mut builder = ClusterClientBuilder::new(vec![seed.expose_secret()]);
        if let Some(ca) = tls_ca {
            builder = builder.certs(certificates(ca));
        }
        let client = builder
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(2))
            .retries(2)
            .max_retry_wait(200)
            .build()
            .map_err(|_| StoreError::Unavailable("the Redis Cluster URL is not valid".into()))?;
        Ok(Self {
            conn: Connection::Cluster(Arc::new(LazyCluster {
                client,
                conn: tokio::sync::OnceCell::new(),
            })),
            prefix: prefix.to_owned(),
            outage: Arc::new(OutageLog::default()),
        })
    }

    /// The master of `target.service` as Sentinel reports it, with the master's
    /// credentials from the URL (the sentinels themselves are asked without).
    pub fn sentinel(target: &SentinelTarget, prefix: &str) -> Result<Self, StoreError> {
        let mut info = RedisConnectionInfo::default();
        if let Some(u) = &target.username {
            info = info.set_username(u);
        }
        if let Some(p) = &target.password {
            info = info.set_password(p.expose_secret());
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
        let client = SentinelClient::build(
            target.sentinels.clone(),
            target.service.clone(),
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|_| StoreError::Unavailable("the sentinel addresses are not valid".into()))?;
        Ok(Self {
            conn: Connection::Sentinel(Arc::new(SentinelMaster {
                client: tokio::sync::Mutex::new(client),
                conn: tokio::sync::Mutex::new(None),
            })),
            prefix: prefix.to_owned(),
            outage: Arc::new(OutageLog::default()),
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        match &self.conn {
            Connection::Single(c) => cmd.query_async(&mut c.clone()).await.map_err(unavailable),
            Connection::Cluster(lazy) => {
                let mut c = lazy.get().await?;
                cmd.query_async(&mut c).await.map_err(unavailable)
            }
            Connection::Sentinel(master) => {
                let mut c = master.get().await?;
                let result = cmd.query_async(&mut c).await.map_err(unavailable);
                if result.is_err() {
                    master.forget().await;
                }
                result
            }
        }
    }

    fn key(&self, k: &str) -> String {
        format!("{}{}", self.prefix, k)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let result = self.query(cmd).await;
        self.observe(result)
    }

    /// Feeds the outage log (one story per outage, not a line per failed call).
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.outage.success(),
            Err(e @ StoreError::Unavailable(_)) => self.outage.failure(e),
            Err(_) => {}
        }
        result
    }

    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl));
        self.run::<()>(&cmd).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.run(&cmd).await
    }

    pub async fn get_renewing(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GETEX");
        cmd.arg(self.key(key)).arg("PX").arg(ttl_millis(ttl));
        self.run(&cmd).await
    }

    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.key(key));
        self.run(&cmd).await
    }

    pub async fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl));
        // SET NX answers OK when it wrote and nil when the key existed.
        let reply: Option<String> = self.run(&cmd).await?;
        Ok(reply.is_some())
    }

    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(INCR_WITH_WINDOW)
            .arg(1)
            .arg(self.key(key))
            .arg(ttl_millis(ttl));
        self.run(&cmd).await
    }

    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        let n: u64 = self.run(&cmd).await?;
        Ok(n > 0)
    }

    pub async fn decr_existing(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DECR_EXISTING).arg(1).arg(self.key(key));
        self.run::<i64>(&cmd).await.map(|_| ())
    }

    pub async fn commit(&self, txn: &Txn) -> Result<bool, StoreError> {
        let mut keys: Vec<String> = vec![self.key(Key::index(&txn.tag).as_str())];
        let mut slot = |k: &Key| -> usize {
            let full = self.key(k.as_str());
            match keys.iter().position(|x| *x == full) {
                Some(p) => p + 1,
                None => {
                    keys.push(full);
                    keys.len()
                }
            }
        };
        let mut args: Vec<String> = vec![txn.guards.len().to_string()];
        for g in &txn.guards {
            match g {
                Guard::Exists(k) => args.extend(["E".into(), slot(k).to_string()]),
                Guard::Absent(k) => args.extend(["A".into(), slot(k).to_string()]),
                Guard::Unchanged(k, v) => args.extend(["V".into(), slot(k).to_string(), v.clone()]),
            }
        }
        for op in &txn.ops {
            match op {
                Op::Set(k, v, ttl) => args.extend([
                    "S".into(),
                    slot(k).to_string(),
                    v.clone(),
                    ttl_millis(*ttl).to_string(),
                ]),
                Op::Delete(k) => args.extend(["D".into(), slot(k).to_string()]),
                Op::List(f, e, ttl) => args.extend([
                    "L".into(),
                    f.clone(),
                    e.clone(),
                    ttl_millis(*ttl).to_string(),
                ]),
                Op::Unlist(f) => args.extend(["U".into(), f.clone()]),
            }
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(COMMIT).arg(keys.len()).arg(&keys).arg(&args);
        let done: i64 = self.run(&cmd).await?;
        Ok(done == 1)
    }

    pub async fn take_listed(
        &self,
        key: &str,
        index: &str,
        field: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(TAKE_LISTED)
            .arg(2)
            .arg(self.key(key))
            .arg(self.key(index))
            .arg(field);
        self.run(&cmd).await
    }

    pub async fn index_live(&self, tag: &PersonTag) -> Result<Vec<(String, String)>, StoreError> {
        let index = self.key(Key::index(tag).as_str());
        let mut all = redis::cmd("HGETALL");
        all.arg(&index);
        let entries: Vec<(String, String)> = self.run(&all).await?;
        if entries.is_empty() {
            return Ok(entries);
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PRUNE_INDEX).arg(entries.len() + 1).arg(&index);
        for (f, _) in &entries {
            cmd.arg(self.key(Key::of_field(tag, f).as_str()));
        }
        for (f, _) in &entries {
            cmd.arg(f);
        }
        let dead: Vec<String> = self.run(&cmd).await?;
        Ok(entries
            .into_iter()
            .filter(|(f, _)| !dead.contains(f))
            .collect())
    }

    pub async fn hash_scan(
        &self,
        key: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(String, String)>), StoreError> {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(self.key(key))
            .arg(cursor)
            .arg("COUNT")
            .arg(count.max(1));
        let (next, flat): (u64, Vec<String>) = self.run(&cmd).await?;
        let pairs = flat
            .chunks(2)
            .filter_map(|c| match c {
                [f, v] => Some((f.clone(), v.clone())),
                _ => None,
            })
            .collect();
        Ok((next, pairs))
    }

    pub async fn hash_get(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.key(key)).arg(field);
        self.run(&cmd).await
    }

    pub async fn hash_get_many(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(key)).arg(fields);
        self.run(&cmd).await
    }

    pub async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.key(key));
        self.run(&cmd).await
    }

    pub async fn hash_write(
        &self,
        key: &str,
        field: &str,
        value: Option<&str>,
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(HASH_WRITE)
            .arg(1)
            .arg(self.key(key))
            .arg(field)
            .arg(if value.is_some() { "S" } else { "D" })
            .arg(value.unwrap_or(""))
            .arg(version.unwrap_or(""));
        let existed: i64 = self.run(&cmd).await?;
        Ok(existed == 1)
    }

    pub async fn hash_commit(
        &self,
        keys: &[&str],
        version: &str,
        expected: u64,
        ops: &[(usize, String, Option<String>)],
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(HASH_COMMIT).arg(keys.len());
        for k in keys {
            cmd.arg(self.key(k));
        }
        cmd.arg(version).arg(expected);
        for (slot, field, value) in ops {
            match value {
                Some(v) => cmd.arg("S").arg(slot + 1).arg(field).arg(v),
                None => cmd.arg("D").arg(slot + 1).arg(field),
            };
        }
        let done: i64 = self.run(&cmd).await?;
        Ok(done == 1)
    }

    pub async fn list_push(
        &self,
        key: &str,
        value: &str,
        cap: usize,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(LIST_PUSH)
            .arg(1)
            .arg(self.key(key))
            .arg(value)
            .arg(cap.max(1))
            .arg(ttl_millis(ttl));
        self.run::<i64>(&cmd).await.map(|_| ())
    }

    pub async fn list_range(&self, key: &str, n: usize) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(self.key(key)).arg(0).arg(n.max(1) as i64 - 1);
        self.run(&cmd).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let ping = redis::cmd("PING");
        // A keyless PING goes to any node; right after a cluster failover that can be a
        // node the client still lists but no longer reaches (ClusterConnectionNotFound).
        // One retry lets the client refresh its view before the failure counts.
        let first = self.query::<String>(&ping).await;
        let result = match (first, &self.conn) {
            (Err(_), Connection::Cluster(_)) => self.query::<String>(&ping).await,
            (r, _) => r,
        };
        let reply: String = self.observe(result)?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("PING answered {reply:?}")))
        }
    }
}
