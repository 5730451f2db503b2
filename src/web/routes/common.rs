//! What the page routes share: rendering, redirects, the sign-in page, the approval page
//! of a CLI or SDK login, the page for each sign-in failure, and the responses that start
//! and end a sign-in (cookies included). Route modules import this, never each other.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use serde::Deserialize;

use super::fallback::request_id;
use crate::access::login::LOGIN_TTL;
use crate::access::{LoginRedirect, SignInError, SignedIn};
use crate::config::Config;
use crate::web::pages::{ApprovePage, IdpLink, SignInPage};
use crate::web::{AppState, PageError, cookies};

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body)
}

pub fn render<T: Template>(page: T, req: &HttpRequest) -> Result<HttpResponse, PageError> {
    page.render().map(html).map_err(|e| {
        tracing::error!(error = %e, "template failed to render");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The page could not be shown.",
            &request_id(req),
        )
    })
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

pub fn store_down(req: &HttpRequest, e: impl std::fmt::Display) -> PageError {
    // The store logs the outage once (store::outage); a line per refused request here
    // would flood the log while it lasts.
    tracing::debug!(error = %e, "refused: state store unavailable");
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "rolegate cannot reach its session store right now, so nobody can sign in. Try again in a minute.",
        &request_id(req),
    )
}

/// The redirect to the IdP that starts a sign-in, with the browser-binding cookie.
pub fn redirect_to_idp(config: &Config, started: LoginRedirect) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, started.url.as_str()))
        .insert_header((CACHE_CONTROL, "no-store"))
        .cookie(cookies::cookie(
            config,
            cookies::login_cookie_name(config),
            started.binding,
            Some(LOGIN_TTL),
        ))
        .finish()
}

/// The end of every sign-in: the new session cookie, the login cookie removed, and the
/// role picker (or the CLI page the sign-in was started for).
pub fn signed_in(config: &Config, done: SignedIn) -> HttpResponse {
    let session = done.session;
    HttpResponse::SeeOther()
        .insert_header((LOCATION, done.return_to.as_deref().unwrap_or("/")))
        .insert_header((CACHE_CONTROL, "no-store"))
        .cookie(cookies::cookie(
            config,
            cookies::session_cookie_name(config),
            session.id,
            None,
        ))
        .cookie(cookies::removal_cookie(
            config,
            cookies::login_cookie_name(config),
        ))
        .finish()
}

