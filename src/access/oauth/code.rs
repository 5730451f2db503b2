//! The authorization code grant with PKCE (S256) for a native app on a loopback redirect
//! (RFC 8252 §7.3): the CLI listens on `http://127.0.0.1:{any port}/…` (or `[::1]`), opens
//! the browser at `/oauth/authorize`, the person signs in and approves, and the CLI
//! exchanges the code with its PKCE verifier.
//!
//! Until the client and its redirect URI are verified, an error is a page (the redirect
//! URI is not trusted yet). After that, every error goes back to the client as an
//! authorization error response (`error`, `error_description`, `state`, and `iss` per RFC
//! 9207), so a CLI waiting on its loopback hears it at once (RFC 6749 §4.1.2.1, RFC 7636
//! §4.4.1). The request is kept server-side while the person approves, bound to the
//! browser session that saw the page; the form carries only its id. Codes are
//! `TAG.SECRET`, single use, live 60 seconds, are listed in the person's index, and a
//! replayed code revokes the login it started (RFC 6749 §4.1.2).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use url::Url;

use super::tokens::CodeRedeemed;
use super::{Approval, OAuthError, TokenResponse, clean_device_name};
use crate::access::holdings::{Holding, HoldingKind};
use crate::access::session::{IdentityRecord, owned_id, random_token, tag_of, tokens_match};
use crate::access::{Access, Audited, RequestContext};
use crate::audit::{Event, Outcome};
use crate::store::{FlowState, Hashed, Record, now_unix, split_owned_id, until};

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
    session_id_hash: Hashed,
}

impl FlowState for PendingAuthorization {
    const KIND: &'static str = "oauth:authorize";
    const TTL: Duration = Duration::from_secs(600);
}

/// An issued code, waiting to be redeemed (listed in the person's index).
#[derive(Serialize, Deserialize)]
struct IssuedCode {
    approval: Approval,
    redirect_uri: String,
    code_challenge: String,
    expires: u64,
}

impl Record for IssuedCode {
    const KIND: &'static str = "oauth:code";
    fn ttl(&self, now: u64) -> Duration {
        until(self.expires, now)
    }
}

const CODE_LIFETIME: u64 = 60;

/// The query of `/oauth/authorize`, each parameter at most once (RFC 6749 §3.1).
#[derive(Default)]
pub struct AuthorizeQuery {
    params: BTreeMap<String, String>,
    repeated: Vec<String>,
}

impl AuthorizeQuery {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut q = Self::default();
        for (k, v) in pairs {
            match q.params.entry(k) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    if !q.repeated.contains(e.key()) {
                        q.repeated.push(e.key().clone());
                    }
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        q
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
}

/// Why an authorization request is refused: before the client and redirect URI are
/// verified, as a page; after, back to the client at its redirect URI.
pub enum AuthorizeError {
    Page(OAuthError),
    Redirect { error: OAuthError, to: Url },
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
    /// This server's issuer identifier (RFC 8414 `issuer`, RFC 9207 `iss`).
    pub fn issuer_id(&self) -> &str {
        self.config.server.public_url.as_str()
    }

    /// A redirect back to the client with an authorization response's parameters
    /// (`state` and `iss` included).
    fn client_redirect(&self, base: &Url, params: &[(&str, &str)], state: &str) -> Url {
        let mut to = base.clone();
        {
            let mut q = to.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if !state.is_empty() {
                q.append_pair("state", state);
            }
            q.append_pair("iss", self.issuer_id());
        }
        to
    }

