//! Browser sessions: an opaque random id in a cookie, everything else server-side.
//!
//! A new id is issued at every sign-in and the old session, if any, is deleted (no
//! fixation). Sessions end after the idle timeout (the store TTL, renewed on use) or the
//! absolute timeout, whichever comes first. The record is rolegate's own wire format in
//! the store, converted here and nowhere else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::domain::{GroupName, IdpId};
use crate::idp::VerifiedIdentity;
use crate::mapping::IdentityClaims;
use crate::store::{Store, StoreError};

/// 256 random bits, base64url: session ids, OAuth `state`, nonces, CSRF tokens.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Serialize, Deserialize)]
struct Record {
    idp: String,
    subject: String,
    username: String,
    email: Option<String>,
    groups: Vec<String>,
    claims: serde_json::Value,
    csrf: String,
    created: u64,
}

/// A signed-in browser.
pub struct Session {
    pub id: String,
    pub identity: VerifiedIdentity,
    pub csrf: String,
}

pub fn cookie_name(config: &Config) -> &'static str {
    // `__Host-` binds the cookie to this exact origin; browsers only accept it over https.
    if config.server.is_https() {
        "__Host-rolegate"
    } else {
        "rolegate_session"
    }
}

pub fn login_cookie_name(config: &Config) -> &'static str {
    if config.server.is_https() {
        "__Host-rolegate_login"
    } else {
        "rolegate_login"
    }
}

/// A cookie with rolegate's flags: HttpOnly, SameSite=Lax, Path=/, Secure on https.
pub fn cookie(
    config: &Config,
    name: &'static str,
    value: String,
    max_age: Option<Duration>,
) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.server.is_https())
        .finish();
    if let Some(age) = max_age {
        c.set_max_age(CookieDuration::seconds(age.as_secs() as i64));
    }
    c
}

pub fn removal_cookie(config: &Config, name: &'static str) -> Cookie<'static> {
    let mut c = cookie(config, name, String::new(), None);
    c.make_removal();
    c
}

fn key(id: &str) -> String {
    format!("session:{id}")
}

/// Stores a new session for `identity` and returns it. The caller sets the cookie.
pub async fn create(
    store: &Store,
    config: &Config,
    identity: VerifiedIdentity,
) -> Result<Session, StoreError> {
    let c = identity.claims();
    let record = Record {
        idp: c.idp.to_string(),
        subject: c.subject.clone(),
        username: c.username.clone(),
        email: c.email.clone(),
        groups: c.groups.iter().map(|g| g.as_str().to_owned()).collect(),
        claims: c.claims.clone(),
        csrf: random_token(),
        created: now_unix(),
    };
    let id = random_token();
    let ttl = config
        .session
        .idle_timeout
        .min(config.session.absolute_timeout);
    let json = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put(&key(&id), &json, ttl).await?;
    Ok(Session {
        id,
        identity,
        csrf: record.csrf,
    })
}

/// The session named by the request's cookie, renewing its idle timeout. `Ok(None)` when
/// there is no cookie or the session ended; a store failure is an error (fail closed).
pub async fn load(
    req: &HttpRequest,
    store: &Store,
    config: &Config,
) -> Result<Option<Session>, StoreError> {
    let Some(cookie) = req.cookie(cookie_name(config)) else {
        return Ok(None);
    };
    let id = cookie.value().to_owned();
    if id.len() != 43
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    let Some(json) = store.get(&key(&id)).await? else {
        return Ok(None);
    };
    let record: Record =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let age = now_unix().saturating_sub(record.created);
    let absolute = config.session.absolute_timeout.as_secs();
    if age >= absolute {
        store.delete(&key(&id)).await?;
        return Ok(None);
    }
    let remaining = Duration::from_secs(absolute - age);
    store
        .put(&key(&id), &json, config.session.idle_timeout.min(remaining))
        .await?;
    let identity = IdentityClaims {
        idp: IdpId::parse(&record.idp).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        subject: record.subject,
        username: record.username,
        email: record.email,
        groups: record
            .groups
            .iter()
            .map(|g| GroupName::parse(g))
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        claims: record.claims,
    };
    Ok(Some(Session {
        id,
        identity: VerifiedIdentity::from_session(identity),
        csrf: record.csrf,
    }))
}

pub async fn destroy(store: &Store, id: &str) -> Result<bool, StoreError> {
    store.delete(&key(id)).await
}

/// Constant-time comparison for CSRF tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
