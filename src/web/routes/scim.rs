//! The SCIM 2.0 service provider at `/scim/v2` (RFC 7644): thin handlers over the access
//! core's provisioning use cases. Every request carries an IdP's SCIM bearer token; bodies
//! are read here up to [`SCIM_BODY_LIMIT`] and must be JSON (`application/scim+json` or
//! `application/json`); every answer, errors included, is SCIM JSON.

use actix_web::http::StatusCode;
use actix_web::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Value as Json, json};

use crate::access::provisioning::{ScimCaller, ScimWrite};
use crate::scim::schema::{self, Kind};
use crate::scim::{ListQuery, Projection, ScimError};
use crate::web::{AppState, request_context};

/// The largest SCIM request body (a group with thousands of members fits).
pub const SCIM_BODY_LIMIT: usize = 1024 * 1024;

const SCIM_JSON: &str = "application/scim+json";

fn answer(status: StatusCode, body: &Json) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((CONTENT_TYPE, SCIM_JSON))
        .insert_header((CACHE_CONTROL, "no-store"));
    if let Some(v) = body
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Json::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        res.insert_header((ETAG, v));
    }
    res.body(body.to_string())
}

fn error(e: &ScimError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = HttpResponse::build(status);
    res.insert_header((CONTENT_TYPE, SCIM_JSON))
        .insert_header((CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        res.insert_header((WWW_AUTHENTICATE, "Bearer realm=\"rolegate SCIM\""));
    }
    if let Some(s) = e.retry_after {
        res.insert_header((RETRY_AFTER, s.to_string()));
    }
    res.body(e.body().to_string())
}

/// The request's IdP, or the answer refusing it.
async fn caller(req: &HttpRequest, state: &AppState) -> Result<ScimCaller, HttpResponse> {
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .access
        .scim_caller(auth, &request_context(req, state))
        .await
        .map_err(|e| error(&e))
}

fn kind_of(resource: &str) -> Option<Kind> {
    match resource {
        "Users" => Some(Kind::User),
        "Groups" => Some(Kind::Group),
        _ => None,
    }
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ScimError> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| Ok((k.into_owned(), v.into_owned())))
        .collect()
}

/// The body as a JSON value: at most [`SCIM_BODY_LIMIT`] bytes, JSON content.
async fn read_json(req: &HttpRequest, mut payload: web::Payload) -> Result<Json, ScimError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if content_type != SCIM_JSON && content_type != "application/json" {
        return Err(ScimError::new(
            415,
            None,
            "the body must be application/scim+json or application/json",
        ));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ScimError::invalid_syntax("the body could not be read"))?;
        if body.len() + chunk.len() > SCIM_BODY_LIMIT {
            return Err(ScimError::new(
                413,
                Some("tooLarge"),
                format!("the body is larger than {SCIM_BODY_LIMIT} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| {
        ScimError::invalid_syntax(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Refusals of input found here are audited like the core's.
fn refused(req: &HttpRequest, state: &AppState, op: &'static str, e: ScimError) -> HttpResponse {
    state
        .access
        .audit_scim_refusal("", op, "", &e.detail, &request_context(req, state));
    error(&e)
}

/// `GET /scim/v2/{Users|Groups}`.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let caller = match caller(&req, &state).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let Some(kind) = kind_of(&path) else {
        return error(&ScimError::new(404, None, "no such endpoint"));
    };
    let query = match query_pairs(&req).and_then(|p| ListQuery::from_pairs(&p)) {
        Ok(q) => q,
        Err(e) => return refused(&req, &state, "read", e),
    };
    match state.access.scim_list(&caller, kind, &query).await {
        Ok(body) => answer(StatusCode::OK, &body),
        Err(e) => error(&e),
    }
}

/// `GET /scim/v2/{Users|Groups}/{id}`.
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let caller = match caller(&req, &state).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let (resource, id) = path.into_inner();
    let Some(kind) = kind_of(&resource) else {
        return error(&ScimError::new(404, None, "no such endpoint"));
    };
    let projection = match query_pairs(&req).and_then(|p| {
        let one = |n: &str| {
            p.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        Projection::from_params(
            one("attributes").as_deref(),
            one("excludedAttributes").as_deref(),
        )
    }) {
        Ok(p) => p,
        Err(e) => return refused(&req, &state, "read", e),
    };
    match state.access.scim_get(&caller, kind, &id, &projection).await {
        Ok(body) => answer(StatusCode::OK, &body),
        Err(e) => error(&e),
    }
}

async fn write(
    req: HttpRequest,
    state: web::Data<AppState>,
    resource: &str,
    id: Option<&str>,
    op: ScimWrite,
    payload: Option<web::Payload>,
) -> HttpResponse {
    let caller = match caller(&req, &state).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let Some(kind) = kind_of(resource) else {
        return error(&ScimError::new(404, None, "no such endpoint"));
    };
    let body = match payload {
        None => None,
        Some(p) => match read_json(&req, p).await {
            Ok(b) => Some(b),
            Err(e) => return refused(&req, &state, "write", e),
        },
    };
    let ctx = request_context(&req, &state);
    match state
        .access
        .scim_write(&caller, kind, op, id, body.as_ref(), &ctx)
        .await
    {
        Ok(None) => HttpResponse::NoContent()
            .insert_header((CACHE_CONTROL, "no-store"))
            .finish(),
        Ok(Some(body)) => {
            if let ScimWrite::Create = op {
                let mut res = answer(StatusCode::CREATED, &body);
                if let Some(loc) = body
                    .get("meta")
                    .and_then(|m| m.get("location"))
                    .and_then(Json::as_str)
                    .and_then(|l| HeaderValue::from_str(l).ok())
                {
                    res.headers_mut().insert(LOCATION, loc);
                }
                res
            } else {
                answer(StatusCode::OK, &body)
            }
        }
        Err(e) => error(&e),
    }
}

/// `POST /scim/v2/{Users|Groups}`.
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    write(req, state, &path, None, ScimWrite::Create, Some(payload)).await
}

/// `PUT /scim/v2/{Users|Groups}/{id}`.
pub async fn replace(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (resource, id) = path.into_inner();
    write(
        req,
        state,
        &resource,
        Some(&id),
        ScimWrite::Replace,
        Some(payload),
    )
    .await
}

/// `PATCH /scim/v2/{Users|Groups}/{id}`.
pub async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (resource, id) = path.into_inner();
    write(
        req,
        state,
        &resource,
        Some(&id),
        ScimWrite::Patch,
        Some(payload),
    )
    .await
}

/// `DELETE /scim/v2/{Users|Groups}/{id}`.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (resource, id) = path.into_inner();
    write(req, state, &resource, Some(&id), ScimWrite::Delete, None).await
}

