//! The browser sign-in path: the sign-in page (or the role picker once signed in), login
//! start, the OIDC callback and logout. The protocol work is the access core's
//! (`access::login`); these handlers read the request, call it, and answer.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::common::{redirect_to_idp, render, see_other, sign_in_failed, signed_in, store_down};
use super::fallback::request_id;
use crate::access::login::OidcCallback;
use crate::access::{Session, tokens_match};
use crate::web::pages::{
    AccountGroup, IdpLink, RoleEntry, RolePickerPage, SignInPage, SignedOutPage, duration_choices,
};
use crate::web::{AppState, PageError, cookies, request_context};

/// The signed-in session of this request, if any (a store failure is an error page).
pub async fn current_session(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<Session>, PageError> {
    let Some(id) = cookies::session_id(req, state.config()) else {
        return Ok(None);
    };
    state
        .access
        .session(&id)
        .await
        .map_err(|e| store_down(req, e))
}

/// `GET /`: the role picker when signed in; otherwise the sign-in page (or straight to
/// the IdP when only one is configured).
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    match current_session(&req, &state).await? {
        Some(s) => role_picker(&req, &state, &s),
        None => sign_in_page(&req, &state, None),
    }
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

fn role_picker(
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
                })
                .collect(),
        })
        .collect();
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
        },
        req,
    )
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
        Ok(session) => Ok(signed_in(config, session)),
        Err(e) => Err(sign_in_failed(&req, &e)),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
    /// Requested session length (role actions only): seconds or e.g. `1h`; default: the
    /// maximum.
    pub duration: Option<String>,
}

/// The session of a form post, which must carry the session's CSRF token.
pub async fn require_session_and_csrf(
    req: &HttpRequest,
    state: &AppState,
    form: &CsrfForm,
) -> Result<Session, PageError> {
    let id = request_id(req);
    let s = current_session(req, state).await?.ok_or_else(|| {
        PageError::new(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Your session has ended. Sign in again.",
            &id,
        )
    })?;
    match &form.csrf {
        Some(t) if tokens_match(t, &s.csrf) => Ok(s),
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
