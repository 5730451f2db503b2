//! Liveness, readiness and metrics endpoints for orchestrators and Prometheus.

use std::sync::atomic::Ordering;

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::web::AppState;

/// `GET /healthz`: the process is up and serving HTTP. Touches nothing else, so a slow
/// Redis never gets the broker restarted.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "status": "alive" }))
}

/// `GET /readyz`: 200 when the broker can serve logins, 503 (with what is wrong) when the
/// state store does not answer or shutdown has begun.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let shutting_down = state.shutting_down.load(Ordering::Relaxed);
    let r = state.access.readiness().await;
    if let Some(problem) = &r.store_problem {
        // The store logs the outage once; health checks every few seconds would repeat it.
        tracing::debug!(error = %problem, "readiness: state store unavailable");
    }
    // An IdP whose discovery has not succeeded cannot sign anyone in; the broker is still
    // ready for the others, so this is reported but does not fail readiness.
    let store = if r.store_problem.is_none() {
        "ok"
    } else {
        "unavailable"
    };
    let ready = r.store_problem.is_none() && !shutting_down;
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "store": { "backend": r.store_backend, "status": store },
        "idps_unavailable": r.idps_unavailable,
        "shutting_down": shutting_down,
    });
    let mut res = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((CACHE_CONTROL, "no-store")).json(body)
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.access.refresh_gauges().await;
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(state.metrics.encode())
}
