//! Cross-cutting request handling: request ids, access logs, metrics, security headers.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use tracing::Instrument;

use super::AppState;
use crate::metrics::{RequestLabels, RouteLabels};

/// A random id for one request: in every log line of the request, in the `X-Request-Id`
/// response header, and on every error page, so a user's screenshot leads to the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    fn new() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }
}

/// Request id, tracing span, access log line and metrics for every request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let started = Instant::now();
    let id = RequestId::new();
    req.extensions_mut().insert(id.clone());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let client_ip = state
        .as_ref()
        .and_then(|s| super::client_ip(req.request(), &s.config().server.trusted_proxies))
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id.0, %method, %path, %client_ip);
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();

    let (status, route) = match &result {
        Ok(res) => (
            res.status().as_u16(),
            res.request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".into()),
        ),
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            "unmatched".into(),
        ),
    };
    if let Some(state) = &state {
        state
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        state
            .metrics
            .latency
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            route = %route,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        )
    });

    let mut res = result?;
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}

/// Security headers, computed once at start-up.
#[derive(Clone)]
pub struct SecurityHeaders {
    csp: HeaderValue,
    /// The CSP's `form-action` sources, for a page that adds one (see [`Self::csp_with_form_target`]).
    form_action: String,
    hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    /// `form_targets`: origins a form submission may be redirected to (the AWS
    /// federation endpoint and console): browsers apply `form-action` to redirects too.
    pub fn new(https: bool, form_targets: &[String]) -> Self {
        // No inline scripts or styles anywhere: pages use /static/ only.
        let mut form_action = String::from("'self'");
        for t in form_targets {
            form_action.push(' ');
            form_action.push_str(t);
        }
        Self {
            csp: HeaderValue::from_str(&Self::policy(&form_action))
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
            form_action,
            hsts: https.then(|| HeaderValue::from_static("max-age=31536000; includeSubDomains")),
        }
    }

    fn policy(form_action: &str) -> String {
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action {form_action}; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    }

    /// The policy for one page whose form leads (through a redirect) to `origin` too: the
    /// CLI approval page, whose Approve redirects to the CLI's loopback address. The
    /// caller passes an origin it has checked (a loopback IP literal).
    pub fn csp_with_form_target(&self, origin: &str) -> Option<HeaderValue> {
        HeaderValue::from_str(&Self::policy(&format!("{} {origin}", self.form_action))).ok()
    }
}

/// Adds the security headers to every response (JSON included: they cost nothing there
/// and an API answer opened in a browser is then as locked down as a page).
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let headers = req.app_data::<web::Data<SecurityHeaders>>().cloned();
    let mut res = next.call(req).await?;
    if let Some(h) = headers {
        let map = res.headers_mut();
        // A page may have set a narrower-purpose policy of its own (see
        // `csp_with_form_target`); every other response gets the common one.
        if !map.contains_key(header::CONTENT_SECURITY_POLICY) {
            map.insert(header::CONTENT_SECURITY_POLICY, h.csp.clone());
        }
        map.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        map.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        map.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(hsts) = &h.hsts {
            map.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    Ok(res)
}

/// CORS for browser apps (single-page apps doing token exchange): only on the token
/// endpoint and the JSON API, only for origins an `[[app]]` lists; every other origin and
/// path gets no CORS header, so browsers keep them out. Preflights are answered here.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, Error> {
    let path = req.path();
    let applies = path == "/oauth/token" || path.starts_with("/api/");
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = match (&origin, req.app_data::<web::Data<AppState>>()) {
        (Some(o), Some(state)) if applies => state
            .config()
            .apps
            .iter()
            .any(|a| a.allowed_origins.iter().any(|x| x == o)),
        _ => false,
    };
    let add = |map: &mut header::HeaderMap, origin: &str| {
        if let Ok(v) = HeaderValue::from_str(origin) {
            map.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        map.insert(header::VARY, HeaderValue::from_static("Origin"));
        // A 429's Retry-After and a 401's challenge are for the app's code to read.
        map.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After, WWW-Authenticate"),
        );
    };
    if allowed && req.method() == actix_web::http::Method::OPTIONS {
        let mut res = actix_web::HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, dpop",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .finish();
        add(res.headers_mut(), origin.as_deref().unwrap_or_default());
        return Ok(req.into_response(res).map_into_boxed_body());
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    if allowed {
        add(res.headers_mut(), origin.as_deref().unwrap_or_default());
    }
    Ok(res)
}
