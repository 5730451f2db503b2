//! The browser sign-in path: sign-in page, OIDC login start and callback, the role
//! picker, logout, and the role action forms.
//!
//! Login state (`state`, nonce, PKCE verifier, the IdP, a browser-binding value) is kept
//! server-side under the random `state` for 10 minutes and consumed atomically by the
//! callback: single use, and a store failure means nobody gets in.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::fallback::request_id;
use crate::audit::{LoginEvent, Outcome};
use crate::domain::SessionDuration;
use crate::idp::{self, LoginError, oidc::OidcError};
use crate::sts::{ClientPath, IssueError, IssueRequest, IssuedCredentials};
use crate::web::pages::{
    AccountGroup, CredentialsPage, IdpLink, RoleEntry, RolePickerPage, SignInPage, SignedOutPage,
};
use crate::web::session::{self, Session};
use crate::web::{AppState, PageError, request_context};

pub(super) const LOGIN_TTL: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize)]
struct PendingLogin {
    idp: String,
    nonce: String,
    pkce_verifier: String,
    /// Equals the login cookie of the browser that started the login.
    binding: String,
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body)
}

pub(super) fn render<T: Template>(page: T, req: &HttpRequest) -> Result<HttpResponse, PageError> {
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

pub(super) fn store_down(req: &HttpRequest, e: impl std::fmt::Display) -> PageError {
    tracing::error!(error = %e, "state store unavailable");
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "rolegate cannot reach its session store right now, so nobody can sign in. Try again in a minute.",
        &request_id(req),
    )
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// Writes the login audit record. A failure to audit a *successful* login is returned
/// so the caller refuses the session; for failures it is logged (nothing is granted).
pub(super) fn audit_login(
    req: &HttpRequest,
    state: &AppState,
    idp: &str,
    subject: &str,
    outcome: Outcome,
    reason: &str,
) -> Result<(), crate::audit::AuditError> {
    let ctx = request_context(req, state);
    tracing::info!(
        idp,
        subject,
        outcome = outcome.as_str(),
        reason,
        "login {}",
        outcome.as_str()
    );
    state.audit.login(
        &ctx,
        &LoginEvent {
            idp,
            subject,
            outcome,
            reason,
        },
    )
}

/// `GET /`: the role picker when signed in; otherwise the sign-in page (or straight to
/// the IdP when only one is configured).
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    match session::load(&req, &state.store, &state.config)
        .await
        .map_err(|e| store_down(&req, e))?
    {
        Some(s) => role_picker(&req, &state, &s),
        None => {
            let usable: Vec<_> = state.config.idps.iter().collect();
            if usable.len() == 1 {
                return Ok(see_other(&format!("/login/{}", usable[0].id)));
            }
            let idps = usable
                .iter()
                .map(|i| IdpLink {
                    id: i.id.as_str(),
                    display_name: &i.display_name,
                })
                .collect();
            render(SignInPage { idps }, &req)
        }
    }
}

fn role_picker(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
) -> Result<HttpResponse, PageError> {
    let config = &state.config;
    let identity = s.identity.claims();
    let evaluation = config.rules.evaluate(identity);
    let mut accounts: Vec<AccountGroup> = Vec::new();
    for account in &config.accounts {
        let roles: Vec<RoleEntry> = config
            .roles
            .iter()
            .filter(|r| r.account == account.id)
            .filter_map(|r| {
                evaluation.grant(r.id.as_str()).map(|g| RoleEntry {
                    id: r.id.to_string(),
                    display_name: r.display_name.clone(),
                    arn: r.arn.to_string(),
                    max_duration: g.max_duration.to_string(),
                })
            })
            .collect();
        if !roles.is_empty() {
            accounts.push(AccountGroup {
                display_name: account.display_name.clone(),
                number: account.number.to_string(),
                roles,
            });
        }
    }
    let idp_name = config
        .idp(identity.idp.as_str())
        .map(|i| i.display_name.as_str())
        .unwrap_or("your IdP");
    render(
        RolePickerPage {
            username: &identity.username,
            idp_name,
            accounts,
            groups: identity.groups.iter().map(|g| g.as_str()).collect(),
            csrf: &s.csrf,
        },
        req,
    )
}

