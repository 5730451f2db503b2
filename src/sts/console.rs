//! AWS console sign-in through the federation endpoint (`getSigninToken`, then `login`).
//!
//! The sign-in token is a bearer secret: it is obtained server-side, never logged, never
//! put into rolegate's own URLs, and leaves the broker only inside the `Location` of the
//! redirect to the federation endpoint. The destination always comes from config and is on
//! the console's origin (no open redirect).

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use super::IssuedCredentials;
use crate::domain::SessionDuration;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the AWS federation endpoint could not be reached")]
    Unreachable,
    #[error("the AWS federation endpoint refused the sign-in (HTTP {0})")]
    Refused(u16),
    #[error("the AWS federation endpoint answered something unexpected")]
    BadResponse,
}

pub struct ConsoleSignIn {
    http: reqwest::Client,
    federation_url: Url,
    /// Where AWS sends the user when the console session ends: the broker itself.
    issuer: String,
    session_duration: SessionDuration,
}

#[derive(Deserialize)]
struct SigninTokenResponse {
    #[serde(rename = "SigninToken")]
    signin_token: String,
}

impl ConsoleSignIn {
    pub fn new(federation_url: Url, public_url: &Url, session_duration: SessionDuration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client with static settings builds"),
            federation_url,
            issuer: public_url.to_string(),
            session_duration,
        }
    }

    pub fn federation_origin(&self) -> String {
        self.federation_url.origin().ascii_serialization()
    }

    /// The console session length to request: the configured one, clamped to 15 min–12 h
    /// and to the grant's maximum; `None` when AWS would refuse `SessionDuration`
    /// (credentials from role chaining).
    pub fn session_duration_for(
        &self,
        creds: &IssuedCredentials,
        grant_max: SessionDuration,
    ) -> Option<SessionDuration> {
        creds.console_duration_allowed.then(|| {
            self.session_duration
                .min(grant_max)
                .clamp(SessionDuration::MIN, SessionDuration::MAX)
        })
    }

    /// Exchanges the credentials for a sign-in token and builds the federation `login` URL.
    pub async fn signin_url(
        &self,
        creds: &IssuedCredentials,
        destination: &Url,
        grant_max: SessionDuration,
    ) -> Result<Url, ConsoleError> {
        let session = serde_json::json!({
            "sessionId": creds.credentials.access_key_id,
            "sessionKey": creds.credentials.secret_access_key.expose_secret(),
            "sessionToken": creds.credentials.session_token.expose_secret(),
        })
        .to_string();
        let mut form: Vec<(&str, String)> =
            vec![("Action", "getSigninToken".into()), ("Session", session)];
        if let Some(d) = self.session_duration_for(creds, grant_max) {
            form.push(("SessionDuration", d.as_secs().to_string()));
        }
        // POST keeps the credentials out of URLs (and so out of any proxy's access log).
        let res = self
            .http
            .post(self.federation_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|_| ConsoleError::Unreachable)?;
        if !res.status().is_success() {
            return Err(ConsoleError::Refused(res.status().as_u16()));
        }
        let body = res.bytes().await.map_err(|_| ConsoleError::Unreachable)?;
        let token: SigninTokenResponse =
            serde_json::from_slice(&body).map_err(|_| ConsoleError::BadResponse)?;
        let mut url = self.federation_url.clone();
        url.query_pairs_mut()
            .clear()
            .append_pair("Action", "login")
            .append_pair("Issuer", &self.issuer)
            .append_pair("Destination", destination.as_str())
            .append_pair("SigninToken", &token.signin_token);
        Ok(url)
    }
}
