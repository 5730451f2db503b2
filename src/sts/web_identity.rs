//! The broker as an OIDC issuer that AWS trusts (`web_identity` mode).
//!
//! An administrator registers the broker's public URL as an IAM OIDC identity provider.
//! For each issuance the broker signs a short-lived JWT (`iss` = public URL, `aud` = the
//! configured audience, `sub` = IdP id + subject, session tags and source identity as AWS
//! claims) and calls `AssumeRoleWithWebIdentity` with it, so the broker needs no AWS
//! credentials of its own and is not subject to role chaining's 1-hour cap.
//!
//! All configured keys are published in the JWKS; the one marked active signs. Rotation:
//! add the new key (inactive), wait for caches, make it active, remove the old one later.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::{Value as Json, json};

use crate::config::WebIdentityConfig;
use crate::domain::{SessionTags, SourceIdentity};
use crate::keys::{KeyError, SigningKey};

#[derive(Debug, thiserror::Error)]
pub enum WebIdentityError {
    #[error("signing key {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: KeyError,
    },
    #[error("no active signing key")]
    NoActiveKey,
    #[error("cannot sign the web identity token: {0}")]
    Sign(String),
}

pub struct WebIdentitySigner {
    /// `iss`: the public URL without a trailing slash (what IAM's provider URL matches).
    issuer: String,
    audience: String,
    lifetime: Duration,
    keys: Vec<SigningKey>,
    active: usize,
}

/// What one token asserts.
pub struct TokenClaims<'a> {
    pub subject: &'a str,
    pub tags: &'a SessionTags,
    pub source_identity: Option<&'a SourceIdentity>,
}

impl WebIdentitySigner {
    pub fn new(cfg: &WebIdentityConfig, public_url: &url::Url) -> Result<Self, WebIdentityError> {
        let mut keys = Vec::new();
        let mut active = None;
        for k in &cfg.keys {
            let key = SigningKey::from_pem(k.pem.expose_secret()).map_err(|source| {
                WebIdentityError::Key {
                    path: k.path.display().to_string(),
                    source,
                }
            })?;
            if k.active {
                active = Some(keys.len());
            }
            keys.push(key);
        }
        Ok(Self {
            issuer: public_url.as_str().trim_end_matches('/').to_owned(),
            audience: cfg.audience.clone(),
            lifetime: cfg.token_lifetime,
            active: active.ok_or(WebIdentityError::NoActiveKey)?,
            keys,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jwks(&self) -> Json {
        json!({ "keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    /// The OpenID discovery document AWS reads to find the JWKS.
    pub fn discovery(&self) -> Json {
        let mut algs: Vec<&str> = self.keys.iter().map(|k| k.algorithm.as_str()).collect();
        algs.sort();
        algs.dedup();
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "claims_supported": ["sub", "aud", "iss", "iat", "exp", "nbf", "jti",
                "https://aws.amazon.com/tags", "https://aws.amazon.com/source_identity"],
        })
    }

    /// Signs a token for one `AssumeRoleWithWebIdentity` call.
    pub fn mint(&self, c: &TokenClaims<'_>) -> Result<String, WebIdentityError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": c.subject,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime.as_secs(),
            "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        });
        if !c.tags.is_empty() {
            // AWS's session-tag claim: each value is a one-element array.
            let principal_tags: serde_json::Map<String, Json> = c
                .tags
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), json!([t.value()])))
                .collect();
            claims["https://aws.amazon.com/tags"] = json!({
                "principal_tags": principal_tags,
                "transitive_tag_keys": c.tags.transitive_keys(),
            });
        }
        if let Some(s) = c.source_identity {
            claims["https://aws.amazon.com/source_identity"] = json!(s.as_str());
        }
        let key = &self.keys[self.active];
        let mut header = jsonwebtoken::Header::new(key.jwt_algorithm());
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, key.encoding_key())
            .map_err(|e| WebIdentityError::Sign(e.to_string()))
    }
}
