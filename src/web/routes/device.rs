//! `/device`: where a person approves a device-code login (RFC 8628) started by
//! `rolegate login --device-code`: enter the code (pre-filled from
//! `verification_uri_complete`, never approved by the link alone), see who asked, and
//! click Approve or Deny.

use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::common::{ApprovalFacts, approval_page, render, sign_in_page, store_down};
use super::fallback::request_id;
use crate::access::oauth::device::CodeEntryError;
use crate::web::extract::{MaybeSession, SignedIn, check_csrf};
use crate::web::pages::{CliDonePage, DeviceCodePage};
use crate::web::{AppState, PageError, request_context};

#[derive(Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

fn prefill(code: Option<&str>) -> String {
    code.unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(16)
        .collect()
}

/// `GET /device`: the code form (signing in first when needed).
pub async fn enter(
    req: HttpRequest,
    query: web::Query<DeviceQuery>,
    session: MaybeSession,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let code = prefill(query.user_code.as_deref());
    let Some(session) = session.0 else {
        let here = if code.is_empty() {
            "/device".to_owned()
        } else {
            format!("/device?user_code={code}")
        };
        return sign_in_page(&req, &state, Some(&here));
    };
    render(
        DeviceCodePage {
            csrf: &session.csrf,
            prefill: &code,
            error: None,
        },
        &req,
    )
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    user_code: Option<String>,
    decision: Option<String>,
}

fn entry_failed(req: &HttpRequest, e: &CodeEntryError) -> PageError {
    let status = match e {
        CodeEntryError::Locked => StatusCode::TOO_MANY_REQUESTS,
        CodeEntryError::Unavailable => return store_down(req, e),
        CodeEntryError::Unknown => StatusCode::BAD_REQUEST,
    };
    PageError::new(
        status,
        "Code not accepted",
        format!("{e}."),
        &request_id(req),
    )
}

/// `POST /device`: the entered code; shows the approval page for it.
pub async fn submit(
    req: HttpRequest,
    SignedIn(session): SignedIn,
    form: web::Form<CodeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &session, form.csrf.as_deref())?;
    let ctx = request_context(&req, &state);
    let input = form.user_code.as_deref().unwrap_or_default();
    let view = match state.access.find_device_login(input, &ctx).await {
        Ok(v) => v,
        Err(CodeEntryError::Unknown) => {
            let mut res = render(
                DeviceCodePage {
                    csrf: &session.csrf,
                    prefill: "",
                    error: Some(
                        "That code is not valid, expired, or was already used. Check your terminal and try again.",
                    ),
                },
                &req,
            )?;
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        }
        Err(e) => return Err(entry_failed(&req, &e)),
    };
    let client_name = state
        .access
        .registered_client_name(&view.client_id)
        .await
        .map_err(|e| store_down(&req, e))?;
    approval_page(
        &req,
        &state,
        &session,
        ApprovalFacts {
            client_id: &view.client_id,
            client_name: client_name.as_deref(),
            device_name: &view.device_name,
            client_ip: &view.client_ip,
            started: UNIX_EPOCH + Duration::from_secs(view.created),
            user_code: Some(&view.user_code),
        },
        "/device/approve",
        "user_code",
        &view.user_code,
    )
}

/// `POST /device/approve`: the click that approves (or denies) the device login.
pub async fn approve(
    req: HttpRequest,
    SignedIn(session): SignedIn,
    form: web::Form<CodeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &session, form.csrf.as_deref())?;
    let ctx = request_context(&req, &state);
    let approve = form.decision.as_deref() == Some("approve");
    state
        .access
        .decide_device_login(
            form.user_code.as_deref().unwrap_or_default(),
            approve,
            &session.identity,
            &ctx,
        )
        .await
        .map_err(|e| entry_failed(&req, &e))?;
    let (title, message) = if approve {
        (
            "Command line logged in",
            "Go back to your terminal: rolegate is logged in there.",
        )
    } else {
        (
            "Login denied",
            "The command-line login was denied; nothing got access.",
        )
    };
    render(CliDonePage { title, message }, &req)
}
