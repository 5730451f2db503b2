//! The Redis backend (Redis 7+), shared by every broker instance.
//!
//! One lazily connecting `ConnectionManager` (it multiplexes and reconnects by itself).
//! Timeouts are short and retries few on purpose: a login waiting on a dead Redis should
//! fail closed in about a second, not hang. Errors never include the URL, which may hold a
//! password.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

use super::outage::OutageLog;
use super::{StoreError, ttl_millis};

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    outage: Arc<OutageLog>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    // `RedisError`'s text names the failing operation and kind, not the URL.
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    pub fn new(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose_secret())
            .map_err(|_| StoreError::Unavailable("the Redis URL is not valid".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            outage: Arc::new(OutageLog::default()),
        })
    }

    fn key(&self, k: &str) -> String {
        format!("{}{}", self.prefix, k)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let result = cmd.query_async(&mut conn).await.map_err(unavailable);
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
        let key = self.key(key);
        let mut pipe = redis::pipe();
        // MULTI/EXEC: the counter and its expiry are set together; `NX` keeps the window
        // fixed from the first increment (Redis 7 syntax).
        pipe.atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_millis(ttl))
            .arg("NX")
            .ignore();
        let mut conn = self.conn.clone();
        let (n,): (u64,) = self.observe(pipe.query_async(&mut conn).await.map_err(unavailable))?;
        Ok(n)
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
