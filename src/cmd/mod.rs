//! The binary's subcommands, one module per build: `main` parses and dispatches, these
//! run (and are the only place, with `main`, that uses `anyhow`).

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "cli")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;
