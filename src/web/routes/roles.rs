//! The role actions of the role picker: "Console" (a redirect into the AWS console) and
//! "CLI credentials" (a page with the credentials in every form a shell or tool takes).
//! Authorization and issuance are the access core's; this module reads the form and
//! renders the answer.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};

use super::common::{CsrfForm, render, sign_in_page};
use super::fallback::request_id;
use crate::access::issuer::{ConsoleAsk, IssueFailure};
use crate::access::{ClientPath, IssuedCredentials, Requester};
use crate::credential_formats::{self as formats, CredentialFormat, FormatOptions};
use crate::web::extract::{MaybeSession, SignedIn, check_csrf};
use crate::web::pages::{ConsoleConfirmPage, CredentialsPage};
use crate::web::{AppState, PageError, request_context};

/// `POST /roles/{role}/{console|credentials}`: checks session and CSRF, then asks the
/// access core for a console sign-in or credentials.
pub async fn role_action(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    SignedIn(s): SignedIn,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    let (role, action) = path.into_inner();
    let id = request_id(&req);
    let ctx = request_context(&req, &state);
    if action == "console" {
        let ask = ConsoleAsk::from_fields(
            form.destination.as_deref(),
            form.service.as_deref(),
            form.region.as_deref(),
        );
        let url = state
            .access
            .console_sign_in(
                &s.identity,
                &role,
                form.duration.as_deref(),
                &ask,
                &Requester::web(ClientPath::WebConsole),
                &ctx,
            )
            .await
            .map_err(|e| issue_failed(&e, &id))?
            .into_inner();
        return Ok(HttpResponse::Found()
            .insert_header((LOCATION, url.as_str()))
            .insert_header((CACHE_CONTROL, "no-store"))
            .finish());
    }
    let creds = state
        .access
        .issue_credentials(
            &s.identity,
            &role,
            form.duration.as_deref(),
            &Requester::web(ClientPath::WebCli),
            &ctx,
        )
        .await
        .map_err(|e| issue_failed(&e, &id))?
        .into_inner();
    credentials_page(&req, &state, &role, &creds, &id)
}

#[derive(serde::Deserialize)]
pub struct ShortcutQuery {
    destination: Option<String>,
    service: Option<String>,
    region: Option<String>,
}

/// `GET /console/{role}?destination=…` (or `?service=s3&region=eu-west-1`): a bookmarkable
/// link into the console. Signs the person in first if needed (coming back here), checks
/// the destination (a disallowed one is a 400 page, never a redirect), and shows a
/// confirmation whose button posts the role action: a GET never issues credentials.
pub async fn shortcut(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ShortcutQuery>,
    MaybeSession(session): MaybeSession,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let Some(s) = session else {
        // Re-encoded, so a destination typed with a literal `//` survives the sign-in.
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("destination", &query.destination),
            ("service", &query.service),
            ("region", &query.region),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        let here = format!("{}?{}", req.path(), q.finish());
        return sign_in_page(&req, &state, Some(here.trim_end_matches('?')));
    };
    let role = path.into_inner();
    let id = request_id(&req);
    let ask = ConsoleAsk::from_fields(
        query.destination.as_deref(),
        query.service.as_deref(),
        query.region.as_deref(),
    );
    let landing = state.access.console_landing(&role, &ask).map_err(|r| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Console destination not allowed",
            format!("{}.", capitalize(&r.to_string())),
            &id,
        )
    })?;
    let details = state.access.role_details(&role);
    render(
        ConsoleConfirmPage {
            csrf: &s.csrf,
            role: &role,
            role_name: details.as_ref().map(|d| d.display_name).unwrap_or(&role),
            account_name: details
                .as_ref()
                .map(|d| d.account_name.as_str())
                .unwrap_or(""),
            account_number: details.as_ref().map(|d| d.account_number).unwrap_or(""),
            landing: landing.as_str(),
            destination: query.destination.as_deref().unwrap_or(""),
            service: query.service.as_deref().unwrap_or(""),
            region: query.region.as_deref().unwrap_or(""),
        },
        &req,
    )
}