/// `GET /login/{idp}`: starts an OIDC login at that IdP.
pub async fn start(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = request_id(&req);
    if let Some(provider) = state
        .saml
        .iter()
        .find(|p| p.idp.id.as_str() == path.as_str())
    {
        return super::saml::start(&req, &state, provider).await;
    }
    let Some(provider) = state
        .oidc
        .iter()
        .find(|p| p.idp.id.as_str() == path.as_str())
    else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Unknown sign-in",
            "There is no such sign-in option.",
            &id,
        ));
    };
    let login_state = session::random_token();
    let nonce = session::random_token();
    let binding = session::random_token();
    let started = provider
        .start(&login_state, &nonce)
        .map_err(|e| idp_unavailable(&req, &provider.idp.display_name, &e))?;
    let pending = PendingLogin {
        idp: provider.idp.id.to_string(),
        nonce,
        pkce_verifier: started.pkce_verifier,
        binding: binding.clone(),
    };
    redirect_to_idp(
        &req,
        &state,
        &format!("oidc:state:{login_state}"),
        &pending,
        binding,
        started.authorize_url.as_str(),
    )
    .await
}

/// The page for an IdP that cannot be used right now (discovery or metadata not loaded).
pub(super) fn idp_unavailable(
    req: &HttpRequest,
    display_name: &str,
    e: &dyn std::fmt::Display,
) -> PageError {
    tracing::warn!(idp = display_name, error = %e, "sign-in started while the IdP is unavailable");
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in temporarily unavailable",
        format!("{display_name} cannot be reached right now. Try again in a minute."),
        &request_id(req),
    )
}

/// The shared end of every sign-in start: the pending login stored under `key` for
/// LOGIN_TTL (consumed atomically on return), the browser-binding cookie set, and a
/// redirect to the IdP.
pub(super) async fn redirect_to_idp<T: Serialize>(
    req: &HttpRequest,
    state: &AppState,
    key: &str,
    pending: &T,
    binding: String,
    url: &str,
) -> Result<HttpResponse, PageError> {
    let json = serde_json::to_string(pending).map_err(|e| store_down(req, e))?;
    state
        .store
        .put(key, &json, LOGIN_TTL)
        .await
        .map_err(|e| store_down(req, e))?;
    let config = &state.config;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, url))
        .insert_header((CACHE_CONTROL, "no-store"))
        .cookie(session::cookie(
            config,
            session::login_cookie_name(config),
            binding,
            Some(LOGIN_TTL),
        ))
        .finish())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

fn login_failed(req: &HttpRequest, status: StatusCode, title: &str, message: &str) -> PageError {
    PageError::new(status, title, message, &request_id(req))
}

/// The OIDC redirect URI(s). The IdP this callback belongs to comes from the stored
/// state, never from the request.
pub async fn callback(
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let config = &state.config;
    let fail = |idp: &str, status, title: &str, message: &str, reason: &str| {
        if let Err(e) = audit_login(&req, &state, idp, "", Outcome::Failure, reason) {
            tracing::error!(error = %e, "audit log write failed");
        }
        login_failed(&req, status, title, message)
    };
    let Some(login_state) = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return Err(fail(
            "",
            StatusCode::BAD_REQUEST,
            "Sign-in link incomplete",
            "The sign-in response has no state. Start again.",
            "missing state",
        ));
    };
    let pending = state
        .store
        .take(&format!("oidc:state:{login_state}"))
        .await
        .map_err(|e| store_down(&req, e))?;
    let Some(pending) = pending else {
        return Err(fail(
            "",
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in is unknown, expired or was already used. Start again.",
            "unknown or replayed state",
        ));
    };
    let pending: PendingLogin = serde_json::from_str(&pending).map_err(|e| store_down(&req, e))?;
    let binding = req
        .cookie(session::login_cookie_name(config))
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !session::tokens_match(&binding, &pending.binding) {
        return Err(fail(
            &pending.idp,
            StatusCode::BAD_REQUEST,
            "Sign-in started elsewhere",
            "This sign-in was started in another browser. Start again here.",
            "browser binding mismatch",
        ));
    }
    let Some(provider) = state.oidc.iter().find(|p| p.idp.id.as_str() == pending.idp) else {
        return Err(fail(
            &pending.idp,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in option no longer exists. Start again.",
            "IdP no longer configured",
        ));
    };
    if req.path() != provider.redirect_path() {
        return Err(fail(
            &pending.idp,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in response arrived at the wrong address. Start again.",
            "callback path is not this IdP's",
        ));
    }
    if let Some(error) = &query.error {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(fail(
            &pending.idp,
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            &format!(
                "{} did not sign you in ({code}).",
                provider.idp.display_name
            ),
            &format!("IdP returned error {code}"),
        ));
    }
    let Some(code) = query.code.as_deref() else {
        return Err(fail(
            &pending.idp,
            StatusCode::BAD_REQUEST,
            "Sign-in link incomplete",
            "The sign-in response has no code. Start again.",
            "missing code",
        ));
    };
    let identity = match idp::finish_oidc_login(
        provider,
        code,
        &pending.pkce_verifier,
        &pending.nonce,
        query.iss.as_deref(),
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            let (status, msg) = match &e {
                LoginError::Oidc(OidcError::Unavailable) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The identity provider cannot be reached right now.",
                ),
                LoginError::Oidc(OidcError::TokenExchange(_))
                | LoginError::Oidc(OidcError::Userinfo(_)) => (
                    StatusCode::BAD_GATEWAY,
                    "The identity provider did not complete the sign-in.",
                ),
                _ => (StatusCode::FORBIDDEN, "The sign-in could not be verified."),
            };
            tracing::warn!(idp = %pending.idp, error = %e, "OIDC login rejected");
            return Err(fail(
                &pending.idp,
                status,
                "Sign-in failed",
                msg,
                &e.to_string(),
            ));
        }
    };
    // New session id at every sign-in; whatever session the browser had is discarded.
    if let Some(old) = req.cookie(session::cookie_name(config)) {
        let _ = session::destroy(&state.store, old.value()).await;
    }
    let subject = identity.claims().subject.clone();
    audit_login(&req, &state, &pending.idp, &subject, Outcome::Success, "").map_err(|e| {
        tracing::error!(error = %e, "audit log write failed; refusing the sign-in");
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable",
            "rolegate cannot write its audit log, so nobody can sign in right now.",
            &request_id(&req),
        )
    })?;
    let s = session::create(&state.store, config, identity)
        .await
        .map_err(|e| store_down(&req, e))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, "/"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .cookie(session::cookie(
            config,
            session::cookie_name(config),
            s.id,
            None,
        ))
        .cookie(session::removal_cookie(
            config,
            session::login_cookie_name(config),
        ))
        .finish())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
    /// Requested session length in seconds (role actions only); default: the maximum.
    duration: Option<String>,
}

