//! The OAuth 2.0 endpoints of the CLI login: server metadata (RFC 8414), the browser's
//! `/oauth/authorize` with its approval page (code + PKCE, loopback redirect), the device
//! authorization endpoint (RFC 8628), the token endpoint and revocation (RFC 7009). The
//! decisions are the access core's (`access::oauth`); these handlers read and answer.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION, PRAGMA};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::common::{render, store_down};
use super::fallback::request_id;
use super::login::{CsrfForm, current_session, sign_in_page};
use crate::access::oauth::OAuthError;
use crate::access::oauth::code::AuthorizeQuery;
use crate::access::oauth::dpop::DpopProof;
use crate::access::oauth::exchange::{
    ACCESS_TOKEN, AWS_CREDENTIALS, ExchangeRequest, Exchanged, GRANT_TYPE as EXCHANGE_GRANT,
};
use crate::web::pages::ApprovePage;
use crate::web::{ApiError, AppState, PageError, SecurityHeaders, request_context};

/// RFC 6749 §5.1: token responses are never cached.
fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(
        CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    res.headers_mut().insert(
        PRAGMA,
        actix_web::http::header::HeaderValue::from_static("no-cache"),
    );
    res
}

/// An OAuth error as RFC 6749 §5.2 JSON: 400, 401 for a bad client, 503 when the store
/// is down.
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

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let base = state
        .config()
        .server
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "issuer": state.config().server.public_url.as_str(),
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "urn:ietf:params:oauth:grant-type:device_code",
                "refresh_token",
                EXCHANGE_GRANT
            ],
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none"],
        }))
}

/// `GET /oauth/authorize`: checks the request (errors are pages: the redirect URI is not
/// trusted yet), signs the person in if needed, and shows the approval page.
pub async fn authorize(
    req: HttpRequest,
    query: web::Query<AuthorizeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = request_id(&req);
    let request = state.access.check_authorize(&query).await.map_err(|e| {
        tracing::warn!(error = %e, "authorization request refused");
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Login request refused",
            format!(
                "This command-line login request is not valid: {}.",
                e.description
            ),
            &id,
        )
    })?;
    let Some(session) = current_session(&req, &state).await? else {
        let here = match req.uri().query() {
            Some(q) => format!("/oauth/authorize?{q}"),
            None => "/oauth/authorize".to_owned(),
        };
        return sign_in_page(&req, &state, Some(&here));
    };
    let held = state
        .access
        .hold_authorization(request.clone(), &session.id)
        .await
        .map_err(|e| store_down(&req, e))?;
    let ctx = request_context(&req, &state);
    let client_name = state
        .access
        .registered_client_name(&request.client_id)
        .await
        .map_err(|e| store_down(&req, e))?;
    let mut page = approval_page(
        &req,
        &state,
        &session,
        ApprovalFacts {
            client_id: &request.client_id,
            client_name: client_name.as_deref(),
            device_name: &request.device_name,
            client_ip: &ctx.client_ip,
            started: std::time::SystemTime::now(),
            user_code: None,
        },
        "/oauth/authorize",
        "request",
        &held,
    )?;
    // Approve redirects the form to the CLI's loopback address (checked above): browsers
    // apply form-action to redirects, so this page's policy names that origin.
    if let (Some(headers), Some(target)) = (
        req.app_data::<web::Data<SecurityHeaders>>(),
        crate::access::oauth::code::loopback_redirect(&request.redirect_uri),
    ) && let Some(csp) = headers.csp_with_form_target(&target.origin().ascii_serialization())
    {
        page.headers_mut()
            .insert(actix_web::http::header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(page)
}

/// What the approval page says about the login being approved.
pub struct ApprovalFacts<'a> {
    pub client_id: &'a str,
    pub client_name: Option<&'a str>,
    pub device_name: &'a str,
    pub client_ip: &'a str,
    pub started: std::time::SystemTime,
    pub user_code: Option<&'a str>,
}