/// `GET /scim/v2/ServiceProviderConfig`, `/ResourceTypes[/{id}]`, `/Schemas[/{id}]`.
pub async fn discovery(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(res) = caller(&req, &state).await {
        return res;
    }
    let base = state.access.scim_base();
    let path = req.match_info().get("what").unwrap_or("");
    let id = req.match_info().get("id");
    let list = |items: Vec<Json>| {
        json!({
            "schemas": [crate::scim::LIST_SCHEMA],
            "totalResults": items.len(),
            "startIndex": 1,
            "itemsPerPage": items.len(),
            "Resources": items,
        })
    };
    let pick = |items: Vec<Json>| -> Result<Json, ScimError> {
        match id {
            None => Ok(list(items)),
            Some(id) => items
                .into_iter()
                .find(|i| i.get("id").and_then(Json::as_str) == Some(id))
                .ok_or_else(|| ScimError::new(404, None, "no such schema or resource type")),
        }
    };
    let body = match path {
        "ServiceProviderConfig" if id.is_none() => Ok(schema::service_provider_config(
            &base,
            crate::scim::MAX_RESULTS,
        )),
        "ResourceTypes" => pick(schema::resource_types(&base)),
        "Schemas" => pick(schema::schemas(&base)),
        _ => Err(ScimError::new(404, None, "no such endpoint")),
    };
    match body {
        Ok(b) => answer(StatusCode::OK, &b),
        Err(e) => error(&e),
    }
}

/// A method the discovery endpoints do not take: 405.
pub async fn not_allowed(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(res) = caller(&req, &state).await {
        return res;
    }
    let mut res = error(&ScimError::new(405, None, "this endpoint only answers GET"));
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        HeaderValue::from_static("GET"),
    );
    res
}

/// Anything else under `/scim/v2`: a SCIM 404 (or 501 for what is deliberately not
/// supported: bulk, `/Me`, `.search`).
pub async fn other(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(res) = caller(&req, &state).await {
        return res;
    }
    let path = req.path();
    if path.ends_with("/Bulk") || path.ends_with("/Me") || path.ends_with("/.search") {
        return error(&ScimError::new(
            501,
            None,
            "not supported by this service provider",
        ));
    }
    error(&ScimError::new(404, None, "no such endpoint"))
}