async fn require_session_and_csrf(
    req: &HttpRequest,
    state: &AppState,
    form: &CsrfForm,
) -> Result<Session, PageError> {
    let id = request_id(req);
    let s = session::load(req, &state.store, &state.config)
        .await
        .map_err(|e| store_down(req, e))?
        .ok_or_else(|| {
            PageError::new(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Your session has ended. Sign in again.",
                &id,
            )
        })?;
    match &form.csrf {
        Some(t) if session::tokens_match(t, &s.csrf) => Ok(s),
        _ => {
            tracing::warn!("form posted without a valid CSRF token");
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was not sent from your rolegate page. Reload the page and try again.",
                &id,
            ))
        }
    }
}

/// `POST /logout`: deletes the session and clears the cookie.
pub async fn logout(
    req: HttpRequest,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let s = require_session_and_csrf(&req, &state, &form).await?;
    session::destroy(&state.store, &s.id)
        .await
        .map_err(|e| store_down(&req, e))?;
    let idp_logout_url = state
        .oidc
        .iter()
        .find(|p| p.idp.id == s.identity.claims().idp)
        .and_then(|p| p.end_session_url())
        .map(|u| u.to_string());
    let mut res = render(SignedOutPage { idp_logout_url }, &req)?;
    let _ = res.add_cookie(&session::removal_cookie(
        &state.config,
        session::cookie_name(&state.config),
    ));
    Ok(res)
}

/// `POST /roles/{role}/{console|credentials}`: the role actions. Checks session, CSRF and
/// that the mapping grants the role, then issues credentials through the one audited
/// issuer and either redirects into the AWS console or shows the CLI credentials page.
pub async fn role_action(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let s = require_session_and_csrf(&req, &state, &form).await?;
    let (role_id, action) = path.into_inner();
    let id = request_id(&req);
    let config = &state.config;
    let evaluation = config.rules.evaluate(s.identity.claims());
    let (Some(grant), Some(role)) = (evaluation.grant(&role_id), config.role(&role_id)) else {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Role not available",
            "You are not allowed to use this role.",
            &id,
        ));
    };
    let duration = match form.duration.as_deref().filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => {
            let parsed = d
                .parse::<u32>()
                .ok()
                .and_then(|secs| SessionDuration::from_secs(secs).ok());
            match parsed {
                Some(p) if p <= grant.max_duration => Some(p),
                _ => {
                    return Err(PageError::new(
                        StatusCode::BAD_REQUEST,
                        "Session too long",
                        format!(
                            "{} sessions can last at least 15m and at most {}.",
                            role.display_name, grant.max_duration
                        ),
                        &id,
                    ));
                }
            }
        }
    };
    let path = if action == "console" {
        ClientPath::WebConsole
    } else {
        ClientPath::WebCli
    };
    let ctx = request_context(&req, &state);
    let creds = state
        .issuer
        .issue(IssueRequest {
            identity: &s.identity,
            grant,
            role,
            duration,
            path,
            ctx: &ctx,
        })
        .await
        .map_err(|e| issue_failed(&e, &id))?;

    if path == ClientPath::WebConsole {
        let url = state
            .console
            .signin_url(&creds, &role.console_destination, grant.max_duration)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "console sign-in failed");
                PageError::new(
                    StatusCode::BAD_GATEWAY,
                    "Console sign-in failed",
                    format!("{e}. Try again."),
                    &id,
                )
            })?;
        return Ok(HttpResponse::Found()
            .insert_header((LOCATION, url.as_str()))
            .insert_header((CACHE_CONTROL, "no-store"))
            .finish());
    }
    credentials_page(&req, config, role, &creds, &id)
}

