//! The HTTP edge: the actix-web application, its routes, pages, errors and metrics.
//!
//! **Invariant:** only `web` knows actix, HTTP and askama. Handlers are thin: they parse
//! the request, call into `idp` / `mapping` / `store`, and turn the result into a page or
//! a JSON answer. Errors become an HTML page for people or RFC-style JSON for APIs here,
//! and nowhere else; neither ever carries internals.

mod client_ip;
mod error;
mod middleware;
mod pages;
mod routes;
mod session;
mod startup;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use crate::metrics::Metrics;
pub use client_ip::client_ip;
pub use error::{ApiError, PageError};
pub use middleware::RequestId;
pub use startup::{Application, BuildOptions, ShutdownHandle};

use crate::audit::{AuditLog, RequestContext};
use crate::config::Config;
use crate::idp::oidc::OidcProvider;
use crate::idp::saml::SamlProvider;
use crate::store::Store;
use crate::sts::CredentialIssuer;
use crate::sts::console::ConsoleSignIn;

/// Everything a handler may need, shared by all workers (`web::Data<AppState>`).
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<AuditLog>,
    /// The one audited path to AWS STS.
    pub issuer: Arc<CredentialIssuer>,
    pub console: ConsoleSignIn,
    /// The configured OIDC IdPs, with their discovered metadata and key caches.
    pub oidc: Vec<Arc<OidcProvider>>,
    /// The configured SAML IdPs, with their pinned metadata.
    pub saml: Vec<Arc<SamlProvider>>,
    /// Set when shutdown begins, so `/readyz` fails first and load balancers drain us.
    pub shutting_down: Arc<AtomicBool>,
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
        client_ip: client_ip(req, &state.config.server.trusted_proxies)
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
