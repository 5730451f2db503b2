//! The OAuth 2.0 endpoints of the CLI login: server metadata (RFC 8414), the browser's
//! `/oauth/authorize` with its approval page (code + PKCE, loopback redirect), the device
//! authorization endpoint (RFC 8628), the token endpoint and revocation (RFC 7009). The
//! decisions are the access core's (`access::oauth`); these handlers read and answer.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION, PRAGMA};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::common::{ApprovalFacts, approval_page, sign_in_page, store_down};
use super::fallback::request_id;
use crate::access::oauth::code::{AuthorizeError, AuthorizeQuery};
use crate::access::oauth::dpop::DPOP_ALGS;
use crate::access::oauth::exchange::{ACCESS_TOKEN, AWS_CREDENTIALS, Exchanged};
use crate::access::oauth::grant::{DEVICE_CODE, Granted, TokenEndpoint};
use crate::web::extract::{MaybeSession, OAuthForm, SignedIn, check_csrf, dpop_proof, oauth_error};
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
            "issuer": state.access.issuer_id(),
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                DEVICE_CODE,
                "refresh_token",
                crate::access::oauth::exchange::GRANT_TYPE
            ],
            "dpop_signing_alg_values_supported": DPOP_ALGS,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "authorization_response_iss_parameter_supported": true,
        }))
}

/// `GET /oauth/authorize` (and `/sso-oidc/authorize`): checks the request (errors before
/// the client and redirect URI are verified are pages; after, they go back to the
/// client), signs the person in if needed, and shows the approval page.
pub async fn authorize(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    session: MaybeSession,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = request_id(&req);
    let query = AuthorizeQuery::from_pairs(query.into_inner());
    let request = match state.access.check_authorize(&query).await {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => {
            if e.is_unavailable() {
                return Err(store_down(&req, e));
            }
            tracing::warn!(error = %e, "authorization request refused");
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "Login request refused",
                format!(
                    "This command-line login request is not valid: {}.",
                    e.description
                ),
                &id,
            ));
        }
        Err(AuthorizeError::Redirect { error, to }) => {
            tracing::warn!(error = %error, "authorization request refused; telling the client");
            return Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, to.as_str()))
                .insert_header((CACHE_CONTROL, "no-store"))
                .finish());
        }
    };
    let Some(session) = session.0 else {
        let here = match req.uri().query() {
            Some(q) => format!("{}?{q}", req.path()),
            None => req.path().to_owned(),
        };
        let here = here.replacen("/sso-oidc/authorize", "/oauth/authorize", 1);
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
    SignedIn(session): SignedIn,
    form: web::Form<DecisionForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &session, form.csrf.as_deref())?;
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

/// `POST /oauth/token`: every grant, through the core's one dispatch.
pub async fn token(
    req: HttpRequest,
    OAuthForm(params): OAuthForm,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ctx = request_context(&req, &state);
    let mut url = String::new();
    let proof = dpop_proof(&req, &state, &mut url);
    match state
        .access
        .token_grant(TokenEndpoint::OAuth, &params, proof, &ctx)
        .await
    {
        Ok(granted) => Ok(match granted.into_inner() {
            Granted::Tokens(t) => no_store(HttpResponse::Ok().json(t)),
            Granted::Exchanged(e) => exchanged(e, &state),
        }),
        Err(e) => Err(oauth_error(&req, &e)),
    }
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1).
pub async fn device_authorization(
    req: HttpRequest,
    OAuthForm(params): OAuthForm,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ctx = request_context(&req, &state);
    match state
        .access
        .start_device_authorization(
            params.get("client_id").unwrap_or_default(),
            None,
            params.get("device_name"),
            &ctx,
        )
        .await
    {
        Ok(d) => Ok(no_store(HttpResponse::Ok().json(d))),
        Err(e) => Err(oauth_error(&req, &e)),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    req: HttpRequest,
    OAuthForm(params): OAuthForm,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ctx = request_context(&req, &state);
    let Some(token) = params.get("token") else {
        let e = state
            .access
            .refuse_request(req.path(), "token is missing", &ctx);
        return Err(oauth_error(&req, &e));
    };
    match state.access.revoke(token, &ctx).await {
        Ok(()) => Ok(no_store(HttpResponse::Ok().finish())),
        Err(e) => Err(oauth_error(&req, &e)),
    }
}
