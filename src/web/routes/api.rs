//! The JSON API for the CLI (and apps), authenticated by a broker access token
//! (`Authorization: Bearer …`, RFC 6750, or `DPoP …`, RFC 9449): who am I, my roles,
//! credentials for a role, a console sign-in URL. The token and its binding are the
//! access core's to check (`Access::authenticate`); every credential goes through the
//! core with the login's client (`cli`, `sdk`, or `mobile` and the app): the rules are
//! evaluated again at each request against the identity captured at login.

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use super::fallback::request_id;
use crate::access::issuer::{ConsoleAsk, IssueFailure};
use crate::access::oauth::tokens::BearerGrant;
use crate::access::{Audited, IssuedCredentials};
use crate::credential_formats;
use crate::web::extract::{bearer_refused, json_body, presented_token};
use crate::web::{ApiError, AppState, request_context};
use crate::wire;

/// The login behind the request's access token, or the answer refusing it.
async fn bearer(req: &HttpRequest, state: &AppState) -> Result<BearerGrant, HttpResponse> {
    let mut url = String::new();
    let presented = presented_token(req, state, &mut url, false);
    let ctx = request_context(req, state);
    state
        .access
        .authenticate(&presented, &ctx)
        .await
        .map_err(|e| bearer_refused(req, &e))
}

fn json_no_store(value: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(value)
}

/// `GET /api/v1/me`.
pub async fn me(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let c = grant.identity.claims();
    json_no_store(wire::Me {
        idp: c.idp.to_string(),
        subject: c.subject.clone(),
        username: c.username.clone(),
        email: c.email.clone(),
        groups: c.groups.iter().map(|g| g.as_str().to_owned()).collect(),
        client_id: grant.client_id,
        device_name: grant.device_name,
        session_expires_at: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(grant.session_expires),
        )
        .to_string(),
    })
}

