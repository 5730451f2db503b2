//! The client side of rolegate: what runs on a developer's machine, in the client build
//! (`--no-default-features --features cli`) as well as the full one. It never links the
//! server's C libraries and imports only `domain` and `credential_formats`.
//!
//! - [`settings`]: the client's config file, where its tokens and cached credentials live,
//!   and file locks.
//! - [`broker`]: the broker's OAuth and JSON API, with access-token refresh.
//! - [`login`]: `rolegate login` — the browser loopback flow (code + PKCE) or the device
//!   flow.
//! - [`commands`]: `whoami`, `roles`, `credentials` (cached per role), `console`, `exec`,
//!   `configure` (AWS CLI profiles).
//! - [`doctor`]: `rolegate doctor`, the checks a developer runs when credentials do not come.
//! - [`convert`]: credentials from one form into another.
//! - [`container`]: the local container-credentials endpoint SDKs read through
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI`.

pub mod broker;
pub mod commands;
pub mod container;
pub mod convert;
pub mod doctor;
pub mod elevation;
pub mod login;
pub mod settings;

pub use convert::{ConvertError, convert_credentials};

/// What went wrong on the client side, in words for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("not logged in (or the login ended); run `rolegate login`")]
    NotLoggedIn,
    #[error("no broker is configured; run `rolegate login --broker https://…` once")]
    NoBroker,
    #[error("{0}")]
    Broker(String),
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Login(String),
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

impl CliError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
