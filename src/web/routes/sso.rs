//! The AWS SSO APIs, so unchanged AWS SDKs and the AWS CLI log in and get credentials
//! through rolegate (endpoints overridden per service: `AWS_ENDPOINT_URL_SSO_OIDC`,
//! `AWS_ENDPOINT_URL_SSO`, or `endpoint_url` in a `[services …]` section):
//!
//! - SSO OIDC (`/sso-oidc`, restJson1, as botocore's `sso-oidc` model specifies):
//!   `RegisterClient`, `StartDeviceAuthorization`, `CreateToken` (device code,
//!   authorization code + PKCE, refresh token) and the browser's `/authorize`.
//! - SSO portal (`/sso-portal`, the `sso` model): `ListAccounts`, `ListAccountRoles`,
//!   `GetRoleCredentials`, `Logout`, authenticated by `x-amz-sso_bearer_token`.
//!
//! Both are thin adapters over the same OAuth server and access core as the CLI: the
//! same device codes, approval pages, rotating refresh tokens with their reuse interval,
//! and credentials through the core with client path `cli`. Role names here are rolegate
//! role ids; account ids are the 12-digit numbers. Errors carry the service's exception
//! name in `x-amzn-ErrorType` (which the SDKs read) and its fields in the body.

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::fallback::request_id;
use crate::access::RequestContext;
use crate::access::issuer::IssueFailure;
use crate::access::oauth::OAuthError;
use crate::access::oauth::bearer::BearerError;
use crate::access::oauth::grant::{Granted, OAuthParams, TokenEndpoint};
use crate::access::oauth::tokens::BearerGrant;
use crate::web::extract::{dpop_proof, presented_token};
use crate::web::{AppState, request_context};

/// An SSO API error: status, the exception name the SDKs map, and its message.
fn aws_error(
    req: &HttpRequest,
    status: StatusCode,
    exception: &str,
    code: &str,
    message: &str,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("x-amzn-ErrorType", exception))
        .insert_header(("x-amzn-RequestId", request_id(req)))
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "error": code, "error_description": message, "message": message }))
}

/// An OAuth error as the SSO OIDC API's exception.
fn oidc_error(req: &HttpRequest, e: &OAuthError) -> HttpResponse {
    let (status, exception) = match e.code {
        "authorization_pending" => (StatusCode::BAD_REQUEST, "AuthorizationPendingException"),
        "slow_down" => (StatusCode::BAD_REQUEST, "SlowDownException"),
        "access_denied" => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
        "expired_token" => (StatusCode::BAD_REQUEST, "ExpiredTokenException"),
        "invalid_grant" => (StatusCode::BAD_REQUEST, "InvalidGrantException"),
        "invalid_client" => (StatusCode::UNAUTHORIZED, "InvalidClientException"),
        "unsupported_grant_type" => (StatusCode::BAD_REQUEST, "UnsupportedGrantTypeException"),
        "invalid_redirect_uri" => (StatusCode::BAD_REQUEST, "InvalidRedirectUriException"),
        "temporarily_unavailable" => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException"),
        _ => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
    };
    aws_error(req, status, exception, e.code, &e.description)
}