pub fn approval_page(
    req: &HttpRequest,
    state: &AppState,
    session: &crate::access::Session,
    facts: ApprovalFacts<'_>,
    action: &str,
    key_name: &str,
    key_value: &str,
) -> Result<HttpResponse, PageError> {
    let c = session.identity.claims();
    let idp_name = state
        .config()
        .idp(c.idp.as_str())
        .map(|i| i.display_name.as_str())
        .unwrap_or("your IdP");
    render(
        ApprovePage {
            client_id: facts.client_id,
            client_name: facts.client_name,
            device_name: facts.device_name,
            client_ip: if facts.client_ip.is_empty() {
                "unknown"
            } else {
                facts.client_ip
            },
            started: humantime::format_rfc3339_seconds(facts.started).to_string(),
            user_code: facts.user_code,
            username: &c.username,
            idp_name,
            session_lifetime: humantime::format_duration(state.config().cli.session_lifetime)
                .to_string(),
            csrf: &session.csrf,
            action,
            key_name,
            key_value,
        },
        req,
    )
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: Option<String>,
    request: Option<String>,
    decision: Option<String>,
}

/// `POST /oauth/authorize`: the person's Approve / Deny (CSRF-protected), then back to
/// the CLI's loopback address with the code (or `access_denied`).
pub async fn decide(
    req: HttpRequest,
    form: web::Form<DecisionForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let csrf = CsrfForm {
        csrf: form.csrf.clone(),
        duration: None,
    };
    let session = super::login::require_session_and_csrf(&req, &state, &csrf).await?;
    let ctx = request_context(&req, &state);
    let approve = form.decision.as_deref() == Some("approve");
    let decided = state
        .access
        .decide_authorization(
            form.request.as_deref().unwrap_or_default(),
            approve,
            &session.identity,
            &session.id,
            &ctx,
        )
        .await
        .map_err(|e| {
            if e.is_unavailable() {
                return store_down(&req, e);
            }
            PageError::new(
                StatusCode::BAD_REQUEST,
                "Login request expired",
                format!("{}. Start the login again in your terminal.", e.description),
                &request_id(&req),
            )
        })?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, decided.redirect.as_str()))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish())
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    device_code: Option<String>,
    refresh_token: Option<String>,
    // Token exchange (RFC 8693).
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
}

/// The request's `DPoP` header as a proof for this URL at the broker's public address.
pub fn dpop_proof<'a>(
    req: &'a HttpRequest,
    state: &AppState,
    url: &'a mut String,
) -> Option<DpopProof<'a>> {
    let jwt = req.headers().get("dpop")?.to_str().ok()?;
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
    Some(DpopProof {
        jwt,
        method: req.method().as_str(),
        url: url.as_str(),
    })
}

fn exchanged(result: Exchanged, state: &AppState) -> HttpResponse {
    use secrecy::ExposeSecret;
    match result {
        Exchanged::Credentials {
            issued,
            role,
            expires_in,
        } => {
            let c = &issued.credentials;
            no_store(HttpResponse::Ok().json(json!({
                // RFC 8693 needs an access_token: for AWS credentials it is the session
                // token; the whole set is in aws_credentials.
                "access_token": c.session_token.expose_secret(),
                "issued_token_type": AWS_CREDENTIALS,
                "token_type": "N_A",
                "expires_in": expires_in,
                "aws_credentials": {
                    "AccessKeyId": c.access_key_id,
                    "SecretAccessKey": c.secret_access_key.expose_secret(),
                    "SessionToken": c.session_token.expose_secret(),
                    "Expiration": crate::credential_formats::expiration(c),
                },
                "role": role,
                "assumed_role_arn": issued.assumed_role_arn,
                "region": state.config().aws.region,
            })))
        }
        Exchanged::AccessToken {
            token,
            expires_in,
            token_type,
        } => no_store(HttpResponse::Ok().json(json!({
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN,
            "token_type": token_type,
            "expires_in": expires_in,
        }))),
    }
}

