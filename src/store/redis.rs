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

use super::outage::OutageLog;
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

    pub async fn ping(&self) -> Result<(), StoreError> {
        let reply: String = self.run(&redis::cmd("PING")).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("PING answered {reply:?}")))
        }
    }
}
