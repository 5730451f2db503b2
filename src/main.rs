//! The `rolegate` binary: subcommands over the library. Errors become messages and exit
//! codes here and only here (ripgrep's edge): 0 success, 1 failure (invalid config,
//! runtime error), 2 usage error.
//!
//! The server subcommands (`serve`, `check-config`, `explain`, `keys`) exist in the
//! `server` build only; the client build (`--no-default-features --features cli`) has the
//! client commands, without any of the server's C libraries.

#![forbid(unsafe_code)]
// The async state machines of the admin command (the whole admin core inlined into one
// future) need more than the default query depth in release builds.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "rolegate",
    version,
    about = "Identity federation broker: corporate sign-in in, scoped short-lived AWS credentials out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "server")]
    #[command(flatten)]
    Server(cmd::server::ServerCommand),
    #[cfg(feature = "cli")]
    #[command(flatten)]
    Client(cmd::client::ClientCommand),
    /// Prints a completion script for a shell (bash, zsh, fish, powershell, elvish), e.g.
    /// `rolegate completions bash > ~/.local/share/bash-completion/completions/rolegate`.
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rolegate: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "server")]
        Command::Server(c) => cmd::server::run(c),
        #[cfg(feature = "cli")]
        Command::Client(c) => cmd::client::run(c),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "rolegate",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