fn issue_failed(e: &IssueError, request_id: &str) -> PageError {
    let status = match e {
        IssueError::DurationTooLong { .. } => StatusCode::BAD_REQUEST,
        IssueError::AccessDenied { .. } => StatusCode::FORBIDDEN,
        e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut message = format!("AWS did not issue credentials: {e}.");
    if let Some(sts) = e.sts_request_id() {
        message.push_str(&format!(" AWS request id: {sts}."));
    }
    PageError::new(status, "No credentials issued", message, request_id)
}

fn credentials_page(
    req: &HttpRequest,
    config: &crate::config::Config,
    role: &crate::config::Role,
    creds: &IssuedCredentials,
    request_id: &str,
) -> Result<HttpResponse, PageError> {
    use secrecy::ExposeSecret;
    let (akid, secret, token) = (
        creds.access_key_id.as_str(),
        creds.secret_access_key.expose_secret(),
        creds.session_token.expose_secret(),
    );
    let expiration = humantime::format_rfc3339_seconds(creds.expiration).to_string();
    let left = creds
        .expiration
        .duration_since(std::time::SystemTime::now())
        .map(|d| std::time::Duration::from_secs(d.as_secs() / 60 * 60))
        .unwrap_or_default();
    let time_left = humantime::format_duration(left).to_string();
    let profile = format!("rolegate-{}", role.id);
    let bash = format!(
        "export AWS_ACCESS_KEY_ID=\"{akid}\"\nexport AWS_SECRET_ACCESS_KEY=\"{secret}\"\nexport AWS_SESSION_TOKEN=\"{token}\"\nexport AWS_CREDENTIAL_EXPIRATION=\"{expiration}\""
    );
    let fish = format!(
        "set -x AWS_ACCESS_KEY_ID \"{akid}\"\nset -x AWS_SECRET_ACCESS_KEY \"{secret}\"\nset -x AWS_SESSION_TOKEN \"{token}\"\nset -x AWS_CREDENTIAL_EXPIRATION \"{expiration}\""
    );
    let powershell = format!(
        "$Env:AWS_ACCESS_KEY_ID=\"{akid}\"\n$Env:AWS_SECRET_ACCESS_KEY=\"{secret}\"\n$Env:AWS_SESSION_TOKEN=\"{token}\"\n$Env:AWS_CREDENTIAL_EXPIRATION=\"{expiration}\""
    );
    let credentials_file = format!(
        "[{profile}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\naws_session_token = {token}\nregion = {}",
        config.aws.region
    );
    let credential_process = serde_json::to_string_pretty(&serde_json::json!({
        "Version": 1,
        "AccessKeyId": akid,
        "SecretAccessKey": secret,
        "SessionToken": token,
        "Expiration": expiration,
    }))
    .unwrap_or_default();
    let account = config.account(&role.account);
    let page = CredentialsPage {
        role_name: &role.display_name,
        account_name: account.map(|a| a.display_name.as_str()).unwrap_or(""),
        account_number: account.map(|a| a.number.as_str()).unwrap_or(""),
        assumed_role_arn: &creds.assumed_role_arn,
        access_key_id: akid,
        secret_access_key: secret,
        session_token: token,
        expiration: &expiration,
        time_left: &time_left,
        profile: &profile,
        bash: &bash,
        fish: &fish,
        powershell: &powershell,
        credentials_file: &credentials_file,
        credential_process: &credential_process,
        request_id,
    };
    render(page, req)
}
