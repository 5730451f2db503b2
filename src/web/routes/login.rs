//! The browser sign-in path: the sign-in page (or the role picker once signed in), login
//! start, the OIDC callback and logout. The protocol work is the access core's
//! (`access::login`); these handlers read the request, call it, and answer.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::common::{
    CsrfForm, redirect_to_idp, render, request_row, sign_in_failed, sign_in_page, signed_in,
    store_down, time_left,
};
use crate::access::Session;
use crate::access::login::OidcCallback;
use crate::web::extract::{MaybeSession, SignedIn, check_csrf};
use crate::web::pages::{AccountGroup, RoleEntry, RolePickerPage, SignedOutPage, duration_choices};
use crate::web::{AppState, PageError, cookies, request_context};

/// `GET /`: the role picker when signed in; otherwise the sign-in page (or straight to
/// the IdP when only one is configured).
pub async fn home(
    req: HttpRequest,
    session: MaybeSession,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    match session.0 {
        Some(s) => role_picker(&req, &state, &s).await,
        None => sign_in_page(&req, &state, None),
    }
}

async fn role_picker(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
) -> Result<HttpResponse, PageError> {
    let identity = s.identity.claims();
    let menu = state.access.role_menu(&s.identity);
    let accounts = menu
        .accounts
        .iter()
        .map(|a| AccountGroup {
            display_name: a.display_name.clone(),
            number: a.number.to_string(),
            roles: a
                .roles
                .iter()
                .map(|r| RoleEntry {
                    id: r.id.to_string(),
                    display_name: r.display_name.clone(),
                    arn: r.arn.to_string(),
                    max_duration: r.max_duration.to_string(),
                    durations: duration_choices(r.max_duration.as_secs()),
                    elevated: r.elevated_until.map(time_left),
                })
                .collect(),
        })
        .collect();
    let eligible = state
        .access
        .eligible_roles(&s.identity)
        .into_iter()
        .map(|e| crate::web::pages::EligibleRow {
            id: e.role,
            display_name: e.display_name,
            max: humantime::format_duration(std::time::Duration::from_secs(e.max_seconds))
                .to_string(),
            reason_required: e.reason_required,
            ticket_pattern: e.ticket_pattern,
            break_glass: e.break_glass,
            approvers: e.approvers,
        })
        .collect();
    let requests = state
        .access
        .my_requests(&s.identity)
        .await
        .map_err(|e| store_down(req, e))?
        .into_iter()
        .take(10)
        .map(|r| request_row(&r))
        .collect();
    let to_decide = state
        .access
        .approvable(&s.identity)
        .await
        .map(|l| l.len())
        .unwrap_or(0);
    let idp_name = state
        .config()
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
            is_admin: state.access.admin_check(&s.identity)
                == crate::access::administrators::AdminCheck::Admin,
            eligible,
            requests,
            to_decide,
            notice: notice_of(req),
            console_services: crate::domain::CONSOLE_SERVICES
                .iter()
                .map(|(name, ..)| *name)
                .collect(),
        },
        req,
    )
}

fn notice_of(req: &HttpRequest) -> Option<String> {
    let q = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(match q.as_str() {
        "requested" => "Your request was sent: the approvers are told.".into(),
        "elevated" => "Granted: the role is yours for the time you asked.".into(),
        "ended" => "The elevation ended.".into(),
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct StartQuery {
    return_to: Option<String>,
}

/// `GET /login/{idp}`: starts a sign-in at that IdP (OIDC or SAML); `return_to` (a CLI
/// page, checked by the core) is where the browser goes afterwards.
pub async fn start(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    match state
        .access
        .start_login(&path, query.return_to.as_deref())
        .await
    {
        Ok(started) => Ok(redirect_to_idp(state.config(), started)),
        Err(e) => Err(sign_in_failed(&req, &e)),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// The OIDC redirect URI(s). The IdP this callback belongs to comes from the stored
/// state, never from the request.
pub async fn callback(
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let config = state.config();
    let cb = OidcCallback {
        path: req.path(),
        state: query.state.as_deref(),
        code: query.code.as_deref(),
        iss: query.iss.as_deref(),
        error: query.error.as_deref(),
    };
    let binding = cookies::login_binding(&req, config);
    let previous = cookies::session_id(&req, config);
    let ctx = request_context(&req, &state);
    match state
        .access
        .finish_oidc_login(&cb, binding.as_deref(), previous.as_deref(), &ctx)
        .await
    {
        Ok(session) => Ok(signed_in(config, session.into_inner())),
        Err(e) => Err(sign_in_failed(&req, &e)),
    }
}

/// `POST /logout`: deletes the session and clears the cookie.
pub async fn logout(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    state
        .access
        .end_session(&s.id)
        .await
        .map_err(|e| store_down(&req, e))?;
    let idp_logout_url = state
        .access
        .idp_logout_url(s.identity.claims().idp.as_str());
    let mut res = render(SignedOutPage { idp_logout_url }, &req)?;
    let config = state.config();
    let _ = res.add_cookie(&cookies::removal_cookie(
        config,
        cookies::session_cookie_name(config),
    ));
    Ok(res)
}
