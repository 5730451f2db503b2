//! rolegate: an identity federation broker. A person (or app) signs in at the company's
//! identity provider; rolegate maps what the IdP says about them to AWS IAM roles and
//! hands out scoped, short-lived AWS credentials.
//!
//! # Layout
//! Layers, each importing only those below it (checked by the `layers` test):
//! - [`domain`]: types valid by construction (`RoleArn`, `SessionDuration`, ...).
//! - [`credential_formats`]: every form credentials are handed out in (shells, files, JSON).
//! - [`wire`]: the JSON the broker and the CLI both speak (token responses, API answers).
//! - [`scim`]: SCIM 2.0 as pure functions: schemas, filters, PATCH, lists, errors.
//! - [`mapping`]: the pure role-mapping engine behind the server and `rolegate explain`.
//! - [`keys`]: the broker's own signing keys (web_identity mode).
//! - [`config`]: loads and validates the TOML configuration (all errors at once).
//! - [`telemetry`], [`metrics`], [`audit`]: logs, Prometheus metrics, the audit log.
//! - [`idp`]: identity providers (OIDC, SAML): verified identities from logins and tokens.
//! - [`sts`]: the AWS STS adapter (AssumeRole / AssumeRoleWithWebIdentity) and console
//!   sign-in.
//! - [`store`]: server-side state in Redis or in memory, with typed single-use flow state.
//! - [`access`]: the access core every client calls: sign-in, sessions, the role menu,
//!   authorization and credential issuance.
//! - [`web`]: the actix-web application: routes, pages, errors.
//! - [`cli`]: the client commands (same layer as `web`, never importing the server's
//!   modules).
//!
//! The client build (`--no-default-features --features cli`) holds `domain`,
//! `credential_formats` and `cli` only; everything else is the `server` feature.
//!
//! See `ARCHITECTURE.md` for how a request flows and the invariants each module keeps.

#![forbid(unsafe_code)]

pub mod credential_formats;
pub mod domain;
pub mod wire;

#[cfg(feature = "cli")]
pub mod cli;

#[cfg(feature = "server")]
pub mod access;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod idp;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod mapping;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod scim;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod sts;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "server")]
pub mod web;
