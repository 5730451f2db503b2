//! Route handlers, one module per concern. The route table itself is in `startup`.

pub mod assets;
pub mod fallback;
pub mod health;
pub mod issuer;
pub mod login;
pub mod saml;
