//! The authorization code grant with PKCE (S256) for a native app on a loopback redirect
//! (RFC 8252 §7.3): the CLI listens on `http://127.0.0.1:{any port}/…` (or `[::1]`), opens
//! the browser at `/oauth/authorize`, the person signs in and approves, and the CLI
//! exchanges the code with its PKCE verifier.
//!
//! The request is checked before anything is shown (a bad `client_id` or `redirect_uri`
//! gets an error page, never a redirect), kept server-side while the person approves,
//! and the approval form carries only its id. Codes are single use and live 60 seconds.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Approval, OAuthError, TokenResponse, clean_device_name, token_hash};
use crate::access::session::{IdentityRecord, random_token, tokens_match};
use crate::access::{Access, RequestContext};
use crate::idp::VerifiedIdentity;
use crate::store::FlowState;

/// What `/oauth/authorize` was asked, once checked.
#[derive(Serialize, Deserialize, Clone)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub state: String,
    pub device_name: String,
}

/// An authorization request waiting for the person's decision.
#[derive(Serialize, Deserialize)]
struct PendingAuthorization {
    request: AuthorizeRequest,
    /// The browser session that saw the approval page: only it may decide.
    session_id_hash: String,
}

impl FlowState for PendingAuthorization {
    const KIND: &'static str = "oauth:authorize";
    const TTL: Duration = Duration::from_secs(600);
}

#[derive(Serialize, Deserialize)]
struct IssuedCode {
    approval: Approval,
    redirect_uri: String,
    code_challenge: String,
}

impl FlowState for IssuedCode {
    const KIND: &'static str = "oauth:code";
    const TTL: Duration = Duration::from_secs(60);
}

/// The raw query of `/oauth/authorize`.
#[derive(Deserialize, Default)]
pub struct AuthorizeQuery {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
    /// The machine name the CLI reports (shown on the approval page).
    pub device_name: Option<String>,
}

/// A loopback redirect URI as RFC 8252 §7.3 allows: `http`, an IP loopback literal
/// (`127.0.0.1` or `[::1]`: never a name such as `localhost`, which could resolve
/// elsewhere), any port, no credentials or fragment.
pub fn loopback_redirect(raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    let loopback = match url.host()? {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(_) => false,
    };
    (url.scheme() == "http"
        && loopback
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && raw.len() <= 512)
        .then_some(url)
}

/// Whether `challenge` is an S256 code challenge (43 base64url characters).
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where the approval goes: the checked request and the code or error for the redirect.
pub struct AuthorizeDecision {
    pub redirect: Url,
}