/// `GET /api/v1/roles`: what the rules grant now, grouped by account.
pub async fn roles(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let menu = state.access.role_menu(&grant.identity);
    json_no_store(wire::RoleList {
        region: state.config().aws.region.clone(),
        accounts: menu
            .accounts
            .iter()
            .map(|a| wire::AccountEntry {
                id: a.id.to_string(),
                name: a.display_name.clone(),
                number: a.number.to_string(),
                roles: a
                    .roles
                    .iter()
                    .map(|r| wire::RoleEntry {
                        id: r.id.to_string(),
                        name: r.display_name.clone(),
                        arn: r.arn.to_string(),
                        max_duration_seconds: r.max_duration.as_secs().into(),
                        elevated_until: r.elevated_until,
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn failure(req: &HttpRequest, e: &IssueFailure) -> HttpResponse {
    let id = request_id(req);
    let (status, code) = match e {
        IssueFailure::Refused(r) if r.is_bad_request() => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        IssueFailure::Refused(crate::access::Refusal::Locked { .. }) => {
            (StatusCode::FORBIDDEN, "access_locked")
        }
        IssueFailure::Refused(_) => (StatusCode::FORBIDDEN, "access_denied"),
        IssueFailure::AuditUnavailable | IssueFailure::StoreUnavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        IssueFailure::Sts(s) if s.is_access_denied() => {
            (StatusCode::FORBIDDEN, "sts_access_denied")
        }
        IssueFailure::Sts(s) if s.is_duration_refused() => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        IssueFailure::Sts(s) if s.is_unavailable() => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        IssueFailure::Sts(_) | IssueFailure::Console(_) => {
            (StatusCode::BAD_GATEWAY, "upstream_error")
        }
    };
    // Refusals read the same whatever the reason (unknown, not granted, denied): a
    // caller learns nothing about roles it may not use.
    let description = match e {
        IssueFailure::Refused(crate::access::Refusal::Locked { .. }) => {
            "access to this role is locked; ask an administrator".to_owned()
        }
        // Their own elevation ending soon: nothing to hide from them.
        IssueFailure::Refused(r @ crate::access::Refusal::ElevationEnding { .. }) => r.to_string(),
        IssueFailure::Refused(r) if !r.is_bad_request() => "you may not use this role".to_owned(),
        other => other.to_string(),
    };
    ApiError::new(status, code, description, &id).error_response()
}

fn duration_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn credentials_json(state: &AppState, issued: Audited<IssuedCredentials>) -> HttpResponse {
    use secrecy::ExposeSecret;
    let issued = issued.into_inner();
    let c = &issued.credentials;
    json_no_store(json!({
        "Version": 1,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose_secret(),
        "SessionToken": c.session_token.expose_secret(),
        "Expiration": credential_formats::expiration(c),
        "Region": state.config().aws.region,
        "AssumedRoleArn": issued.assumed_role_arn,
    }))
}

/// `POST /api/v1/roles/{role}/credentials`, with an optional JSON body
/// `{"duration": "1h"}` (seconds or a duration; default: the grant's maximum).
pub async fn credentials(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let body = match json_body(&req, &body) {
        Ok(b) => b,
        Err(e) => return e.error_response(),
    };
    let ctx = request_context(&req, &state);
    let duration = duration_text(body.as_ref().and_then(|b| b.get("duration")));
    match state
        .access
        .issue_credentials(
            &grant.identity,
            &path,
            duration.as_deref(),
            &grant.requester,
            &ctx,
        )
        .await
    {
        Ok(issued) => credentials_json(&state, issued),
        Err(e) => failure(&req, &e),
    }
}

/// `POST /api/v1/roles/{role}/console`: a federation sign-in URL (a bearer link: it is
/// the caller's to open, never to log). Optional JSON body: `{"destination": URL}` or
/// `{"service": "s3", "region": "eu-west-1"}`, and `"duration"`.
pub async fn console(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let body = match json_body(&req, &body) {
        Ok(b) => b,
        Err(e) => return e.error_response(),
    };
    for k in ["destination", "service", "region"] {
        if body
            .as_ref()
            .and_then(|b| b.get(k))
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{k} must be a string"),
                &request_id(&req),
            )
            .error_response();
        }
    }
    let field = |k: &str| {
        body.as_ref()
            .and_then(|b| b.get(k))
            .and_then(|v| v.as_str())
    };
    let ask = ConsoleAsk::from_fields(field("destination"), field("service"), field("region"));
    let duration = duration_text(body.as_ref().and_then(|b| b.get("duration")));
    let ctx = request_context(&req, &state);
    match state
        .access
        .console_sign_in(
            &grant.identity,
            &path,
            duration.as_deref(),
            &ask,
            &grant.requester,
            &ctx,
        )
        .await
    {
        Ok(url) => json_no_store(json!({ "url": url.into_inner().as_str() })),
        Err(e) => failure(&req, &e),
    }
}

fn status_of(r: crate::access::elevation::RequestView) -> wire::ElevationStatus {
    wire::ElevationStatus {
        id: r.id,
        role: r.role,
        status: r.status.to_owned(),
        seconds: r.seconds,
        reason: r.reason,
        ticket: r.ticket,
        approvals: r.approvals,
        approvals_needed: r.approvals_needed,
        until: r.until,
        decided_by: r.decided_by,
        comment: r.comment,
    }
}

fn elevation_failed(
    req: &HttpRequest,
    e: &crate::access::elevation::ElevationError,
) -> HttpResponse {
    use crate::access::elevation::ElevationError as E;
    let (status, code) = match e {
        E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        E::NotEligible(_) | E::Forbidden(_) => (StatusCode::FORBIDDEN, "access_denied"),
        E::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        E::Decided(_) | E::Conflict => (StatusCode::CONFLICT, "conflict"),
        E::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
    };
    ApiError::new(status, code, e.to_string(), &request_id(req)).error_response()
}

/// `POST /api/v1/requests`: asks for an eligible role (JSON `ElevationAsk`).
pub async fn ask(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let ask: wire::ElevationAsk = match json_body(&req, &body) {
        Ok(Some(v)) => match serde_json::from_value(v) {
            Ok(a) => a,
            Err(e) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("the body is not a request: {e}"),
                    &request_id(&req),
                )
                .error_response();
            }
        },
        Ok(None) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a JSON body {role, duration, reason, ticket} is required",
                &request_id(&req),
            )
            .error_response();
        }
        Err(e) => return e.error_response(),
    };
    let ctx = request_context(&req, &state);
    match state
        .access
        .request_elevation(
            &grant.identity,
            crate::access::elevation::NewRequest {
                role: &ask.role,
                duration: &ask.duration,
                reason: &ask.reason,
                ticket: ask.ticket.as_deref(),
            },
            &grant.requester,
            &ctx,
        )
        .await
    {
        Ok(r) => HttpResponse::Created()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(status_of(r)),
        Err(e) => elevation_failed(&req, &e),
    }
}

/// `GET /api/v1/requests`: the caller's requests, newest first.
pub async fn requests(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    match state.access.my_requests(&grant.identity).await {
        Ok(list) => json_no_store(list.into_iter().map(status_of).collect::<Vec<_>>()),
        Err(e) => elevation_failed(&req, &e.into()),
    }
}

/// `GET /api/v1/requests/{id}`: one request (the caller's, or one they may decide).
pub async fn request(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    match state.access.elevation_request(&grant.identity, &path).await {
        Ok(r) => json_no_store(status_of(r)),
        Err(e) => elevation_failed(&req, &e),
    }
}
