//! Builds the actix-web application from a [`Config`] (passed by value: no globals, so a
//! test can run several differently configured brokers in one process) and runs it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpServer, ResponseError, error, web};

use super::middleware::{SecurityHeaders, cors, observe, security_headers};
use super::routes::{
    admin, api, assets, device, fallback, health, issuer, login, oauth, requests, roles, saml,
    scim, sso,
};
use super::{ApiError, AppState, Metrics, PageError};
use crate::access::{Access, BuildError, StaticAwsCredentials};
use crate::config::Config;

/// Largest `SAMLResponse` form value the ACS route reads (base64, then URL-encoded).
const SAML_ACS_BODY_LIMIT: usize = 2 * 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Access(#[from] BuildError),
}

/// Knobs for embedding the broker (tests): everything else comes from the `Config`.
#[derive(Default)]
pub struct BuildOptions {
    /// Use these AWS credentials instead of the SDK's default chain.
    pub aws_credentials: Option<StaticAwsCredentials>,
}

/// A built, bound, not yet running broker.
pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    shutdown: ShutdownHandle,
}

/// Stops a running broker: readiness fails first, then the server stops accepting and
/// drains in-flight requests for up to `server.shutdown_timeout`.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    shutting_down: Arc<AtomicBool>,
    pre_stop_delay: std::time::Duration,
}