    /// Checks an authorization request. See [`AuthorizeError`] for how a refusal is
    /// answered.
    pub async fn check_authorize(
        &self,
        q: &AuthorizeQuery,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let page = AuthorizeError::Page;
        for key in ["client_id", "redirect_uri"] {
            if q.repeated.iter().any(|r| r == key) {
                return Err(page(OAuthError::invalid_request(format!(
                    "{key} is given more than once"
                ))));
            }
        }
        let client_id = q
            .get("client_id")
            .ok_or_else(|| page(OAuthError::invalid_request("client_id is missing")))?;
        let Some(redirects) = self.client_redirects(client_id).await.map_err(page)? else {
            return Err(page(OAuthError::invalid_client(format!(
                "{:?} is not a registered client",
                client_id.chars().take(64).collect::<String>()
            ))));
        };
        let redirect_uri = q
            .get("redirect_uri")
            .ok_or_else(|| page(OAuthError::invalid_request("redirect_uri is missing")))?;
        let Some(to) = loopback_redirect(redirect_uri) else {
            return Err(page(OAuthError::invalid_request(
                "redirect_uri must be http://127.0.0.1:PORT/… or http://[::1]:PORT/… (a loopback address)",
            )));
        };
        if !redirects.allows(redirect_uri) {
            return Err(page(OAuthError::invalid_request(
                "redirect_uri is not one the client registered",
            )));
        }
        // The client and its redirect URI are verified: from here on, errors go back to it.
        let state = q.get("state").unwrap_or_default();
        let state = if state.len() > 256 { "" } else { state };
        let back = |error: OAuthError| {
            let to = self.client_redirect(
                &to,
                &[
                    ("error", error.code),
                    ("error_description", &error.description),
                ],
                state,
            );
            AuthorizeError::Redirect { error, to }
        };
        if let Some(r) = q.repeated.first() {
            return Err(back(OAuthError::invalid_request(format!(
                "{r} is given more than once"
            ))));
        }
        if q.get("response_type") != Some("code") {
            return Err(back(OAuthError::new(
                "unsupported_response_type",
                "response_type must be code",
            )));
        }
        if q.get("code_challenge_method") != Some("S256")
            || !q.get("code_challenge").is_some_and(is_s256_challenge)
        {
            return Err(back(OAuthError::invalid_request(
                "PKCE is required: code_challenge_method=S256 and a 43-character code_challenge",
            )));
        }
        if state.is_empty() {
            return Err(back(OAuthError::invalid_request(
                "state is required (at most 256 characters)",
            )));
        }
        Ok(AuthorizeRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: q.get("code_challenge").unwrap_or_default().to_owned(),
            state: state.to_owned(),
            device_name: clean_device_name(q.get("device_name")),
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
                    session_id_hash: Hashed::of(session_id),
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
        identity: &crate::access::Principal,
        session_id: &str,
        ctx: &RequestContext,
    ) -> Result<AuthorizeDecision, OAuthError> {
        if id.is_empty() || id.len() > 64 {
            return Err(OAuthError::invalid_request("this approval is unknown"));
        }
        let pending = self
            .store
            .consume_flow::<PendingAuthorization>(id)
            .await?
            .ok_or_else(|| {
                OAuthError::invalid_request(
                    "this approval is unknown, expired or was already answered",
                )
            })?;
        if !tokens_match(
            pending.session_id_hash.as_str(),
            Hashed::of(session_id).as_str(),
        ) {
            return Err(OAuthError::invalid_request(
                "this approval belongs to another browser session",
            ));
        }
        let identity = identity.identity();
        let r = pending.request;
        let base = loopback_redirect(&r.redirect_uri)
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri"))?;
        let requester = self.requester_for(&r.client_id);
        if !approve {
            let redirect = self.client_redirect(
                &base,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the person denied the login"),
                ],
                &r.state,
            );
            let event = Event::CliLogin {
                person: super::super::session::person_of(identity),
                client: requester.audit(),
                device_name: r.device_name,
                outcome: Outcome::Denied,
                reason: "the person denied the login".into(),
                session_expires_in_seconds: None,
            };
            if let Err(e) = self.record(ctx, &event) {
                tracing::error!(error = %e, "audit write failed for a denied login");
            }
            return Ok(AuthorizeDecision { redirect });
        }
        let tag = tag_of(identity);
        let code = owned_id(&tag);
        let expires = now_unix() + CODE_LIFETIME;
        let issued = IssuedCode {
            approval: Approval {
                identity: IdentityRecord::from_identity(identity),
                client_id: r.client_id.clone(),
                device_name: r.device_name.clone(),
                approved_at: now_unix(),
            },
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            expires,
        };
        let holding = Holding::new(
            HoldingKind::AuthorizationCode,
            identity,
            requester.path.as_str(),
            Some(&r.client_id),
            expires,
            ctx,
        )
        .with_device(&r.device_name);
        let mut txn = self.store.txn(&tag);
        txn.put_listed(&Hashed::of(&code), &issued, &holding)?;
        self.store.commit(&txn).await?;
        let redirect = self.client_redirect(&base, &[("code", &code)], &r.state);
        Ok(AuthorizeDecision { redirect })
    }

    /// The `authorization_code` grant: the code is consumed (single use), then client,
    /// redirect URI and PKCE verifier must all match. A code used twice revokes the login
    /// its first use started.
    pub(in crate::access) async fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        ctx: &RequestContext,
    ) -> Result<Audited<TokenResponse>, OAuthError> {
        let invalid =
            || OAuthError::invalid_grant("the code is invalid, expired or was already used");
        let Some((tag, id)) = split_owned_id(code) else {
            return Err(invalid());
        };
        let Some(issued) = self.store.take_owned::<IssuedCode>(&tag, &id).await? else {
            if let Some(redeemed) = self.store.load_owned::<CodeRedeemed>(&tag, &id).await?
                && let Some(family) = self.family(&tag, &redeemed.value.family).await?
            {
                self.revoke_family(
                    &tag,
                    &redeemed.value.family,
                    &family,
                    "authorization code replayed",
                    ctx,
                )
                .await?;
            }
            return Err(invalid());
        };
        if issued.expires <= now_unix() {
            return Err(invalid());
        }
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
        self.issue_token_family(issued.approval, Some(&id), ctx)
            .await
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