impl Access {
    /// Checks an authorization request. An error here is shown as a page: the redirect
    /// URI is not trusted until this succeeds.
    pub async fn check_authorize(
        &self,
        q: &AuthorizeQuery,
    ) -> Result<AuthorizeRequest, OAuthError> {
        let client_id = q
            .client_id
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
        let Some(redirects) = self.client_redirects(client_id).await? else {
            return Err(OAuthError::invalid_client(format!(
                "{:?} is not a registered client",
                client_id.chars().take(64).collect::<String>()
            )));
        };
        let redirect_uri = q
            .redirect_uri
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri is missing"))?;
        if loopback_redirect(redirect_uri).is_none() {
            return Err(OAuthError::invalid_request(
                "redirect_uri must be http://127.0.0.1:PORT/… or http://[::1]:PORT/… (a loopback address)",
            ));
        }
        if !redirects.allows(redirect_uri) {
            return Err(OAuthError::invalid_request(
                "redirect_uri is not one the client registered",
            ));
        }
        if q.response_type.as_deref() != Some("code") {
            return Err(OAuthError::new(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        if q.code_challenge_method.as_deref() != Some("S256")
            || !q.code_challenge.as_deref().is_some_and(is_s256_challenge)
        {
            return Err(OAuthError::invalid_request(
                "PKCE is required: code_challenge_method=S256 and a 43-character code_challenge",
            ));
        }
        let state = q.state.as_deref().unwrap_or_default();
        if state.is_empty() || state.len() > 256 {
            return Err(OAuthError::invalid_request("state is required"));
        }
        Ok(AuthorizeRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: q.code_challenge.clone().unwrap_or_default(),
            state: state.to_owned(),
            device_name: clean_device_name(q.device_name.as_deref()),
        })
    }

    /// Keeps a checked request for the approval page; returns its id (the form field).
    pub async fn hold_authorization(
        &self,
        request: AuthorizeRequest,
        session_id: &str,
    ) -> Result<String, OAuthError> {
        let id = random_token();
        self.store
            .save_flow(
                &id,
                &PendingAuthorization {
                    request,
                    session_id_hash: token_hash(session_id),
                },
            )
            .await?;
        Ok(id)
    }

    /// The person's decision on a held request (consumed: a second decision finds
    /// nothing). Approval issues a code for the loopback redirect; denial redirects with
    /// `access_denied`.
    pub async fn decide_authorization(
        &self,
        id: &str,
        approve: bool,
        identity: &VerifiedIdentity,
        session_id: &str,
        ctx: &RequestContext,
    ) -> Result<AuthorizeDecision, OAuthError> {
        let pending = self
            .store
            .consume_flow::<PendingAuthorization>(id)
            .await?
            .ok_or_else(|| {
                OAuthError::invalid_request(
                    "this approval is unknown, expired or was already answered",
                )
            })?;
        if !tokens_match(&pending.session_id_hash, &token_hash(session_id)) {
            return Err(OAuthError::invalid_request(
                "this approval belongs to another browser session",
            ));
        }
        let r = pending.request;
        let mut redirect = loopback_redirect(&r.redirect_uri)
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri"))?;
        let c = identity.claims();
        if !approve {
            redirect
                .query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("error_description", "the person denied the login")
                .append_pair("state", &r.state);
            let _ = self.audit.record(
                ctx,
                serde_json::json!({
                    "event": "cli_login", "idp": c.idp.as_str(), "subject": c.subject,
                    "client_id": r.client_id, "device_name": r.device_name,
                    "outcome": "denied", "reason": "the person denied the login",
                }),
            );
            return Ok(AuthorizeDecision { redirect });
        }
        let code = random_token();
        self.store
            .save_flow(
                &token_hash(&code),
                &IssuedCode {
                    approval: Approval {
                        identity: IdentityRecord::from_identity(identity),
                        client_id: r.client_id,
                        device_name: r.device_name,
                    },
                    redirect_uri: r.redirect_uri,
                    code_challenge: r.code_challenge,
                },
            )
            .await?;
        redirect
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &r.state);
        Ok(AuthorizeDecision { redirect })
    }

    /// The `authorization_code` grant: the code is consumed (single use), then client,
    /// redirect URI and PKCE verifier must all match.
    pub async fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let invalid =
            || OAuthError::invalid_grant("the code is invalid, expired or was already used");
        if code.len() > 100 {
            return Err(invalid());
        }
        let issued = self
            .store
            .consume_flow::<IssuedCode>(&token_hash(code))
            .await?
            .ok_or_else(invalid)?;
        if issued.approval.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if issued.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        // RFC 7636: verifier of 43-128 unreserved characters; S256 challenge.
        let valid_verifier = (43..=128).contains(&code_verifier.len())
            && code_verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code_verifier.as_bytes())
                .as_ref(),
        );
        if !valid_verifier || !tokens_match(&computed, &issued.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "the PKCE code_verifier does not match",
            ));
        }
        self.issue_token_family(issued.approval, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_redirect;

    #[test]
    fn only_loopback_ip_literals_over_http_are_redirects() {
        for ok in [
            "http://127.0.0.1:49152/callback",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/x?y=1",
            "http://127.1.2.3:1/cb",
        ] {
            assert!(loopback_redirect(ok).is_some(), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:8080/cb",
            "http://localhost:8080/cb",
            "http://evil.example.com/cb",
            "http://127.0.0.1.evil.example.com/cb",
            "http://user@127.0.0.1/cb",
            "http://127.0.0.1/cb#frag",
            "http://10.0.0.1/cb",
            "javascript:alert(1)",
            "/relative",
        ] {
            assert!(loopback_redirect(bad).is_none(), "{bad}");
        }
    }
}
