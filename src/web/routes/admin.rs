//! The admin area (askama pages, no JavaScript): find a person among those with live
//! access, see what they hold and what happened to them lately, revoke one item or
//! everything, and place or remove locks. Only administrators (`[admin]`) get in; every
//! action is a CSRF-protected POST, audited with the administrator's identity by the core;
//! a lock that would lock the administrator out is confirmed first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::common::{render, see_other};
use super::fallback::request_id;
use crate::access::Session;
use crate::access::admin::{AdminError, PersonTag};
use crate::access::administrators::AdminCheck;
use crate::access::locks::{Lock, LockTarget};
use crate::web::extract::{SignedIn, check_csrf};
use crate::web::pages::{
    AdminConfirmPage, AdminPage, AdminPersonPage, HistoryRow, HoldingRow, LockRow, PersonRow,
    RecallRow,
};
use crate::web::{AppState, PageError, request_context};

fn when(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The session of an administrator; anyone else gets a 403 page.
fn require_admin(req: &HttpRequest, state: &AppState, s: &Session) -> Result<(), PageError> {
    let id = request_id(req);
    match state.access.admin_check(&s.identity) {
        AdminCheck::Admin => Ok(()),
        AdminCheck::StepUpRequired => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Sign in again",
            "Administering access needs a stronger sign-in (for example with a second factor). Sign out, then sign in again that way.",
            &id,
        )),
        AdminCheck::NotAdmin => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Not an administrator",
            "Only administrators of rolegate may see this page.",
            &id,
        )),
    }
}

fn admin_failed(req: &HttpRequest, e: AdminError) -> PageError {
    let id = request_id(req);
    match e {
        AdminError::Invalid(m) => PageError::new(StatusCode::BAD_REQUEST, "Not done", m, &id),
        AdminError::NotFound(m) => PageError::new(StatusCode::NOT_FOUND, "Not found", m, &id),
        AdminError::Store(_) => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not done",
            "rolegate cannot reach its state store right now, so nothing was changed. Try again in a minute, or use `rolegate admin` on a server.",
            &id,
        ),
        AdminError::Audit(_) => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not done",
            "rolegate cannot write its audit log, so nothing was changed.",
            &id,
        ),
    }
}

fn lock_row(l: &Lock, now: u64) -> LockRow {
    LockRow {
        id: l.id.clone(),
        target: l.target.to_string(),
        reason: l.reason.clone(),
        created_by: l.created_by.clone(),
        created: when(l.created),
        expires: l.expires.map(when).unwrap_or_else(|| "unlocked".into()),
        active: l.is_active(now),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Deserialize)]
pub struct HomeQuery {
    q: Option<String>,
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    match done {
        Some("locked") => Some("The lock is in place."),
        Some("unlocked") => Some("The lock is removed."),
        Some("revoked") => Some("Revoked."),
        _ => None,
    }
}

/// `GET /admin`: search, and the locks.
pub async fn home(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    query: web::Query<HomeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    require_admin(&req, &state, &s)?;
    let admin = state.access.admin();
    let q = query.q.as_deref().unwrap_or("").trim();
    let people = if query.q.is_some() {
        admin
            .search(q, 50)
            .await
            .map_err(|e| admin_failed(&req, e))?
            .into_iter()
            .map(|(tag, e)| PersonRow {
                tag: tag.to_string(),
                username: e.username,
                email: e.email,
                subject: e.subject,
                idp: e.idp,
                groups: e.groups.join(", "),
                expires: when(e.expires),
            })
            .collect()
    } else {
        Vec::new()
    };
    let t = now();
    let locks = admin
        .locks()
        .await
        .map_err(|e| admin_failed(&req, e))?
        .iter()
        .map(|l| lock_row(l, t))
        .collect();
    let config = state.config();
    render(
        AdminPage {
            csrf: &s.csrf,
            username: &s.identity.claims().username,
            query: q,
            searched: query.q.is_some(),
            people,
            locks,
            notice: notice(query.done.as_deref()),
            idps: config.idps.iter().map(|i| i.id.as_str()).collect(),
            roles: config.roles.iter().map(|r| r.id.as_str()).collect(),
            break_glass: state
                .access
                .break_glass_uses()
                .await
                .unwrap_or_default()
                .into_iter()
                .take(50)
                .map(|u| crate::web::pages::BreakGlassRow {
                    when: when(u.at),
                    who: format!("{} ({}:{})", u.username, u.idp, u.subject),
                    role: u.role,
                    reason: u.reason,
                    until: when(u.until),
                })
                .collect(),
        },
        &req,
    )
}