/// The page for a request that ended without credentials.
fn issue_failed(e: &IssueFailure, request_id: &str) -> PageError {
    match e {
        IssueFailure::Refused(r @ crate::access::Refusal::ConsoleDestination(_)) => PageError::new(
            StatusCode::BAD_REQUEST,
            "Console destination not allowed",
            format!("{}.", capitalize(&r.to_string())),
            request_id,
        ),
        IssueFailure::Refused(r) if r.is_bad_request() => PageError::new(
            StatusCode::BAD_REQUEST,
            "Session too long",
            format!("{r}."),
            request_id,
        ),
        IssueFailure::Refused(crate::access::Refusal::Locked { .. }) => PageError::new(
            StatusCode::FORBIDDEN,
            "Access locked",
            "Access to this role is locked. Ask an administrator.",
            request_id,
        ),
        IssueFailure::Refused(r @ crate::access::Refusal::ElevationEnding { .. }) => {
            PageError::new(
                StatusCode::FORBIDDEN,
                "Elevation ending",
                format!("{}.", capitalize(&r.to_string())),
                request_id,
            )
        }
        // Unknown, not granted and denied read the same: a person learns nothing about
        // roles they may not use.
        IssueFailure::Refused(_) => PageError::new(
            StatusCode::FORBIDDEN,
            "Role not available",
            "You are not allowed to use this role.",
            request_id,
        ),
        IssueFailure::AuditUnavailable => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No credentials issued",
            "rolegate cannot write its audit log, so no credentials are issued right now.",
            request_id,
        ),
        IssueFailure::StoreUnavailable => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No credentials issued",
            "rolegate cannot reach its state store, so no credentials are issued right now.",
            request_id,
        ),
        IssueFailure::Console(e) => PageError::new(
            StatusCode::BAD_GATEWAY,
            "Console sign-in failed",
            format!("{e}. Try again."),
            request_id,
        ),
        IssueFailure::Sts(e) => {
            let status = if e.is_access_denied() {
                StatusCode::FORBIDDEN
            } else if e.is_duration_refused() {
                StatusCode::BAD_REQUEST
            } else if e.is_unavailable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            let mut message = format!("AWS did not issue credentials: {e}.");
            if let Some(sts) = e.sts_request_id() {
                message.push_str(&format!(" AWS request id: {sts}."));
            }
            PageError::new(status, "No credentials issued", message, request_id)
        }
    }
}

fn credentials_page(
    req: &HttpRequest,
    state: &AppState,
    role: &str,
    issued: &IssuedCredentials,
    request_id: &str,
) -> Result<HttpResponse, PageError> {
    use secrecy::ExposeSecret;
    let details = state.access.role_details(role);
    let creds = &issued.credentials;
    let expiration = formats::expiration(creds);
    let left = creds
        .expiration
        .duration_since(std::time::SystemTime::now())
        .map(|d| std::time::Duration::from_secs(d.as_secs() / 60 * 60))
        .unwrap_or_default();
    let time_left = humantime::format_duration(left).to_string();
    let profile = format!("rolegate-{role}");
    let options = FormatOptions {
        region: Some(&state.config().aws.region),
        profile: &profile,
    };
    let block = |f: CredentialFormat| formats::render(f, creds, &options);
    let page = CredentialsPage {
        role_name: details.as_ref().map(|d| d.display_name).unwrap_or(role),
        account_name: details
            .as_ref()
            .map(|d| d.account_name.as_str())
            .unwrap_or(""),
        account_number: details.as_ref().map(|d| d.account_number).unwrap_or(""),
        assumed_role_arn: &issued.assumed_role_arn,
        access_key_id: &creds.access_key_id,
        secret_access_key: creds.secret_access_key.expose_secret(),
        session_token: creds.session_token.expose_secret(),
        expiration: &expiration,
        time_left: &time_left,
        profile: &profile,
        bash: &block(CredentialFormat::Bash),
        fish: &block(CredentialFormat::Fish),
        powershell: &block(CredentialFormat::PowerShell),
        credentials_file: &block(CredentialFormat::CredentialsFile),
        credential_process: &block(CredentialFormat::CredentialProcess),
        request_id,
    };
    render(page, req)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
