//! Extractors the handlers share: the browser session of a request, the parameters of an
//! OAuth request (form-encoded, each once, within the size limit), and a presented access
//! token with its DPoP headers. Each turns a bad request into the right answer (a page
//! for people, RFC-style JSON for programs) before a handler runs.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use super::routes::common::store_down;
use super::routes::fallback::request_id;
use super::{ApiError, AppState, PageError, cookies, request_context};
use crate::access::oauth::OAuthError;
use crate::access::oauth::bearer::{PresentedToken, TokenCarrier};
use crate::access::oauth::dpop::DpopProof;
use crate::access::oauth::grant::OAuthParams;
use crate::access::{Session, SessionError, tokens_match};

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered")
}

/// The signed-in session of the request, if any (a store failure is an error page).
pub struct MaybeSession(pub Option<Session>);

impl FromRequest for MaybeSession {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req);
            let Some(id) = cookies::session_id(&req, state.config()) else {
                return Ok(Self(None));
            };
            let ctx = request_context(&req, &state);
            state
                .access
                .session(&id, &ctx)
                .await
                .map(Self)
                .map_err(|e| session_refused(&req, e))
        })
    }
}

/// The page for a session that cannot be used now.
fn session_refused(req: &HttpRequest, e: SessionError) -> PageError {
    let id = request_id(req);
    match e {
        SessionError::Store(e) => store_down(req, e),
        SessionError::Locked(l) if l.by_directory() => PageError::new(
            StatusCode::FORBIDDEN,
            "Account deactivated",
            "Your account is deactivated at your identity provider, so rolegate gives it no access. Ask your IT team if this is a mistake.",
            &id,
        ),
        SessionError::Locked(_) => PageError::new(
            StatusCode::FORBIDDEN,
            "Access locked",
            "Your access to AWS through rolegate is locked. Ask an administrator.",
            &id,
        ),
        SessionError::Revoked => PageError::new(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your access was ended by an administrator or your identity provider. Sign in again to continue (if you still may).",
            &id,
        ),
        SessionError::Unconfirmed(idp) => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Access cannot be confirmed",
            format!(
                "{idp} cannot confirm your access right now, so rolegate refuses it for the moment. Try again later."
            ),
            &id,
        ),
    }
}

/// The signed-in session of the request; without one, a 401 page.
pub struct SignedIn(pub Session);

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let maybe = MaybeSession::from_request(req, payload);
        let id = request_id(req);
        Box::pin(async move {
            maybe.await?.0.map(Self).ok_or_else(|| {
                PageError::new(
                    StatusCode::UNAUTHORIZED,
                    "Not signed in",
                    "Your session has ended. Sign in again.",
                    &id,
                )
            })
        })
    }
}

/// Checks that a form post carries the session's CSRF token.
pub fn check_csrf(
    req: &HttpRequest,
    session: &Session,
    token: Option<&str>,
) -> Result<(), PageError> {
    match token {
        Some(t) if tokens_match(t, &session.csrf) => Ok(()),
        _ => {
            tracing::warn!("form posted without a valid CSRF token");
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was not sent from your rolegate page. Reload the page and try again.",
                &request_id(req),
            ))
        }
    }
}

/// An OAuth error as RFC 6749 §5.2 JSON: 400, 401 for a bad client, 429 for a rate
/// limit, 503 when the store is down.
pub fn oauth_error(req: &HttpRequest, e: &OAuthError) -> ApiError {
    let status = if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if e.code == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else if e.retry_after.is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut err = ApiError::new(status, e.code, e.description.clone(), &request_id(req));
    err.retry_after = e.retry_after;
    err
}

/// The parameters of a form-encoded OAuth request (`/oauth/token`, `/oauth/revoke`,
/// `/oauth/device_authorization`). Another content type, an unreadable or oversized body,
/// or a repeated parameter is answered `invalid_request` in JSON (413 when too large),
/// with `no-store`, and audited as a refusal.
pub struct OAuthForm(pub OAuthParams);

impl FromRequest for OAuthForm {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let limit = state(&req).config().server.body_limit;
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let state = state(&req);
            let refuse = |status: StatusCode, reason: &str| {
                let ctx = request_context(&req, &state);
                let e = state.access.refuse_request(req.path(), reason, &ctx);
                let mut err = oauth_error(&req, &e);
                err.status = status;
                err
            };
            let form_type = req.content_type() == "application/x-www-form-urlencoded";
            let body = match body.await {
                Ok(b) => b,
                Err(e) => {
                    let too_large = e
                        .as_error::<actix_web::error::PayloadError>()
                        .is_some_and(|p| matches!(p, actix_web::error::PayloadError::Overflow));
                    return Err(if too_large {
                        refuse(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &format!("the request body is larger than {limit} bytes"),
                        )
                    } else {
                        refuse(
                            StatusCode::BAD_REQUEST,
                            "the request body could not be read",
                        )
                    });
                }
            };
            if !form_type {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "the request must be application/x-www-form-urlencoded (RFC 6749 §3.2)",
                ));
            }
            let Ok(text) = std::str::from_utf8(&body) else {
                return Err(refuse(StatusCode::BAD_REQUEST, "the form is not UTF-8"));
            };
            let pairs = url::form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect();
            OAuthParams::from_pairs(pairs).map(Self).map_err(|e| {
                let ctx = request_context(&req, &state);
                let e = state
                    .access
                    .refuse_request(req.path(), &e.description, &ctx);
                oauth_error(&req, &e)
            })
        })
    }
}

