//! The broker as the CLI talks to it: the OAuth token endpoint and the JSON API, with the
//! access token refreshed when it is about to expire (under a lock, so processes on one
//! machine refresh one at a time; the broker tolerates the rest).

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::Value as Json;

use super::CliError;
use super::settings::{self, StoredTokens, now_unix};
pub use crate::wire::{OAuthErrorBody, TokenResponse as Tokens};

pub fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("rolegate-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with static settings builds")
}

fn unreachable(url: &str, e: reqwest::Error) -> CliError {
    CliError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
    }
}

/// POSTs a form to the token endpoint: the tokens, or the OAuth error.
pub fn token_request(
    broker: &str,
    form: &[(&str, &str)],
) -> Result<Result<Tokens, OAuthErrorBody>, CliError> {
    let url = format!("{broker}/oauth/token");
    let res = http()
        .post(&url)
        .form(form)
        .send()
        .map_err(|e| unreachable(&url, e))?;
    let status = res.status();
    let body = res.text().map_err(|e| unreachable(&url, e))?;
    if status.is_success() {
        serde_json::from_str(&body)
            .map(Ok)
            .map_err(|e| CliError::Broker(format!("the broker's token response is not valid: {e}")))
    } else {
        serde_json::from_str::<OAuthErrorBody>(&body)
            .map(Err)
            .map_err(|_| CliError::Broker(format!("the broker answered {status}")))
    }
}

/// Checks, in a few seconds at most, that the broker answers at `broker` (its OAuth
/// metadata), so a login does not wait minutes for a browser that can never come back.
pub fn check_reachable(broker: &str) -> Result<(), CliError> {
    broker_date(broker).map(|_| ())
}

/// [`check_reachable`], with the time the broker's `Date` header says (for the clock
/// check of `rolegate doctor`).
pub fn broker_date(broker: &str) -> Result<Option<std::time::SystemTime>, CliError> {
    let url = format!("{broker}/.well-known/oauth-authorization-server");
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("rolegate-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with static settings builds");
    let res = client
        .get(&url)
        .send()
        .map_err(|e| unreachable(broker, e))?;
    if !res.status().is_success() {
        return Err(CliError::Unreachable {
            url: broker.to_owned(),
            reason: format!(
                "{} answered {} (is this a rolegate broker?)",
                url,
                res.status()
            ),
        });
    }
    Ok(res
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok()))
}

/// Saves a fresh token response as the current login.
pub fn store(broker: &str, client_id: &str, t: Tokens) -> Result<StoredTokens, CliError> {
    let refresh_token = t.refresh_token.ok_or_else(|| {
        CliError::Broker("the broker's token response has no refresh token".into())
    })?;
    let stored = StoredTokens {
        broker: broker.to_owned(),
        client_id: client_id.to_owned(),
        access_token: t.access_token,
        access_expires_at: now_unix() + t.expires_in,
        refresh_token,
    };
    settings::save_tokens(&stored)?;
    Ok(stored)
}

/// The current login's tokens with an access token good for at least 30 s more,
/// refreshing it if needed. Never prompts: without a login, [`CliError::NotLoggedIn`].
pub fn session() -> Result<StoredTokens, CliError> {
    let current = settings::load_tokens()?.ok_or(CliError::NotLoggedIn)?;
    if current.access_expires_at > now_unix() + 30 {
        return Ok(current);
    }
    let _lock = settings::lock("tokens")?;
    // Another process may have refreshed while we waited for the lock.
    let current = settings::load_tokens()?.ok_or(CliError::NotLoggedIn)?;
    if current.access_expires_at > now_unix() + 30 {
        return Ok(current);
    }
    match token_request(
        &current.broker,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &current.refresh_token),
            ("client_id", &current.client_id),
        ],
    )? {
        Ok(t) => store(&current.broker, &current.client_id, t),
        // Only a definite "this login is over" forgets it; a broker that is down or
        // overloaded (temporarily_unavailable, 5xx) leaves the login for the next try.
        Err(e) if e.error == "invalid_grant" => {
            settings::forget_login()?;
            Err(CliError::NotLoggedIn)
        }
        Err(e) => Err(CliError::Broker(format!(
            "{}: {}",
            e.error, e.error_description
        ))),
    }
}

/// Calls the JSON API with the current access token; a 401 means the login ended.
pub fn api(method: &str, path: &str, body: Option<&Json>) -> Result<Json, CliError> {
    let s = session()?;
    let url = format!("{}{path}", s.broker);
    let client = http();
    let req = match method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    };
    let req = req.bearer_auth(&s.access_token);
    let req = match body {
        Some(b) => req.json(b),
        None => req,
    };
    let res: Response = req.send().map_err(|e| unreachable(&url, e))?;
    let status = res.status();
    let json: Json = res
        .json()
        .map_err(|e| CliError::Broker(format!("the broker's answer is not JSON: {e}")))?;
    if status.is_success() {
        return Ok(json);
    }
    if status.as_u16() == 401 {
        return Err(CliError::NotLoggedIn);
    }
    Err(CliError::Broker(format!(
        "{} ({}; request id {})",
        json["error_description"]
            .as_str()
            .unwrap_or("the broker refused"),
        json["error"].as_str().unwrap_or("error"),
        json["request_id"].as_str().unwrap_or("-"),
    )))
}

/// The broker URL: `--broker` (remembered), else the config file, else the login's.
pub fn broker_url(flag: Option<&str>) -> Result<String, CliError> {
    if let Some(b) = flag {
        return Ok(b.trim_end_matches('/').to_owned());
    }
    if let Some(b) = settings::load_config()?.broker {
        return Ok(b.trim_end_matches('/').to_owned());
    }
    Err(CliError::NoBroker)
}
