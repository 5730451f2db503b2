//! SAML endpoints: SP metadata, SP-initiated login, the assertion consumer (ACS) and the
//! same-site finish step.
//!
//! The ACS POST arrives cross-site from the IdP, so the browser's SameSite=Lax login
//! cookie may not come with it. The ACS therefore verifies the response, stores the new
//! (not yet delivered) session under a single-use key, and redirects to
//! `/saml/{idp}/finish`, a top-level GET on which the cookie does come: only there is the
//! login bound to the browser that started it and the session cookie handed out.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::fallback::request_id;
use super::login::{audit_login, idp_unavailable, redirect_to_idp, store_down};
use crate::audit::Outcome;
use crate::idp::saml::{PendingRequest, SamlError, SamlProvider};
use crate::metrics::ReasonLabels;
use crate::web::session;
use crate::web::{AppState, PageError};

/// How long a verified login waits for its finish step.
const HANDOFF_TTL: Duration = Duration::from_secs(120);

fn provider<'a>(
    state: &'a AppState,
    idp: &str,
    req: &HttpRequest,
) -> Result<&'a SamlProvider, PageError> {
    state
        .saml
        .iter()
        .find(|p| p.idp.id.as_str() == idp)
        .map(|p| p.as_ref())
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                "Unknown sign-in",
                "There is no such sign-in option.",
                &request_id(req),
            )
        })
}

/// `GET /saml/{idp}/metadata`: the SP metadata to import at the IdP.
pub async fn metadata(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let p = provider(&state, &path, &req)?;
    let xml = p.sp_metadata().map_err(|e| {
        tracing::warn!(idp = %p.idp.id, error = %e, "SP metadata unavailable");
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Metadata unavailable",
            "This IdP's metadata is not loaded yet.",
            &request_id(&req),
        )
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/samlmetadata+xml"))
        .body(xml))
}

/// SP-initiated login: a 128-bit request id and an opaque RelayState, both kept
/// server-side with the browser binding; then a redirect to the IdP.
pub async fn start(
    req: &HttpRequest,
    state: &AppState,
    p: &SamlProvider,
) -> Result<HttpResponse, PageError> {
    let request_id = format!("_{:032x}", rand::random::<u128>());
    let relay = session::random_token();
    let binding = session::random_token();
    let url = p
        .start(&request_id, &relay)
        .map_err(|e| idp_unavailable(req, &p.idp.display_name, &e))?;
    let pending = PendingRequest {
        idp: p.idp.id.to_string(),
        request_id,
        binding: binding.clone(),
    };
    redirect_to_idp(
        req,
        state,
        &format!("saml:relay:{relay}"),
        &pending,
        binding,
        url.as_str(),
    )
    .await
}

#[derive(Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Handoff {
    session_id: String,
    binding: Option<String>,
    subject: String,
}

fn rejected(req: &HttpRequest, state: &AppState, idp: &str, e: &SamlError) -> PageError {
    state
        .metrics
        .saml_rejections
        .get_or_create(&ReasonLabels {
            idp: idp.to_owned(),
            reason: e.reason().to_owned(),
        })
        .inc();
    tracing::warn!(idp, reason = e.reason(), error = %e, "SAML response rejected");
    if let Err(err) = audit_login(
        req,
        state,
        idp,
        "",
        Outcome::Failure,
        &format!("saml {}: {e}", e.reason()),
    ) {
        tracing::error!(error = %err, "audit log write failed");
    }
    let (status, message) = match e {
        SamlError::StoreUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable right now. Try again in a minute.",
        ),
        SamlError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "This sign-in option is not available right now.",
        ),
        SamlError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The sign-in response is too large.",
        ),
        SamlError::UnknownRequest | SamlError::BadRelayState => (
            StatusCode::BAD_REQUEST,
            "This sign-in is unknown, expired or was already used. Start again.",
        ),
        SamlError::Replay => (
            StatusCode::BAD_REQUEST,
            "This sign-in response was already used. Start again.",
        ),
        SamlError::NotBase64
        | SamlError::NotUtf8
        | SamlError::Unreadable(_)
        | SamlError::Prefilter(_) => (
            StatusCode::BAD_REQUEST,
            "The sign-in response is not a valid SAML response. Start again.",
        ),
        _ => (
            StatusCode::FORBIDDEN,
            "The sign-in response could not be verified. Start again.",
        ),
    };
    PageError::new(status, "Sign-in failed", message, &request_id(req))
}

