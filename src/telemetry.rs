//! Log subscriber setup: JSON lines in production, readable text in development.
//!
//! Every line written while a request is handled carries that request's `request_id`
//! (and method, path, client IP): the `observe` middleware opens a `request` span around
//! the handler, and both formats print the current span's fields (JSON: under `"span"`;
//! text: as a `request{request_id=…}:` prefix). Text has ANSI colours only when stderr is
//! a terminal, so files and log collectors get plain text.
//!
//! Secrets never reach the logger: they live in `SecretString`s, which print as
//! `[REDACTED]`, and spans skip them explicitly.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured level so
/// an operator can turn on debug logs without editing the config. Calling it twice is
/// harmless (the second call does nothing), which tests rely on.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// An error and all its sources, `: `-separated, for logs (never for pages).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
