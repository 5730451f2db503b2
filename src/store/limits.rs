//! The store's one rate limiter and one replay cache.
//!
//! [`Window`]: a fixed-window counter per subject (an IP, a person, an app): at most
//! `limit` hits per `period`; a refused hit says when the window ends (`Retry-After`).
//! The replay cache records the first use of an id ([`Store::first_use`]: SAML assertion
//! ids, DPoP `jti`s, decisions) or counts uses against an allowance that a refusal can give
//! back ([`Store::count_use`] / [`Store::refund_use`]: subject tokens in an exchange).
//! Subjects and ids are hashed before they become keys.

use std::time::Duration;

use super::keys::{Hashed, Key};
use super::{Store, StoreError, now_unix};

/// A fixed-window rate limit.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// What is limited (`"bearer"`, `"register"`, …): the key namespace.
    pub name: &'static str,
    /// Whose hits are counted (an IP, a person, an app id).
    pub subject: &'a str,
    pub limit: u64,
    pub period: Duration,
}

/// Whether a hit was within its window's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    Allowed,
    /// Over the limit: the window ends in this many seconds.
    Exceeded {
        retry_after: u64,
    },
}

impl Window<'_> {
    fn key(&self, now: u64) -> (Key, u64) {
        let period = self.period.as_secs().max(1);
        let n = now / period;
        let key = Key::marker(
            &format!("ratelimit:{}", self.name),
            &Hashed::of_parts(&[self.subject, &n.to_string()]),
        );
        (key, period - now % period)
    }
}

/// Whether a replay marker was set by this call or was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// This is the first use: the marker is now set until its lifetime ends.
    First,
    /// The id was used before.
    Replay,
}

impl Store {
    /// Counts one hit against `window` and says whether it is allowed.
    pub async fn hit(&self, window: &Window<'_>) -> Result<Allowance, StoreError> {
        let now = now_unix();
        let (key, left) = window.key(now);
        let n = self
            .raw()
            .incr(key.as_str(), window.period + Duration::from_secs(1))
            .await?;
        Ok(if n > window.limit {
            Allowance::Exceeded { retry_after: left }
        } else {
            Allowance::Allowed
        })
    }

    /// Whether `window` is already over its limit, without counting a hit (a lockout
    /// checked before anything is tried).
    pub async fn exceeded(&self, window: &Window<'_>) -> Result<bool, StoreError> {
        let (key, _) = window.key(now_unix());
        let n = self
            .raw()
            .get(key.as_str())
            .await?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(n >= window.limit)
    }

    /// Records the first use of `id` in namespace `kind` for `ttl`: the first caller gets
    /// [`FirstUse::First`], every later one [`FirstUse::Replay`] until the marker expires.
    pub async fn first_use(
        &self,
        kind: &'static str,
        id: &str,
        ttl: Duration,
    ) -> Result<FirstUse, StoreError> {
        let key = Key::marker(kind, &Hashed::of(id));
        Ok(if self.raw().put_if_absent(key.as_str(), "1", ttl).await? {
            FirstUse::First
        } else {
            FirstUse::Replay
        })
    }

    /// Counts one use of `id` (kept for `ttl` from the first) and returns the count
    /// including this one.
    pub async fn count_use(
        &self,
        kind: &'static str,
        id: &str,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let key = Key::marker(kind, &Hashed::of(id));
        self.raw().incr(key.as_str(), ttl).await
    }

    /// Gives back one use counted by [`Store::count_use`] (a request that issued nothing).
    pub async fn refund_use(&self, kind: &'static str, id: &str) -> Result<(), StoreError> {
        let key = Key::marker(kind, &Hashed::of(id));
        self.raw().decr_existing(key.as_str()).await
    }
}