/// `POST /saml/{idp}/acs`: verifies the response (see `idp::saml`), then hands the new
/// session over to the finish step.
pub async fn acs(
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<AcsForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let p = provider(&state, &path, &req)?;
    let idp = p.idp.id.as_str();
    let fail = |e: SamlError| rejected(&req, &state, idp, &e);
    let Some(response) = form.saml_response.as_deref() else {
        return Err(fail(SamlError::Unreadable("no SAMLResponse".into())));
    };
    if response.len() > crate::idp::saml::MAX_RESPONSE_B64 {
        return Err(fail(SamlError::TooLarge));
    }
    // RelayState is only an opaque key into server-side state, never a URL.
    let pending = match form.relay_state.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r)
            if r.len() > 80
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            return Err(fail(SamlError::BadRelayState));
        }
        Some(r) => {
            let taken = state
                .store
                .take(&format!("saml:relay:{r}"))
                .await
                .map_err(|_| fail(SamlError::StoreUnavailable))?;
            match taken {
                None => return Err(fail(SamlError::UnknownRequest)),
                Some(json) => {
                    let pending: PendingRequest = serde_json::from_str(&json)
                        .map_err(|_| fail(SamlError::StoreUnavailable))?;
                    // The IdP comes from the stored request: a response for IdP A posted
                    // to IdP B's ACS is refused.
                    if pending.idp != idp {
                        return Err(fail(SamlError::UnknownRequest));
                    }
                    Some(pending)
                }
            }
        }
    };
    let now = chrono::Utc::now();
    let (assertion, shape) = p
        .verify(response, pending.as_ref(), now)
        .await
        .map_err(fail)?;

    // Replay cache: the first use of an assertion (and response) id wins, until it expires.
    let ttl = SamlProvider::replay_ttl(&assertion, now);
    let mut keys = vec![format!("saml:seen:{idp}:a:{}", assertion.id)];
    if let Some(rid) = &shape.response_id {
        keys.push(format!("saml:seen:{idp}:r:{rid}"));
    }
    for key in keys {
        match state.store.put_if_absent(&key, "1", ttl).await {
            Ok(true) => {}
            Ok(false) => return Err(fail(SamlError::Replay)),
            Err(_) => return Err(fail(SamlError::StoreUnavailable)),
        }
    }
    let identity = p.identity(&assertion).map_err(fail)?;
    let subject = identity.claims().subject.clone();
    let s = session::create(&state.store, &state.config, identity)
        .await
        .map_err(|e| store_down(&req, e))?;
    let handoff = Handoff {
        session_id: s.id,
        binding: pending.map(|p| p.binding),
        subject,
    };
    let key = session::random_token();
    let json = serde_json::to_string(&handoff).map_err(|e| store_down(&req, e))?;
    state
        .store
        .put(&format!("saml:handoff:{key}"), &json, HANDOFF_TTL)
        .await
        .map_err(|e| store_down(&req, e))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/saml/{idp}/finish?k={key}")))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish())
}

#[derive(Deserialize)]
pub struct FinishQuery {
    k: Option<String>,
}

/// `GET /saml/{idp}/finish`: binds the verified login to the browser that started it and
/// hands out the session cookie. Always lands on the role picker.
pub async fn finish(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<FinishQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let p = provider(&state, &path, &req)?;
    let idp = p.idp.id.as_str();
    let config = &state.config;
    let id = request_id(&req);
    let expired = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in is unknown, expired or was already used. Start again.",
            &id,
        )
    };
    let key = query
        .k
        .as_deref()
        .filter(|k| k.len() == 43)
        .ok_or_else(expired)?;
    let json = state
        .store
        .take(&format!("saml:handoff:{key}"))
        .await
        .map_err(|e| store_down(&req, e))?
        .ok_or_else(expired)?;
    let handoff: Handoff = serde_json::from_str(&json).map_err(|e| store_down(&req, e))?;
    if let Some(binding) = &handoff.binding {
        let cookie = req
            .cookie(session::login_cookie_name(config))
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        if !session::tokens_match(&cookie, binding) {
            let _ = session::destroy(&state.store, &handoff.session_id).await;
            let _ = audit_login(
                &req,
                &state,
                idp,
                &handoff.subject,
                Outcome::Failure,
                "saml: browser binding mismatch",
            );
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "Sign-in started elsewhere",
                "This sign-in was started in another browser. Start again here.",
                &id,
            ));
        }
    }
    if let Some(old) = req.cookie(session::cookie_name(config)) {
        let _ = session::destroy(&state.store, old.value()).await;
    }
    if let Err(e) = audit_login(&req, &state, idp, &handoff.subject, Outcome::Success, "") {
        tracing::error!(error = %e, "audit log write failed; refusing the sign-in");
        let _ = session::destroy(&state.store, &handoff.session_id).await;
        return Err(PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable",
            "rolegate cannot write its audit log, so nobody can sign in right now.",
            &id,
        ));
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, "/"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .cookie(session::cookie(
            config,
            session::cookie_name(config),
            handoff.session_id,
            None,
        ))
        .cookie(session::removal_cookie(
            config,
            session::login_cookie_name(config),
        ))
        .finish())
}
