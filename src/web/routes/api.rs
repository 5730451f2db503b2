//! The JSON API for the CLI (and apps), authenticated by a broker access token
//! (`Authorization: Bearer …`, RFC 6750): who am I, my roles, credentials for a role, a
//! console sign-in URL. Every credential goes through the access core with client path
//! `cli`: the rules are evaluated again at each request against the identity captured at
//! login.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::json;

use super::fallback::request_id;
use crate::access::issuer::IssueFailure;
use crate::access::oauth::tokens::BearerGrant;
use crate::access::{ClientPath, IssuedCredentials};
use crate::credential_formats;
use crate::web::{ApiError, AppState, request_context};

/// The bearer grant of the request, or the RFC 6750 401.
async fn bearer(req: &HttpRequest, state: &AppState) -> Result<BearerGrant, HttpResponse> {
    let id = request_id(req);
    let unauthorized = |desc: &str| {
        let mut res =
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", desc, &id).error_response();
        res.headers_mut().insert(
            WWW_AUTHENTICATE,
            actix_web::http::header::HeaderValue::from_static(
                "Bearer realm=\"rolegate\", error=\"invalid_token\"",
            ),
        );
        res
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (token, dpop_scheme) = match (header.strip_prefix("Bearer "), header.strip_prefix("DPoP "))
    {
        (Some(t), _) => (t.trim(), false),
        (_, Some(t)) => (t.trim(), true),
        _ => {
            return Err(unauthorized(
                "an access token is required (Authorization: Bearer … or DPoP …)",
            ));
        }
    };
    match state.access.bearer(token).await {
        // A token bound to a DPoP key (RFC 9449) is only good with a proof of that key
        // for this request, naming this token.
        Ok(Some(grant)) if grant.jkt.is_some() => {
            let mut url = String::new();
            let Some(proof) = super::oauth::dpop_proof(req, state, &mut url) else {
                return Err(unauthorized("this token is DPoP-bound: send a DPoP proof"));
            };
            if !dpop_scheme {
                return Err(unauthorized(
                    "this token is DPoP-bound: use Authorization: DPoP",
                ));
            }
            match state.access.verify_dpop(&proof, Some(token)).await {
                Ok(jkt) if Some(&jkt) == grant.jkt.as_ref() => Ok(grant),
                Ok(_) => Err(unauthorized("the DPoP proof is signed by another key")),
                Err(e) if e.is_unavailable() => {
                    Err(super::oauth::oauth_error(req, &e).error_response())
                }
                Err(e) => Err(unauthorized(&e.description)),
            }
        }
        Ok(Some(grant)) => Ok(grant),
        Ok(None) => Err(unauthorized(
            "the access token is invalid, expired or revoked; refresh it or run `rolegate login`",
        )),
        Err(e) => Err(super::oauth::oauth_error(req, &e).error_response()),
    }
}

fn json_no_store(value: serde_json::Value) -> HttpResponse {
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
    json_no_store(json!({
        "idp": c.idp.as_str(),
        "subject": c.subject,
        "username": c.username,
        "email": c.email,
        "groups": c.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "client_id": grant.client_id,
        "device_name": grant.device_name,
        "session_expires_at": humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(grant.session_expires)
        ).to_string(),
    }))
}

/// `GET /api/v1/roles`: what the rules grant now, grouped by account.
pub async fn roles(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let menu = state.access.role_menu(&grant.identity);
    json_no_store(json!({
        "region": state.config().aws.region,
        "accounts": menu.accounts.iter().map(|a| json!({
            "id": a.id.as_str(),
            "name": a.display_name,
            "number": a.number.as_str(),
            "roles": a.roles.iter().map(|r| json!({
                "id": r.id.as_str(),
                "name": r.display_name,
                "arn": r.arn.as_str(),
                "max_duration_seconds": r.max_duration.as_secs(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize, Default)]
pub struct CredentialsBody {
    /// Seconds or e.g. `"1h"`; default: the grant's maximum.
    duration: Option<serde_json::Value>,
}

fn failure(req: &HttpRequest, e: &IssueFailure) -> HttpResponse {
    let id = request_id(req);
    let (status, code) = match e {
        IssueFailure::Refused(r) if r.is_bad_request() => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        IssueFailure::Refused(_) => (StatusCode::FORBIDDEN, "access_denied"),
        IssueFailure::AuditUnavailable => {
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
        IssueFailure::Refused(r) if !r.is_bad_request() => "you may not use this role".to_owned(),
        other => other.to_string(),
    };
    ApiError::new(status, code, description, &id).error_response()
}

fn duration_text(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn credentials_json(state: &AppState, issued: &IssuedCredentials) -> serde_json::Value {
    use secrecy::ExposeSecret;
    let c = &issued.credentials;
    json!({
        "Version": 1,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose_secret(),
        "SessionToken": c.session_token.expose_secret(),
        "Expiration": credential_formats::expiration(c),
        "Region": state.config().aws.region,
        "AssumedRoleArn": issued.assumed_role_arn,
    })
}

/// `POST /api/v1/roles/{role}/credentials`.
pub async fn credentials(
    req: HttpRequest,
    path: web::Path<String>,
    body: Option<web::Json<CredentialsBody>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let ctx = request_context(&req, &state);
    let duration = body.and_then(|b| duration_text(&b.duration));
    match state
        .access
        .issue_credentials(
            &grant.identity,
            &path,
            duration.as_deref(),
            ClientPath::Cli,
            &ctx,
        )
        .await
    {
        Ok(issued) => json_no_store(credentials_json(&state, &issued)),
        Err(e) => failure(&req, &e),
    }
}

/// `POST /api/v1/roles/{role}/console`: a federation sign-in URL (a bearer link: it is
/// the caller's to open, never to log).
pub async fn console(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match bearer(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let ctx = request_context(&req, &state);
    match state
        .access
        .console_sign_in(&grant.identity, &path, None, ClientPath::Cli, &ctx)
        .await
    {
        Ok(url) => json_no_store(json!({ "url": url.as_str() })),
        Err(e) => failure(&req, &e),
    }
}
