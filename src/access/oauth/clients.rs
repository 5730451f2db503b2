//! Which OAuth clients may log in: the public CLI clients from `[cli]`, and clients that
//! register themselves through the AWS SSO OIDC API (`RegisterClient`, as the AWS CLI and
//! SDKs do before `aws sso login`). A registered client gets an id and a secret (stored
//! only hashed) that expire after `cli.client_registration_lifetime` (90 days by default,
//! like IAM Identity Center's).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::OAuthError;
use super::code::loopback_redirect;
use crate::access::session::{random_token, tokens_match};
use crate::access::{Access, ClientPath, RequestContext, Requester};
use crate::store::{Allowance, Hashed, Record, Window, now_unix, until};

const SSO_CLIENT_PREFIX: &str = "sso-";

#[derive(Serialize, Deserialize)]
struct RegisteredClient {
    name: String,
    secret_hash: Hashed,
    /// Loopback redirect URIs for the authorization-code grant (exact match).
    #[serde(default)]
    redirect_uris: Vec<String>,
    issued_at: u64,
    expires_at: u64,
}

impl Record for RegisteredClient {
    const KIND: &'static str = "oauth:client";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires_at, now)
    }
}

/// The redirect URIs a client may receive codes at (each already a loopback URI).
pub enum ClientRedirects {
    /// A `[cli]` client: any loopback port (RFC 8252 §7.3).
    AnyLoopback,
    /// A client registered through the SSO OIDC API: exactly the URIs it registered.
    Registered(Vec<String>),
}

impl ClientRedirects {
    pub fn allows(&self, redirect_uri: &str) -> bool {
        match self {
            Self::AnyLoopback => true,
            Self::Registered(uris) => uris.iter().any(|u| u == redirect_uri),
        }
    }
}

/// A freshly registered client (the secret is shown once).
pub struct Registration {
    pub client_id: String,
    pub client_secret: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Access {
    /// `RegisterClient`: a new public client of the SSO OIDC API. At most a few per IP and
    /// minute, so registration cannot fill the store.
    pub async fn register_client(
        &self,
        name: &str,
        redirect_uris: &[String],
        ctx: &RequestContext,
    ) -> Result<Registration, OAuthError> {
        if redirect_uris.len() > 10 {
            return Err(OAuthError::new(
                "invalid_redirect_uri",
                "at most 10 redirect URIs",
            ));
        }
        if let Some(bad) = redirect_uris
            .iter()
            .find(|u| loopback_redirect(u).is_none())
        {
            return Err(OAuthError::new(
                "invalid_redirect_uri",
                format!(
                    "{:?} is not a loopback redirect URI (http://127.0.0.1:PORT/… or http://[::1]:PORT/…)",
                    bad.chars().take(64).collect::<String>()
                ),
            ));
        }
        let window = Window {
            name: "register",
            subject: &ctx.client_ip,
            limit: 30,
            period: Duration::from_secs(60),
        };
        if let Allowance::Exceeded { retry_after } = self.store.hit(&window).await? {
            let mut e = OAuthError::new(
                "slow_down",
                format!(
                    "too many client registrations from this address; try again in {retry_after} s"
                ),
            );
            e.retry_after = Some(retry_after);
            return Err(e);
        }
        let client_id = format!("{SSO_CLIENT_PREFIX}{}", random_token());
        let client_secret = random_token();
        let now = now_unix();
        let lifetime = self.config.cli.client_registration_lifetime;
        let record = RegisteredClient {
            name: name.chars().take(128).collect(),
            secret_hash: Hashed::of(&client_secret),
            redirect_uris: redirect_uris.to_vec(),
            issued_at: now,
            expires_at: now + lifetime.as_secs(),
        };
        self.store.save(&Hashed::of(&client_id), &record).await?;
        Ok(Registration {
            client_id,
            client_secret,
            issued_at: now,
            expires_at: record.expires_at,
        })
    }

    /// Whether `client_id` may log in: a `[cli]` client (public), or a registered client
    /// presenting its secret. `secret` is checked when the client has one.
    pub async fn check_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Result<(), OAuthError> {
        if self.config.cli.is_client(client_id) {
            return Ok(());
        }
        if !client_id.starts_with(SSO_CLIENT_PREFIX) || client_id.len() > 100 {
            return Err(OAuthError::invalid_client("not a registered client"));
        }
        let Some(record) = self
            .store
            .load::<RegisteredClient>(&Hashed::of(client_id))
            .await?
        else {
            return Err(OAuthError::invalid_client(
                "the client is not registered, or its registration expired",
            ));
        };
        if record.expires_at <= now_unix() {
            return Err(OAuthError::invalid_client(
                "the client's registration expired",
            ));
        }
        match secret {
            Some(s) if tokens_match(Hashed::of(s).as_str(), record.secret_hash.as_str()) => Ok(()),
            Some(_) => Err(OAuthError::invalid_client("the client secret is wrong")),
            None => Err(OAuthError::invalid_client("the client secret is missing")),
        }
    }

    /// The name a registered client gave itself (`clientName`), for the approval page;
    /// `None` for `[cli]` clients and unknown ids.
    pub async fn registered_client_name(
        &self,
        client_id: &str,
    ) -> Result<Option<String>, OAuthError> {
        if self.config.cli.is_client(client_id) || !client_id.starts_with(SSO_CLIENT_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store
            .load::<RegisteredClient>(&Hashed::of(client_id))
            .await?
            .map(|r| r.name))
    }

    /// Which redirect URIs `client_id` may use, for steps where the browser (not the
    /// client) calls, so no secret is shown; `None` for an unknown client. One store read.
    pub async fn client_redirects(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientRedirects>, OAuthError> {
        if self.config.cli.is_client(client_id) {
            return Ok(Some(ClientRedirects::AnyLoopback));
        }
        if !client_id.starts_with(SSO_CLIENT_PREFIX) || client_id.len() > 100 {
            return Ok(None);
        }
        Ok(self
            .store
            .load::<RegisteredClient>(&Hashed::of(client_id))
            .await?
            .filter(|r| r.expires_at > now_unix())
            .map(|r| ClientRedirects::Registered(r.redirect_uris)))
    }

    /// Which kind of client `client_id` is, for audit records and metrics: an app
    /// (`[[app]]`), an AWS SDK (registered through the SSO OIDC API), or the CLI.
    pub(crate) fn requester_for(&self, client_id: &str) -> Requester {
        if let Some(app) = self.config.app(client_id) {
            return Requester {
                path: ClientPath::Mobile,
                client_id: Some(app.id.clone()),
                app: Some(app.id.clone()),
            };
        }
        Requester {
            path: if client_id.starts_with(SSO_CLIENT_PREFIX) {
                ClientPath::Sdk
            } else {
                ClientPath::Cli
            },
            client_id: Some(client_id.to_owned()),
            app: None,
        }
    }
}
