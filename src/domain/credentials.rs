//! Temporary AWS credentials as rolegate hands them out: what STS returned, in a form
//! every client (the web page, the CLI, an app) can format.

use std::fmt;
use std::time::SystemTime;

use secrecy::SecretString;

/// An STS session: key id, secret, session token and when it stops working. The secret
/// parts are `SecretString`s, which print as `[REDACTED]`; only a formatter that hands
/// them to their owner exposes them.
#[derive(Clone)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    pub expiration: SystemTime,
}

impl fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}