/// The request's `DPoP` headers as a proof for this URL at the broker's public address
/// (`url` holds that URL for the proof's lifetime).
pub fn dpop_proof<'a>(
    req: &'a HttpRequest,
    state: &AppState,
    url: &'a mut String,
) -> DpopProof<'a> {
    *url = format!(
        "{}{}",
        state
            .config()
            .server
            .public_url
            .as_str()
            .trim_end_matches('/'),
        req.path()
    );
    DpopProof {
        headers: req
            .headers()
            .get_all("dpop")
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect(),
        method: req.method().as_str(),
        url: url.as_str(),
    }
}

/// The access token of a request to the JSON API (`Authorization: Bearer|DPoP …`), or of
/// the SSO portal (`x-amz-sso_bearer_token`).
pub fn presented_token<'a>(
    req: &'a HttpRequest,
    state: &AppState,
    url: &'a mut String,
    sso: bool,
) -> PresentedToken<'a> {
    let dpop = dpop_proof(req, state, url);
    if sso {
        let token = req
            .headers()
            .get("x-amz-sso_bearer_token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        return PresentedToken {
            carrier: TokenCarrier::SsoHeader,
            token,
            dpop,
        };
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (carrier, token) = match (header.strip_prefix("Bearer "), header.strip_prefix("DPoP ")) {
        (Some(t), _) => (TokenCarrier::Bearer, t.trim()),
        (_, Some(t)) => (TokenCarrier::Dpop, t.trim()),
        _ => (TokenCarrier::Bearer, ""),
    };
    PresentedToken {
        carrier,
        token,
        dpop,
    }
}

/// Whether the request's body is JSON (or absent), for APIs that take an optional JSON body.
pub fn json_body(req: &HttpRequest, body: &[u8]) -> Result<Option<serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
    let bad = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            why,
            &request_id(req),
        )
    };
    if !is_json {
        return Err(bad("the request body must be application/json"));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.is_object() => Ok(Some(v)),
        _ => Err(bad("the request body is not a JSON object")),
    }
}

/// The answer to a presented token that was not accepted: 401 with the challenge RFC 6750
/// §3 and RFC 9449 §7.1 ask for (no `error` when no token was sent; a `DPoP` challenge
/// with `algs` for DPoP-bound tokens and proofs), 429, 403 when access is locked, or 503.
pub fn bearer_refused(
    req: &HttpRequest,
    e: &crate::access::oauth::bearer::BearerError,
) -> actix_web::HttpResponse {
    use crate::access::oauth::bearer::BearerError as E;
    use crate::access::oauth::dpop::DPOP_ALGS;
    use actix_web::ResponseError;
    use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
    let id = request_id(req);
    let algs = DPOP_ALGS.join(" ");
    let quoted = |s: &str| s.replace(['"', '\\'], "'");
    let (status, code, description, challenges): (StatusCode, &str, String, Vec<String>) = match e {
        E::Missing => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "an access token is required (Authorization: Bearer … or DPoP …)".into(),
            vec![
                "Bearer realm=\"rolegate\"".into(),
                format!("DPoP realm=\"rolegate\", algs=\"{algs}\""),
            ],
        ),
        E::Invalid { description, dpop } => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            description.clone(),
            vec![if *dpop {
                format!(
                    "DPoP realm=\"rolegate\", error=\"invalid_token\", error_description=\"{}\", algs=\"{algs}\"",
                    quoted(description)
                )
            } else {
                format!(
                    "Bearer realm=\"rolegate\", error=\"invalid_token\", error_description=\"{}\"",
                    quoted(description)
                )
            }],
        ),
        E::InvalidProof(description) => (
            StatusCode::UNAUTHORIZED,
            "invalid_dpop_proof",
            description.clone(),
            vec![format!(
                "DPoP realm=\"rolegate\", error=\"invalid_dpop_proof\", error_description=\"{}\", algs=\"{algs}\"",
                quoted(description)
            )],
        ),
        E::RateLimited { description, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            description.clone(),
            vec![],
        ),
        E::Locked(description) => (
            StatusCode::FORBIDDEN,
            "access_locked",
            description.clone(),
            vec![],
        ),
        E::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the broker cannot reach its state store; try again in a minute".into(),
            vec![],
        ),
    };
    let mut err = ApiError::new(status, code, description, &id);
    if let E::RateLimited { retry_after, .. } = e {
        err.retry_after = Some(*retry_after);
    }
    let mut res = err.error_response();
    for c in challenges {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(WWW_AUTHENTICATE, v);
        }
    }
    res
}
