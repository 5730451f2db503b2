//! Just-in-time elevation in the browser: asking for an eligible role (from the role
//! picker), the approvers' page, decisions and ending an elevation early. The rules and
//! the one-decision guarantee are the access core's (`access::elevation`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::common::{render, request_row, see_other, store_down};
use super::fallback::request_id;
use crate::access::elevation::{ElevationError, NewRequest};
use crate::access::{ClientPath, Requester};
use crate::web::extract::{SignedIn, check_csrf};
use crate::web::pages::RequestsPage;
use crate::web::{AppState, PageError, request_context};

fn failed(req: &HttpRequest, e: ElevationError) -> PageError {
    if let ElevationError::Store(e) = e {
        return store_down(req, e);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    PageError::new(
        status,
        "Not done",
        format!("{}.", capitalized(&e.to_string())),
        &request_id(req),
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[derive(Deserialize)]
pub struct AskForm {
    csrf: Option<String>,
    role: Option<String>,
    duration: Option<String>,
    reason: Option<String>,
    ticket: Option<String>,
}

/// `POST /requests`: asks for an eligible role.
pub async fn ask(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    form: web::Form<AskForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    let ctx = request_context(&req, &state);
    let view = state
        .access
        .request_elevation(
            &s.identity,
            NewRequest {
                role: form.role.as_deref().unwrap_or(""),
                duration: form.duration.as_deref().unwrap_or(""),
                reason: form.reason.as_deref().unwrap_or(""),
                ticket: form.ticket.as_deref(),
            },
            &Requester::web(ClientPath::WebCli),
            &ctx,
        )
        .await
        .map_err(|e| failed(&req, e))?;
    Ok(see_other(if view.status == "approved" {
        "/?done=elevated"
    } else {
        "/?done=requested"
    }))
}

#[derive(Deserialize)]
pub struct QueueQuery {
    done: Option<String>,
}

/// `GET /requests`: what waits for the viewer to decide.
pub async fn queue(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    query: web::Query<QueueQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let pending = state
        .access
        .approvable(&s.identity)
        .await
        .map_err(|e| store_down(&req, e))?
        .iter()
        .map(request_row)
        .collect();
    render(
        RequestsPage {
            csrf: &s.csrf,
            username: &s.identity.claims().username,
            pending,
            notice: match query.done.as_deref() {
                Some("approve") => Some("Approved.".into()),
                Some("deny") => Some("Denied.".into()),
                _ => None,
            },
        },
        &req,
    )
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: Option<String>,
    decision: Option<String>,
    comment: Option<String>,
}

/// `POST /requests/{id}/decision`: approve or deny.
pub async fn decide(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    path: web::Path<String>,
    form: web::Form<DecisionForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    let approve = match form.decision.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "Not done",
                "Choose Approve or Deny.",
                &request_id(&req),
            ));
        }
    };
    let ctx = request_context(&req, &state);
    state
        .access
        .decide_elevation(
            &s.identity,
            &path,
            approve,
            form.comment.as_deref().unwrap_or(""),
            &ctx,
        )
        .await
        .map_err(|e| failed(&req, e))?;
    Ok(see_other(if approve {
        "/requests?done=approve"
    } else {
        "/requests?done=deny"
    }))
}

#[derive(Deserialize)]
pub struct EndForm {
    csrf: Option<String>,
}

/// `POST /requests/{id}/end`: ends a running elevation now.
pub async fn end(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    path: web::Path<String>,
    form: web::Form<EndForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    let ctx = request_context(&req, &state);
    state
        .access
        .end_elevation(&s.identity, &path, &ctx)
        .await
        .map_err(|e| failed(&req, e))?;
    Ok(see_other("/?done=ended"))
}