impl ShutdownHandle {
    /// Stops now: readiness fails, the listener closes, in-flight requests drain.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.server.stop(true).await;
    }

    /// A rolling stop (SIGTERM): readiness fails at once while requests are still
    /// accepted for `server.pre_stop_delay`, so the load balancer's health checks take
    /// the instance out before the listener closes; then [`ShutdownHandle::shutdown`].
    pub async fn shutdown_after_pre_stop(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        if !self.pre_stop_delay.is_zero() {
            tracing::info!(
                pre_stop_delay = %humantime::format_duration(self.pre_stop_delay),
                "readiness now fails; still serving until the pre-stop delay ends"
            );
            tokio::time::sleep(self.pre_stop_delay).await;
        }
        self.shutdown().await;
    }
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with(config, BuildOptions::default()).await
    }

    pub async fn build_with(config: Config, options: BuildOptions) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(config.server.listen).map_err(|source| StartupError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let shutting_down = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new());
        let body_limit = config.server.body_limit;
        let shutdown_timeout = config.server.shutdown_timeout.as_secs().max(1);
        let pre_stop_delay = config.server.pre_stop_delay;
        let workers = config.server.workers;
        let https = config.server.is_https();
        let access =
            Access::build(Arc::new(config), metrics.clone(), options.aws_credentials).await?;
        let headers = web::Data::new(SecurityHeaders::new(https, &access.form_targets()));
        let has_web_identity = access.web_identity_documents().is_some();
        let callback_paths = access.oidc_callback_paths();
        let state = web::Data::new(AppState {
            access,
            metrics,
            shutting_down: shutting_down.clone(),
        });

        let mut server = HttpServer::new(move || {
            let mut app = App::new()
                .app_data(state.clone())
                .app_data(headers.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(
                    web::FormConfig::default()
                        .limit(body_limit)
                        .error_handler(form_error),
                )
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(json_error),
                )
                // Registered last = runs first: the request id exists before anything else.
                .wrap(from_fn(cors))
                .wrap(from_fn(security_headers))
                .wrap(from_fn(observe))
                // HEAD answers like GET (without a body) where a GET changes nothing;
                // the sign-in steps (which consume or create state) stay GET-only.
                .service(get_and_head("/healthz", health::healthz))
                .service(get_and_head("/readyz", health::readyz))
                .service(get_and_head("/metrics", health::metrics))
                .service(get_and_head("/static/rolegate.css", assets::stylesheet))
                .service(get_and_head("/static/favicon.svg", assets::icon))
                .service(get_and_head("/favicon.ico", assets::icon))
                .service(get_and_head("/", login::home))
                .route("/login/{idp}", web::get().to(login::start))
                .route("/logout", web::post().to(login::logout))
                .route("/console/{role}", web::get().to(roles::shortcut))
                // The admin area: revoke, lock, see who holds what.
                .route("/requests", web::get().to(requests::queue))
                .route("/requests", web::post().to(requests::ask))
                .route("/requests/{id}/decision", web::post().to(requests::decide))
                .route("/requests/{id}/end", web::post().to(requests::end))
                .route("/api/v1/requests", web::get().to(api::requests))
                .route("/api/v1/requests", web::post().to(api::ask))
                .route("/api/v1/requests/{id}", web::get().to(api::request))
                .route("/admin", web::get().to(admin::home))
                .route("/admin/people/{tag}", web::get().to(admin::person))
                .route("/admin/people/{tag}/revoke", web::post().to(admin::revoke))
                .route("/admin/locks", web::post().to(admin::lock))
                .route("/admin/locks/{id}/remove", web::post().to(admin::unlock))
                .route(
                    "/roles/{role}/{action:console|credentials}",
                    web::post().to(roles::role_action),
                )
                .service(get_and_head("/static/copy.js", assets::copy_script))
                // The CLI login: OAuth authorization server and the JSON API.
                .service(get_and_head(
                    "/.well-known/oauth-authorization-server",
                    oauth::metadata,
                ))
                .route("/oauth/authorize", web::get().to(oauth::authorize))
                .route("/oauth/authorize", web::post().to(oauth::decide))
                .route("/oauth/token", web::post().to(oauth::token))
                .route(
                    "/oauth/device_authorization",
                    web::post().to(oauth::device_authorization),
                )
                .route("/oauth/revoke", web::post().to(oauth::revoke))
                .route("/device", web::get().to(device::enter))
                .route("/device", web::post().to(device::submit))
                .route("/device/approve", web::post().to(device::approve))
                .route("/api/v1/me", web::get().to(api::me))
                .route("/api/v1/roles", web::get().to(api::roles))
                .route(
                    "/api/v1/roles/{role}/credentials",
                    web::post().to(api::credentials),
                )
                .route("/api/v1/roles/{role}/console", web::post().to(api::console))
                // The AWS SSO OIDC and portal APIs (unchanged SDKs, `aws sso login`).
                .route(
                    "/sso-oidc/client/register",
                    web::post().to(sso::register_client),
                )
                .route(
                    "/sso-oidc/device_authorization",
                    web::post().to(sso::start_device_authorization),
                )
                .route("/sso-oidc/token", web::post().to(sso::create_token))
                .route("/sso-oidc/authorize", web::get().to(oauth::authorize))
                .route(
                    "/sso-portal/assignment/accounts",
                    web::get().to(sso::list_accounts),
                )
                .route(
                    "/sso-portal/assignment/roles",
                    web::get().to(sso::list_account_roles),
                )
                .route(
                    "/sso-portal/federation/credentials",
                    web::get().to(sso::get_role_credentials),
                )
                .route("/sso-portal/logout", web::post().to(sso::logout))
                .service(
                    // SCIM reads its own bodies (up to scim::SCIM_BODY_LIMIT) and answers
                    // every error, unknown paths included, in SCIM's JSON.
                    web::scope("/scim/v2")
                        .service(
                            web::resource("/{what:ServiceProviderConfig|ResourceTypes|Schemas}")
                                .route(web::get().to(scim::discovery))
                                .default_service(web::to(scim::not_allowed)),
                        )
                        .service(
                            web::resource("/{what:ResourceTypes|Schemas}/{id}")
                                .route(web::get().to(scim::discovery))
                                .default_service(web::to(scim::not_allowed)),
                        )
                        .route("/{resource:Users|Groups}", web::get().to(scim::list))
                        .route("/{resource:Users|Groups}", web::post().to(scim::create))
                        .route("/{resource:Users|Groups}/{id}", web::get().to(scim::get))
                        .route(
                            "/{resource:Users|Groups}/{id}",
                            web::put().to(scim::replace),
                        )
                        .route(
                            "/{resource:Users|Groups}/{id}",
                            web::patch().to(scim::patch),
                        )
                        .route(
                            "/{resource:Users|Groups}/{id}",
                            web::delete().to(scim::delete),
                        )
                        .default_service(web::to(scim::other)),
                )
                .service(get_and_head("/saml/{idp}/metadata", saml::metadata))
                .route("/saml/{idp}/finish", web::get().to(saml::finish))
                .service(
                    web::resource("/saml/{idp}/acs")
                        // The ACS takes larger bodies than other forms (signed XML, base64, then
                        // URL-encoded); the core caps the SAMLResponse itself (idp::saml).
                        .app_data(
                            web::FormConfig::default()
                                .limit(SAML_ACS_BODY_LIMIT)
                                .error_handler(acs_form_error),
                        )
                        .app_data(web::PayloadConfig::new(SAML_ACS_BODY_LIMIT))
                        .route(web::post().to(saml::acs)),
                );
            if has_web_identity {
                app = app
                    .service(get_and_head(
                        "/.well-known/openid-configuration",
                        issuer::discovery,
                    ))
                    .service(get_and_head("/.well-known/jwks.json", issuer::jwks));
            }
            for path in &callback_paths {
                app = app.route(path, web::get().to(login::callback));
            }
            app.default_service(web::to(fallback::not_found))
        })
        .disable_signals()
        .shutdown_timeout(shutdown_timeout);
        if let Some(w) = workers {
            server = server.workers(w);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: local_addr,
                source,
            })?
            .run();
        let shutdown = ShutdownHandle {
            server: server.handle(),
            shutting_down,
            pre_stop_delay,
        };
        Ok(Self {
            local_addr,
            server,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until a [`ShutdownHandle`] stops the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A resource answering GET and HEAD with the same handler (actix sends no body for HEAD).
fn get_and_head<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

fn form_error(err: error::UrlencodedError, req: &HttpRequest) -> actix_web::Error {
    let id = fallback::request_id(req);
    let (status, msg) = match &err {
        error::UrlencodedError::Overflow { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form you sent is too large.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "The form you sent could not be read.",
        ),
    };
    tracing::info!(error = %err, "rejected form body");
    error::InternalError::from_response(
        err,
        PageError::new(status, "Bad request", msg, &id).error_response(),
    )
    .into()
}

/// As [`form_error`], and an oversized SAML response is audited like any refusal.
fn acs_form_error(err: error::UrlencodedError, req: &HttpRequest) -> actix_web::Error {
    if matches!(err, error::UrlencodedError::Overflow { .. })
        && let (Some(state), Some(idp)) = (
            req.app_data::<web::Data<AppState>>(),
            req.match_info().get("idp"),
        )
    {
        let ctx = super::request_context(req, state);
        state.access.saml_body_too_large(idp, &ctx);
    }
    form_error(err, req)
}

fn json_error(err: error::JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    let id = fallback::request_id(req);
    let status = match &err {
        error::JsonPayloadError::OverflowKnownLength { .. }
        | error::JsonPayloadError::Overflow { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    tracing::info!(error = %err, "rejected JSON body");
    error::InternalError::from_response(
        err,
        ApiError::new(
            status,
            "invalid_request",
            "the request body is not acceptable JSON",
            &id,
        )
        .error_response(),
    )
    .into()
}
