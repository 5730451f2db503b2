//! SAML endpoints: SP metadata, the assertion consumer (ACS) and the same-site finish
//! step. The login itself starts at `GET /login/{idp}` like any other; verification,
//! replay cache and hand-off are the access core's (`access::login`).

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::common::{sign_in_failed, signed_in};
use super::fallback::request_id;
use crate::web::{AppState, PageError, cookies, request_context};

/// `GET /saml/{idp}/metadata`: the SP metadata to import at the IdP.
pub async fn metadata(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = request_id(&req);
    match state.access.saml_sp_metadata(&path) {
        None => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Unknown sign-in",
            "There is no such sign-in option.",
            &id,
        )),
        Some(Err(e)) => {
            tracing::warn!(idp = %path, error = %e, "SP metadata unavailable");
            Err(PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Metadata unavailable",
                "This IdP's metadata is not loaded yet.",
                &id,
            ))
        }
        Some(Ok(xml)) => Ok(HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/samlmetadata+xml"))
            .body(xml)),
    }
}

#[derive(Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `POST /saml/{idp}/acs`: verifies the response, then hands the verified login over to
/// the finish step (a same-site GET, on which the login cookie comes along).
pub async fn acs(
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<AcsForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let ctx = request_context(&req, &state);
    let key = state
        .access
        .saml_acs(
            &path,
            form.saml_response.as_deref(),
            form.relay_state.as_deref(),
            &ctx,
        )
        .await
        .map_err(|e| sign_in_failed(&req, &e))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/saml/{path}/finish?k={key}")))
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
    let config = state.config();
    let binding = cookies::login_binding(&req, config);
    let previous = cookies::session_id(&req, config);
    let ctx = request_context(&req, &state);
    let session = state
        .access
        .finish_saml_login(
            &path,
            query.k.as_deref(),
            binding.as_deref(),
            previous.as_deref(),
            &ctx,
        )
        .await
        .map_err(|e| sign_in_failed(&req, &e))?;
    Ok(signed_in(config, session.into_inner()))
}