fn tag_of(req: &HttpRequest, raw: &str) -> Result<PersonTag, PageError> {
    PersonTag::parse(raw).ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such person id.",
            &request_id(req),
        )
    })
}

/// `GET /admin/people/{tag}`: what a person holds, their recent events, their locks.
pub async fn person(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    path: web::Path<String>,
    query: web::Query<HomeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    require_admin(&req, &state, &s)?;
    let tag = tag_of(&req, &path)?;
    let view = state
        .access
        .admin()
        .person(&tag, 50)
        .await
        .map_err(|e| admin_failed(&req, e))?;
    let (username, idp, subject, email, groups) = match (&view.entry, view.holdings.first()) {
        (Some(e), _) => (
            e.username.clone(),
            e.idp.clone(),
            e.subject.clone(),
            e.email.clone(),
            e.groups.join(", "),
        ),
        (None, Some((_, h))) => (
            h.username.clone(),
            h.idp.clone(),
            h.subject.clone(),
            None,
            String::new(),
        ),
        (None, None) => (
            "(no live access)".into(),
            String::new(),
            String::new(),
            None,
            String::new(),
        ),
    };
    let holdings = view
        .holdings
        .iter()
        .map(|(field, h)| HoldingRow {
            field: field.clone(),
            kind: h.kind.as_str().replace('_', " "),
            client: match (&h.client_id, &h.device_name) {
                (Some(c), Some(d)) => format!("{} · {c} on {d}", h.client_path),
                (Some(c), None) => format!("{} · {c}", h.client_path),
                _ => h.client_path.clone(),
            },
            created: when(h.created),
            last_used: when(h.last_used),
            expires: when(h.expires),
            ip: h.ip.clone(),
            user_agent: h.user_agent.chars().take(80).collect(),
        })
        .collect();
    let s_of =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    let history = view
        .history
        .iter()
        .map(|e| HistoryRow {
            time: s_of(e, "time"),
            event: s_of(e, "event"),
            outcome: s_of(e, "outcome"),
            detail: ["role", "reason", "client_path", "client_id", "by", "what"]
                .iter()
                .filter_map(|k| {
                    let v = s_of(e, k);
                    (!v.is_empty()).then(|| format!("{k}: {v}"))
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    let t = now();
    let directory = match state
        .access
        .directory_state(&idp, &subject, &username, email.as_deref())
        .await
    {
        Ok(None) => None,
        Ok(Some(None)) => {
            Some("not provisioned (the IdP's directory does not know them)".to_owned())
        }
        Ok(Some(Some(m))) if m.id.is_none() => {
            Some("deleted from the IdP's directory: refused".to_owned())
        }
        Ok(Some(Some(m))) => Some(format!(
            "{}; groups: {}",
            if m.active {
                "active"
            } else {
                "deactivated: refused"
            },
            if m.groups.is_empty() {
                "none".to_owned()
            } else {
                m.groups.join(", ")
            }
        )),
        Err(_) => Some("unknown (the state store did not answer)".to_owned()),
    };
    let recalls_on = state.access.admin().recalls_on();
    let recalls = match state.access.admin().pending_recalls(Some(&tag)).await {
        Ok(list) => list
            .into_iter()
            .map(|p| RecallRow {
                role_arn: p.role_arn,
                state: match &p.last_error {
                    None => "pending".into(),
                    Some(e) => format!("failed {} time(s): {e}", p.attempts),
                },
                next_attempt: when(p.next_attempt),
                until: when(p.expires),
            })
            .collect(),
        Err(_) => vec![RecallRow {
            role_arn: "(unknown)".into(),
            state: "the state store did not answer".into(),
            next_attempt: String::new(),
            until: String::new(),
        }],
    };
    render(
        AdminPersonPage {
            directory,
            recalls_on,
            recalls,
            csrf: &s.csrf,
            tag: tag.as_str(),
            username: &username,
            idp: &idp,
            subject: &subject,
            email: email.as_deref(),
            groups,
            holdings,
            history,
            locks: view.locks.iter().map(|l| lock_row(l, t)).collect(),
            notice: notice(query.done.as_deref()),
        },
        &req,
    )
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: Option<String>,
    item: Option<String>,
    reason: Option<String>,
}

/// `POST /admin/people/{tag}/revoke`: one item (`item`) or everything.
pub async fn revoke(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    path: web::Path<String>,
    form: web::Form<RevokeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    require_admin(&req, &state, &s)?;
    let tag = tag_of(&req, &path)?;
    let ctx = request_context(&req, &state);
    let actor = crate::access::admin::Actor::admin(s.identity.identity());
    state
        .access
        .admin()
        .revoke(
            &tag,
            form.item.as_deref().filter(|i| !i.is_empty()),
            &actor,
            form.reason.as_deref().unwrap_or(""),
            &ctx,
        )
        .await
        .map_err(|e| admin_failed(&req, e))?;
    Ok(see_other(&format!("/admin/people/{tag}?done=revoked")))
}

#[derive(Deserialize)]
pub struct LockForm {
    csrf: Option<String>,
    kind: Option<String>,
    idp: Option<String>,
    subject: Option<String>,
    group: Option<String>,
    role: Option<String>,
    reason: Option<String>,
    expires: Option<String>,
    confirm: Option<String>,
}

/// An expiry as typed: a duration from now, an RFC 3339 time, or empty (none).
fn parse_expiry(raw: &str) -> Result<Option<u64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = humantime::parse_duration(raw) {
        return Ok(Some(now() + d.as_secs()));
    }
    humantime::parse_rfc3339_weak(raw)
        .map(|t| {
            Some(
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            )
        })
        .map_err(|_| {
            format!("{raw:?} is neither a duration (2h) nor a time (2026-12-31T18:00:00Z)")
        })
}

/// `POST /admin/locks`: places a lock (after a confirmation when it would apply to the
/// administrator).
pub async fn lock(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    form: web::Form<LockForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    require_admin(&req, &state, &s)?;
    let id = request_id(&req);
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, "Not done", m, &id);
    let field = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or("").to_owned();
    let (idp, subject, group, role) = (
        field(&form.idp),
        field(&form.subject),
        field(&form.group),
        field(&form.role),
    );
    let target = match form.kind.as_deref() {
        Some("person") if !idp.is_empty() && !subject.is_empty() => LockTarget::Person {
            idp: idp.clone(),
            subject: subject.clone(),
        },
        Some("group") if !group.is_empty() => LockTarget::Group {
            idp: (!idp.is_empty()).then(|| idp.clone()),
            group: group.clone(),
        },
        Some("role") if !role.is_empty() => LockTarget::Role { role: role.clone() },
        _ => {
            return Err(bad(
                "say what to lock: a person (IdP and subject), a group, or a role".into(),
            ));
        }
    };
    let expires_raw = field(&form.expires);
    let expires = parse_expiry(&expires_raw).map_err(bad)?;
    let reason = field(&form.reason);
    if state.access.lock_would_apply_to(&target, &s.identity)
        && form.confirm.as_deref() != Some("yes")
    {
        let description = target.to_string();
        return render(
            AdminConfirmPage {
                csrf: &s.csrf,
                target: &description,
                kind: form.kind.as_deref().unwrap_or(""),
                idp: &idp,
                subject: &subject,
                group: &group,
                role: &role,
                reason: &reason,
                expires: &expires_raw,
            },
            &req,
        );
    }
    let ctx = request_context(&req, &state);
    state
        .access
        .place_lock(target, &reason, expires, &s.identity, &ctx)
        .await
        .map_err(|e| admin_failed(&req, e))?;
    Ok(see_other("/admin?done=locked"))
}

#[derive(Deserialize)]
pub struct UnlockForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// `POST /admin/locks/{id}/remove`.
pub async fn unlock(
    req: HttpRequest,
    SignedIn(s): SignedIn,
    path: web::Path<String>,
    form: web::Form<UnlockForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &s, form.csrf.as_deref())?;
    require_admin(&req, &state, &s)?;
    let ctx = request_context(&req, &state);
    state
        .access
        .remove_lock(
            &path,
            form.reason.as_deref().unwrap_or(""),
            &s.identity,
            &ctx,
        )
        .await
        .map_err(|e| admin_failed(&req, e))?;
    Ok(see_other("/admin?done=unlocked"))
}