/// `POST /oauth/token`: the authorization-code, device-code and refresh-token grants.
pub async fn token(
    req: HttpRequest,
    form: web::Form<TokenForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ctx = request_context(&req, &state);
    let missing = |what: &str| OAuthError::invalid_request(format!("{what} is missing"));
    let client_id = form.client_id.as_deref().unwrap_or_default();
    if form.grant_type.as_deref() == Some(EXCHANGE_GRANT) {
        let mut url = String::new();
        let proof = dpop_proof(&req, &state, &mut url);
        let result = match (
            form.subject_token.as_deref(),
            form.subject_token_type.as_deref(),
        ) {
            (Some(token), Some(kind)) if !client_id.is_empty() => {
                state
                    .access
                    .exchange_token(
                        ExchangeRequest {
                            client_id,
                            client_secret: form.client_secret.as_deref(),
                            subject_token: token,
                            subject_token_type: kind,
                            requested_token_type: form.requested_token_type.as_deref(),
                            target: form.audience.as_deref().or(form.resource.as_deref()),
                            dpop: proof,
                        },
                        &ctx,
                    )
                    .await
            }
            _ => Err(OAuthError::invalid_request(
                "client_id, subject_token and subject_token_type are required",
            )),
        };
        return match result {
            Ok(done) => Ok(exchanged(done, &state)),
            Err(e) => Err(oauth_error(&req, &e)),
        };
    }
    let result = async {
        if client_id.is_empty() {
            return Err(missing("client_id"));
        }
        state
            .access
            .check_client(client_id, form.client_secret.as_deref())
            .await?;
        match form.grant_type.as_deref() {
            Some("authorization_code") => {
                state
                    .access
                    .exchange_code(
                        form.code.as_deref().ok_or_else(|| missing("code"))?,
                        client_id,
                        form.redirect_uri
                            .as_deref()
                            .ok_or_else(|| missing("redirect_uri"))?,
                        form.code_verifier
                            .as_deref()
                            .ok_or_else(|| missing("code_verifier"))?,
                        &ctx,
                    )
                    .await
            }
            Some("urn:ietf:params:oauth:grant-type:device_code") => {
                state
                    .access
                    .poll_device(
                        form.device_code
                            .as_deref()
                            .ok_or_else(|| missing("device_code"))?,
                        client_id,
                        &ctx,
                    )
                    .await
            }
            Some("refresh_token") => {
                state
                    .access
                    .refresh(
                        form.refresh_token
                            .as_deref()
                            .ok_or_else(|| missing("refresh_token"))?,
                        client_id,
                        &ctx,
                    )
                    .await
            }
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code, urn:ietf:params:oauth:grant-type:device_code or refresh_token",
            )),
            None => Err(missing("grant_type")),
        }
    }
    .await;
    match result {
        Ok(tokens) => Ok(no_store(HttpResponse::Ok().json(tokens))),
        Err(e) => Err(oauth_error(&req, &e)),
    }
}

#[derive(Deserialize)]
pub struct DeviceAuthorizationForm {
    client_id: Option<String>,
    device_name: Option<String>,
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1).
pub async fn device_authorization(
    req: HttpRequest,
    form: web::Form<DeviceAuthorizationForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ctx = request_context(&req, &state);
    let client_id = form.client_id.as_deref().unwrap_or_default();
    match state
        .access
        .start_device_authorization(client_id, None, form.device_name.as_deref(), &ctx)
        .await
    {
        Ok(d) => Ok(no_store(HttpResponse::Ok().json(d))),
        Err(e) => Err(oauth_error(&req, &e)),
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    token: Option<String>,
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    req: HttpRequest,
    form: web::Form<RevokeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ctx = request_context(&req, &state);
    let Some(token) = form.token.as_deref() else {
        return Err(oauth_error(
            &req,
            &OAuthError::invalid_request("token is missing"),
        ));
    };
    match state.access.revoke(token, &ctx).await {
        Ok(()) => Ok(no_store(HttpResponse::Ok().finish())),
        Err(e) => Err(oauth_error(&req, &e)),
    }
}