fn ok(value: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(value)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterClientBody {
    client_name: Option<String>,
    client_type: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

/// `POST /sso-oidc/client/register`.
pub async fn register_client(
    req: HttpRequest,
    body: web::Json<RegisterClientBody>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if body.client_type.as_deref().is_some_and(|t| t != "public") {
        return aws_error(
            &req,
            StatusCode::BAD_REQUEST,
            "InvalidClientMetadataException",
            "invalid_client_metadata",
            "only public clients can register",
        );
    }
    let ctx = request_context(&req, &state);
    match state
        .access
        .register_client(
            body.client_name.as_deref().unwrap_or("client"),
            &body.redirect_uris,
            &ctx,
        )
        .await
    {
        Ok(r) => {
            let base = state
                .config()
                .server
                .public_url
                .as_str()
                .trim_end_matches('/')
                .to_owned();
            ok(json!({
                "clientId": r.client_id,
                "clientSecret": r.client_secret,
                "clientIdIssuedAt": r.issued_at,
                "clientSecretExpiresAt": r.expires_at,
                "authorizationEndpoint": format!("{base}/sso-oidc/authorize"),
                "tokenEndpoint": format!("{base}/sso-oidc/token"),
            }))
        }
        Err(e) => oidc_error(&req, &e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartDeviceBody {
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /sso-oidc/device_authorization` (`StartDeviceAuthorization`).
pub async fn start_device_authorization(
    req: HttpRequest,
    body: web::Json<StartDeviceBody>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ctx = request_context(&req, &state);
    let Some(client_id) = body.client_id.as_deref() else {
        return oidc_error(&req, &OAuthError::invalid_request("clientId is missing"));
    };
    match state
        .access
        .start_device_authorization(
            client_id,
            body.client_secret.as_deref(),
            Some("an AWS SDK"),
            &ctx,
        )
        .await
    {
        Ok(d) => ok(json!({
            "deviceCode": d.device_code,
            "userCode": d.user_code,
            "verificationUri": d.verification_uri,
            "verificationUriComplete": d.verification_uri_complete,
            "expiresIn": d.expires_in,
            "interval": d.interval,
        })),
        Err(e) => oidc_error(&req, &e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenBody {
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
    device_code: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

/// `POST /sso-oidc/token` (`CreateToken`): the body's camelCase fields as the OAuth
/// parameters they are, through the core's one grant dispatch.
pub async fn create_token(
    req: HttpRequest,
    body: web::Json<CreateTokenBody>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ctx = request_context(&req, &state);
    let b = body.into_inner();
    let pairs: Vec<(String, String)> = [
        ("client_id", b.client_id),
        ("client_secret", b.client_secret),
        ("grant_type", b.grant_type),
        ("device_code", b.device_code),
        ("code", b.code),
        ("redirect_uri", b.redirect_uri),
        ("code_verifier", b.code_verifier),
        ("refresh_token", b.refresh_token),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect();
    let params = match OAuthParams::from_pairs(pairs) {
        Ok(p) => p,
        Err(e) => return oidc_error(&req, &e),
    };
    let mut url = String::new();
    let proof = dpop_proof(&req, &state, &mut url);
    match state
        .access
        .token_grant(TokenEndpoint::SsoOidc, &params, proof, &ctx)
        .await
        .map(|g| g.into_inner())
    {
        Ok(Granted::Tokens(t)) => ok(json!({
            "accessToken": t.access_token,
            "tokenType": "Bearer",
            "expiresIn": t.expires_in,
            "refreshToken": t.refresh_token,
        })),
        Ok(Granted::Exchanged(_)) => oidc_error(
            &req,
            &OAuthError::new("unsupported_grant_type", "no token exchange here"),
        ),
        Err(e) => oidc_error(&req, &e),
    }
}

// ---- the SSO portal API -------------------------------------------------------------------

/// The login of the `x-amz-sso_bearer_token` header (through the core's one bearer rule:
/// a DPoP-bound token is refused here, where no proof can be sent), or the API's
/// `UnauthorizedException`.
async fn portal_grant(req: &HttpRequest, state: &AppState) -> Result<BearerGrant, HttpResponse> {
    let unauthorized = |m: &str| {
        aws_error(
            req,
            StatusCode::UNAUTHORIZED,
            "UnauthorizedException",
            "unauthorized",
            m,
        )
    };
    let mut url = String::new();
    let presented = presented_token(req, state, &mut url, true);
    let ctx = request_context(req, state);
    match state.access.authenticate(&presented, &ctx).await {
        Ok(g) => Ok(g),
        Err(BearerError::Missing) => {
            Err(unauthorized("the x-amz-sso_bearer_token header is missing"))
        }
        Err(BearerError::RateLimited {
            description,
            retry_after,
        }) => {
            let mut res = aws_error(
                req,
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                "rate_limited",
                &description,
            );
            if let Ok(v) = retry_after.to_string().parse() {
                res.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            Err(res)
        }
        Err(BearerError::Unavailable) => Err(oidc_error(req, &OAuthError::unavailable())),
        Err(BearerError::Locked(m)) => Err(aws_error(
            req,
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "access_locked",
            &m,
        )),
        Err(BearerError::Invalid { .. } | BearerError::InvalidProof(_)) => Err(unauthorized(
            "the session token is invalid, expired or revoked",
        )),
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    next_token: Option<String>,
    max_result: Option<usize>,
    account_id: Option<String>,
    role_name: Option<String>,
}

/// One page of `items`: paging by offset, the token is the next offset in base64.
fn page<T: Clone>(items: &[T], q: &PageQuery) -> Result<(Vec<T>, Option<String>), ()> {
    use base64::Engine as _;
    let start = match &q.next_token {
        None => 0,
        Some(t) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or(())?,
    };
    let size = q.max_result.unwrap_or(100).clamp(1, 100);
    let end = (start + size).min(items.len());
    let next = (end < items.len())
        .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(end.to_string()));
    Ok((items[start..end].to_vec(), next))
}

/// One page of `items` as `{ field: [...], "nextToken": ... }`, or the API's error for a
/// bad `next_token`.
fn paged_reply(
    req: &HttpRequest,
    items: &[serde_json::Value],
    q: &PageQuery,
    field: &str,
) -> HttpResponse {
    match page(items, q) {
        Ok((list, next)) => ok(json!({ field: list, "nextToken": next })),
        Err(()) => aws_error(
            req,
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            "invalid_request",
            "nextToken is not valid",
        ),
    }
}

/// `GET /sso-portal/assignment/accounts` (`ListAccounts`): accounts where the rules grant
/// at least one role.
pub async fn list_accounts(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match portal_grant(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let menu = state.access.role_menu(&grant.identity);
    let accounts: Vec<serde_json::Value> = menu
        .accounts
        .iter()
        .map(|a| json!({ "accountId": a.number.as_str(), "accountName": a.display_name }))
        .collect();
    paged_reply(&req, &accounts, &q, "accountList")
}

/// `GET /sso-portal/assignment/roles?account_id=…` (`ListAccountRoles`).
pub async fn list_account_roles(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match portal_grant(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let Some(account) = q.account_id.as_deref() else {
        return aws_error(
            &req,
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            "invalid_request",
            "account_id is missing",
        );
    };
    let menu = state.access.role_menu(&grant.identity);
    let roles: Vec<serde_json::Value> = menu
        .accounts
        .iter()
        .filter(|a| a.number.as_str() == account)
        .flat_map(|a| {
            a.roles
                .iter()
                .map(move |r| json!({ "roleName": r.id.as_str(), "accountId": a.number.as_str() }))
        })
        .collect();
    paged_reply(&req, &roles, &q, "roleList")
}

/// `GET /sso-portal/federation/credentials?role_name=…&account_id=…` (`GetRoleCredentials`):
/// through the access core (rules evaluated now, audited, client path `cli`).
pub async fn get_role_credentials(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let grant = match portal_grant(&req, &state).await {
        Ok(g) => g,
        Err(res) => return res,
    };
    let (Some(role), Some(account)) = (q.role_name.as_deref(), q.account_id.as_deref()) else {
        return aws_error(
            &req,
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            "invalid_request",
            "role_name and account_id are required",
        );
    };
    let ctx: RequestContext = request_context(&req, &state);
    // The service model has no ForbiddenException (real Identity Center answers one
    // anyway): a role the rules do not grant is, to this person, a role that does not exist.
    let not_granted = || {
        aws_error(
            &req,
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "not_found",
            &format!("No access: the rules do not grant role {role} in account {account}"),
        )
    };
    match state
        .access
        .issue_credentials_in_account(&grant.identity, role, account, &grant.requester, &ctx)
        .await
    {
        Ok(issued) => {
            use secrecy::ExposeSecret;
            let issued = issued.into_inner();
            let c = &issued.credentials;
            let millis = c
                .expiration
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            ok(json!({ "roleCredentials": {
                "accessKeyId": c.access_key_id,
                "secretAccessKey": c.secret_access_key.expose_secret(),
                "sessionToken": c.session_token.expose_secret(),
                "expiration": millis,
            }}))
        }
        Err(IssueFailure::Refused(_)) => not_granted(),
        Err(_) => aws_error(
            &req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "internal",
            // Details stay in the log and audit record, not in the reply.
            "the credentials could not be issued now; try again shortly",
        ),
    }
}

/// `POST /sso-portal/logout` (`Logout`): ends the login the token belongs to.
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(token) = req
        .headers()
        .get("x-amz-sso_bearer_token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return aws_error(
            &req,
            StatusCode::UNAUTHORIZED,
            "UnauthorizedException",
            "unauthorized",
            "the x-amz-sso_bearer_token header is missing",
        );
    };
    let ctx = request_context(&req, &state);
    match state.access.end_login(token.trim(), &ctx).await {
        Ok(true) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .finish(),
        Ok(false) => aws_error(
            &req,
            StatusCode::UNAUTHORIZED,
            "UnauthorizedException",
            "unauthorized",
            "the session token is invalid, expired or revoked",
        ),
        Err(e) => oidc_error(&req, &e),
    }
}