/// The page for a sign-in that did not complete: status, title and message per reason.
pub fn sign_in_failed(req: &HttpRequest, e: &SignInError) -> PageError {
    use crate::access::login::SamlRefusal as S;
    let id = request_id(req);
    let page = |status, title: &str, message: &str| PageError::new(status, title, message, &id);
    let expired = "This sign-in is unknown, expired or was already used. Start again.";
    match e {
        SignInError::UnknownIdp => page(
            StatusCode::NOT_FOUND,
            "Unknown sign-in",
            "There is no such sign-in option.",
        ),
        SignInError::IdpUnavailable { idp_name } => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in temporarily unavailable",
            &format!("{idp_name} cannot be reached right now. Try again in a minute."),
        ),
        SignInError::StoreUnavailable => store_down(req, e),
        SignInError::Locked(l) if l.by_directory() => page(
            StatusCode::FORBIDDEN,
            "Account deactivated",
            "Your account is deactivated at your identity provider, so rolegate gives it no access. Ask your IT team if this is a mistake.",
        ),
        SignInError::Locked(_) => page(
            StatusCode::FORBIDDEN,
            "Access locked",
            "Your access to AWS through rolegate is locked. Ask an administrator.",
        ),
        SignInError::AuditUnavailable => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable",
            "rolegate cannot write its audit log, so nobody can sign in right now.",
        ),
        SignInError::MissingState => page(
            StatusCode::BAD_REQUEST,
            "Sign-in link incomplete",
            "The sign-in response has no state. Start again.",
        ),
        SignInError::UnknownState => page(StatusCode::BAD_REQUEST, "Sign-in expired", expired),
        SignInError::BindingMismatch => page(
            StatusCode::BAD_REQUEST,
            "Sign-in started elsewhere",
            "This sign-in was started in another browser. Start again here.",
        ),
        SignInError::IdpGone => page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in option no longer exists. Start again.",
        ),
        SignInError::WrongCallbackPath => page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in response arrived at the wrong address. Start again.",
        ),
        SignInError::IdpError { idp_name, code } => page(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            &format!("{idp_name} did not sign you in ({code})."),
        ),
        SignInError::MissingCode => page(
            StatusCode::BAD_REQUEST,
            "Sign-in link incomplete",
            "The sign-in response has no code. Start again.",
        ),
        SignInError::Oidc(e) => {
            let (status, msg) = if e.is_unavailable() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The identity provider cannot be reached right now.",
                )
            } else if e.is_upstream_failure() {
                (
                    StatusCode::BAD_GATEWAY,
                    "The identity provider did not complete the sign-in.",
                )
            } else {
                // What is wrong with the IdP's answer helps the person (and whoever they
                // ask) and holds no secret: the token itself is never printed.
                return page(
                    StatusCode::FORBIDDEN,
                    "Sign-in failed",
                    &format!("The sign-in could not be verified: {e}."),
                );
            };
            page(status, "Sign-in failed", msg)
        }
        SignInError::Saml(e) => {
            let (status, message) = match S::of(e) {
                S::StoreUnavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is unavailable right now. Try again in a minute.",
                ),
                S::IdpUnavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "This sign-in option is not available right now.",
                ),
                S::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The sign-in response is too large.",
                ),
                S::UnknownRequest => (StatusCode::BAD_REQUEST, expired),
                S::Replay => (
                    StatusCode::BAD_REQUEST,
                    "This sign-in response was already used. Start again.",
                ),
                S::Malformed => (
                    StatusCode::BAD_REQUEST,
                    "The sign-in response is not a valid SAML response. Start again.",
                ),
                S::NotVerified => (
                    StatusCode::FORBIDDEN,
                    "The sign-in response could not be verified. Start again.",
                ),
            };
            page(status, "Sign-in failed", message)
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
    /// Requested session length (role actions only): seconds or e.g. `1h`; default: the
    /// maximum.
    pub duration: Option<String>,
    /// Where the console should land (console action only): a console URL, or a service
    /// and region; default: the role's destination.
    pub destination: Option<String>,
    pub service: Option<String>,
    pub region: Option<String>,
}

/// The sign-in page (or, with one IdP, straight to it), coming back to `return_to`.
pub fn sign_in_page(
    req: &HttpRequest,
    state: &AppState,
    return_to: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let query = return_to
        .map(|r| {
            format!(
                "?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", r)
                    .finish()
            )
        })
        .unwrap_or_default();
    let idps = &state.config().idps;
    if idps.len() == 1 {
        return Ok(see_other(&format!("/login/{}{query}", idps[0].id)));
    }
    let idps = idps
        .iter()
        .map(|i| IdpLink {
            id: i.id.as_str(),
            display_name: &i.display_name,
        })
        .collect();
    render(SignInPage { idps, query }, req)
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

/// "until 14:05 UTC (37 min left)".
pub fn time_left(until: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(until),
    )
    .to_string();
    let hm = at.get(11..16).unwrap_or("");
    let left = until.saturating_sub(now);
    if left >= 120 {
        format!("until {hm} UTC ({} min left)", left / 60)
    } else {
        format!("until {hm} UTC ({left} s left)")
    }
}

/// A request as a row of the picker or the approvers' page.
pub fn request_row(r: &crate::access::elevation::RequestView) -> crate::web::pages::RequestRow {
    let running = r.status == "approved"
        && r.until.is_some_and(|u| {
            u > std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let detail = match r.status {
        "approved" if running => time_left(r.until.unwrap_or(0)),
        "approved" => "over".to_owned(),
        "pending" => format!("{} of {} approvals", r.approvals.len(), r.approvals_needed),
        _ => r
            .decided_by
            .as_ref()
            .map(|d| {
                format!(
                    "by {d}{}",
                    r.comment
                        .as_ref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default(),
    };
    crate::web::pages::RequestRow {
        id: r.id.clone(),
        role: r.role.clone(),
        requester: r.requester.clone(),
        status: if running {
            "running".into()
        } else if r.status == "approved" {
            "over".into()
        } else {
            r.status.to_owned()
        },
        length: humantime::format_duration(std::time::Duration::from_secs(r.seconds)).to_string(),
        reason: r.reason.clone(),
        ticket: r.ticket.clone().unwrap_or_default(),
        detail,
        can_end: running,
    }
}
