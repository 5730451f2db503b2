//! Route handlers, one module per concern. The route table itself is in `startup`.
//! `common` holds what several of them share (rendering, redirects, the pages for
//! sign-in failures), so no route module imports another.

pub mod admin;
pub mod api;
pub mod assets;
pub mod common;
pub mod device;
pub mod fallback;
pub mod health;
pub mod issuer;
pub mod login;
pub mod oauth;
pub mod requests;
pub mod roles;
pub mod saml;
pub mod scim;
pub mod sso;
