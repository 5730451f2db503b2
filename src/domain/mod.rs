//! Domain types that are valid by construction.
//!
//! Each type has a private field and a `parse` constructor that checks every rule AWS (or
//! rolegate) imposes, so holding a value is proof that it is valid. Config loading, the
//! mapping engine, STS issuance and the clients all use these instead of bare strings.
//! Errors name the rule that was broken, in words a config author can act on.
//!
//! The bottom layer: it imports nothing else from the crate, and it is part of both the
//! server and the client build.

mod aws_ids;
mod console;
mod credentials;
mod ids;
mod policy;
mod session;

pub use aws_ids::{AccountId, Partition, RoleArn};
pub use console::{CONSOLE_SERVICES, ConsoleSite, parse_region};
pub use credentials::TemporaryCredentials;
pub use ids::{GroupName, Identifier, IdpId};
pub use policy::SessionPolicy;
pub use session::{
    MAX_SESSION_TAGS, RoleSessionName, SessionDuration, SessionTag, SessionTags, SourceIdentity,
};

/// Why a value was refused by a domain constructor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub(crate) String);

impl DomainError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// The character set AWS allows in role session names, source identities and role names:
/// `[\w+=,.@-]` with `\w` meaning ASCII letters, digits and underscore.
pub(crate) fn is_aws_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}
