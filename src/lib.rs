//! rolegate: an identity federation broker. A person (or app) signs in at the company's
//! identity provider; rolegate maps what the IdP says about them to AWS IAM roles and
//! hands out scoped, short-lived AWS credentials.
//!
//! # Layout
//! - [`config`]: loads and validates the TOML configuration (all errors at once).
//! - [`domain`]: types valid by construction (`RoleArn`, `SessionDuration`, ...).
//! - [`mapping`]: the pure role-mapping engine behind the server and `rolegate explain`.
//! - [`idp`]: identity providers; the shared claims-to-identity extraction.
//! - [`sts`]: the one audited credential issuer (AssumeRole / AssumeRoleWithWebIdentity),
//!   the broker's OIDC issuer keys, and the AWS console sign-in.
//! - [`metrics`]: Prometheus metrics.
//! - [`store`]: server-side state in Redis or in memory, with atomic single-use reads.
//! - [`web`]: the actix-web application: routes, pages, errors, metrics.
//! - [`audit`]: the audit log of sign-ins and credential issuance (JSON lines).
//! - [`telemetry`]: log subscriber setup.
//!
//! See `ARCHITECTURE.md` for how a request flows and the invariants each module keeps.

#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod domain;
pub mod idp;
pub mod mapping;
pub mod metrics;
pub mod store;
pub mod sts;
pub mod telemetry;
pub mod web;
