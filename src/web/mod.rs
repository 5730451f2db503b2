//! The HTTP edge: the actix-web application, its routes, pages, errors and metrics.
//!
//! **Invariant:** only `web` knows actix, HTTP and askama. Handlers are thin: they parse
//! the request, call the access core (`crate::access`), and turn the result into a page
//! or a JSON answer. `web` never imports `sts`, `store` or `idp` (the layer check enforces
//! it): state, logins and credentials are reached only through the core. Errors become an
//! HTML page for people or RFC-style JSON for APIs here, and nowhere else; neither ever
//! carries internals.

mod client_ip;
mod cookies;
mod error;
mod extract;
mod middleware;
mod pages;
mod routes;
mod startup;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use crate::metrics::Metrics;
pub use client_ip::client_ip;
pub use error::{ApiError, PageError};
pub use middleware::{RequestId, SecurityHeaders};
pub use startup::{Application, BuildOptions, ShutdownHandle, StartupError};

use crate::access::{Access, RequestContext};
use crate::config::Config;

/// Everything a handler may need, shared by all workers (`web::Data<AppState>`).
pub struct AppState {
    /// The access core: sign-in, sessions, roles, credentials.
    pub access: Arc<Access>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins, so `/readyz` fails first and load balancers drain us.
    pub shutting_down: Arc<AtomicBool>,
}

impl AppState {
    pub fn config(&self) -> &Config {
        self.access.config()
    }
}

/// The request facts every audit record carries.
pub fn request_context(req: &actix_web::HttpRequest, state: &AppState) -> RequestContext {
    use actix_web::HttpMessage;
    RequestContext {
        request_id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        client_ip: client_ip(req, &state.config().server.trusted_proxies)
            .map(|i| i.to_string())
            .unwrap_or_default(),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(512)
            .collect(),
    }
}
