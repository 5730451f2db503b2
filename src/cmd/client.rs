//! The client's subcommands (both builds): logging in, credentials in every form, AWS
//! CLI profiles. Errors become messages in `main`.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use rolegate::cli::{broker, commands, convert_credentials, login};
use rolegate::credential_formats::{CredentialFormat, FormatOptions};

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Log in to the broker: opens the browser (or, with --device-code, prints a code
    /// to enter on any device). `--broker` once is remembered.
    Login {
        /// The broker's URL, e.g. https://rolegate.example.com
        #[arg(long, env = "ROLEGATE_BROKER")]
        broker: Option<String>,
        /// Log in with a code on another device (SSH, containers, no browser here).
        #[arg(long)]
        device_code: bool,
        /// Print the browser address instead of opening it.
        #[arg(long)]
        no_browser: bool,
    },
    /// End the login (revoked at the broker) and forget cached credentials.
    Logout,
    /// Who the login is.
    Whoami,
    /// Checks what credentials depend on: the broker answers, the login is valid (and for
    /// how long), the clocks agree, the AWS config block is in place, the client's folder
    /// is readable only by you. Exit code 1 when something is wrong.
    Doctor,
    /// The roles the rules grant you, by account.
    Roles,
    /// Ask for a role a rule makes eligible, for a while, with a reason; waits for the
    /// decision (Ctrl-C stops waiting, not the request).
    Request {
        #[arg(long)]
        role: String,
        /// How long, e.g. 2h or 30m.
        #[arg(long = "for")]
        duration: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// A ticket reference, when the role asks for one.
        #[arg(long)]
        ticket: Option<String>,
        /// Do not wait for the decision.
        #[arg(long)]
        no_wait: bool,
        /// Stop waiting after this long.
        #[arg(long, default_value = "15m")]
        wait: String,
    },
    /// Your requests for eligible roles and their state.
    Requests,
    /// Credentials for a role (cached; refreshed 5 minutes before they expire).
    Credentials {
        #[arg(long)]
        role: String,
        /// env (bash/zsh), fish, powershell, credentials-file, credential-process, json
        #[arg(long, default_value = "env")]
        format: String,
        /// Session length (seconds or e.g. 1h); default the role's maximum.
        #[arg(long)]
        duration: Option<String>,
    },
    /// Opens (or prints) an AWS console sign-in for a role, on its home page or where
    /// --service/--region or --destination say.
    Console {
        #[arg(long)]
        role: String,
        /// A console service to land on (s3, ec2, lambda, iam, …).
        #[arg(long, conflicts_with = "destination")]
        service: Option<String>,
        /// The region of that service's page (default: the broker's region).
        #[arg(long, requires = "service")]
        region: Option<String>,
        /// A console URL to land on (the partition's console, or a destination the broker
        /// allows).
        #[arg(long)]
        destination: Option<String>,
        /// Print the sign-in URL instead of opening it.
        #[arg(long)]
        print: bool,
    },
    /// Runs a command with a role's credentials in its environment (or, with
    /// --ecs-server, with a local container-credentials endpoint its SDKs refresh from).
    Exec {
        #[arg(long)]
        role: String,
        #[arg(long)]
        duration: Option<String>,
        /// Give the command AWS_CONTAINER_CREDENTIALS_FULL_URI and
        /// AWS_CONTAINER_AUTHORIZATION_TOKEN instead of fixed keys, so long-running
        /// programs get fresh credentials before these expire.
        #[arg(long)]
        ecs_server: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Serves roles' credentials to AWS SDKs (and containers) in the container-credentials
    /// format at http://ADDRESS/role/NAME, with a random token per run, until stopped.
    ServeCredentials {
        /// A role to serve (repeat for several; each at /role/NAME).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        duration: Option<String>,
        /// Address to listen on. Anything but loopback lets whoever reaches it and
        /// holds the token use your roles.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Host name in the printed URIs (e.g. the address containers reach this
        /// machine at); the default is the address listened on.
        #[arg(long)]
        uri_host: Option<String>,
        /// Also write the two variables (first role) to this file (mode 0600), for
        /// docker compose's env_file.
        #[arg(long)]
        env_file: Option<std::path::PathBuf>,
    },
    /// Writes an AWS CLI profile per granted role to ~/.aws/config (a marked block;
    /// other profiles are never touched).
    Configure {
        /// Write AWS SSO profiles (sso-session + services sections) that the AWS SDKs
        /// and `aws sso login` use without rolegate, instead of credential_process.
        #[arg(long)]
        sso: bool,
        /// Show the change instead of writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read credential_process JSON (Version 1) on stdin and print it in another form:
    /// env (bash/zsh), fish, powershell, credentials-file, credential-process, json.
    ConvertCredentials {
        #[arg(long, default_value = "env")]
        format: String,
        /// Region to set alongside the credentials (AWS_REGION, AWS_DEFAULT_REGION).
        #[arg(long, env = "AWS_REGION")]
        region: Option<String>,
        /// Profile name for the credentials-file form.
        #[arg(long, default_value = "default")]
        profile: String,
    },
}

fn format(name: &str) -> anyhow::Result<CredentialFormat> {
    let Some(f) = CredentialFormat::parse(name) else {
        let names: Vec<&str> = CredentialFormat::ALL.iter().map(|f| f.as_str()).collect();
        bail!("unknown format {name:?} (one of: {})", names.join(", "));
    };
    Ok(f)
}

pub fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Login {
            broker: flag,
            device_code,
            no_browser,
        } => {
            let url = broker::broker_url(flag.as_deref())?;
            let method = if device_code {
                login::Method::DeviceCode
            } else {
                login::Method::Loopback {
                    open_browser: !no_browser,
                }
            };
            login::login(&url, method)?;
            eprintln!("Logged in at {url}. Next: `rolegate configure` writes AWS CLI profiles.");
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Logout => {
            print!("{}", commands::logout()?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Doctor => {
            let (report, ok) = rolegate::cli::doctor::render(&rolegate::cli::doctor::doctor()?);
            print!("{report}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ClientCommand::Whoami => {
            print!("{}", commands::whoami()?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Roles => {
            print!("{}", commands::roles()?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Request {
            role,
            duration,
            reason,
            ticket,
            no_wait,
            wait,
        } => {
            let wait_for = humantime::parse_duration(&wait)
                .with_context(|| format!("--wait {wait:?} is not a duration such as 15m"))?;
            let ask = rolegate::wire::ElevationAsk {
                role,
                duration,
                reason,
                ticket,
            };
            let (out, ok) = rolegate::cli::elevation::request(&ask, !no_wait, wait_for)?;
            print!("{out}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ClientCommand::Requests => {
            print!("{}", rolegate::cli::elevation::requests()?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Credentials {
            role,
            format: f,
            duration,
        } => {
            // credential_process never prompts or opens a browser: errors are one line
            // on stderr (the AWS CLI shows it) and a non-zero exit.
            print!(
                "{}",
                commands::credentials(&role, format(&f)?, duration.as_deref())?
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Console {
            role,
            service,
            region,
            destination,
            print,
        } => {
            let landing = commands::ConsoleLanding {
                service: service.as_deref(),
                region: region.as_deref(),
                destination: destination.as_deref(),
            };
            let url = commands::console_url(&role, &landing)?;
            if print || open::that(&url).is_err() {
                println!("{url}");
            } else {
                eprintln!("Opened the AWS console for {role} in your browser.");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Exec {
            role,
            duration,
            ecs_server,
            command,
        } => {
            let code = if ecs_server {
                commands::exec_with_endpoint(&role, duration, &command)?
            } else {
                commands::exec(&role, duration.as_deref(), &command)?
            };
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        ClientCommand::ServeCredentials {
            roles,
            duration,
            listen,
            uri_host,
            env_file,
        } => {
            serve_credentials(roles, duration, listen, uri_host, env_file)?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Configure { sso, dry_run } => {
            print!("{}", commands::configure(sso, dry_run)?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::ConvertCredentials {
            format: f,
            region,
            profile,
        } => {
            let f = format(&f)?;
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read stdin")?;
            let out = convert_credentials(
                &input,
                f,
                &FormatOptions {
                    region: region.as_deref(),
                    profile: &profile,
                },
            )?;
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `rolegate serve-credentials`: checks the login and each role once (so a mistake shows
/// now, not in a container later), prints the variables, serves until stopped.
fn serve_credentials(
    roles: Vec<String>,
    duration: Option<String>,
    listen: std::net::SocketAddr,
    uri_host: Option<String>,
    env_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use rolegate::cli::container::CredentialEndpoint;
    for role in &roles {
        commands::credentials_json_for_sdk(role, duration.as_deref())
            .with_context(|| format!("cannot get credentials for {role}"))?;
    }
    if !listen.ip().is_loopback() {
        eprintln!(
            "rolegate: listening on {listen}: anyone who can reach it and has the token can use these roles"
        );
    }
    let endpoint = CredentialEndpoint::start(listen, roles.clone(), duration)?;
    let uri = |r: &str| endpoint.uri(r, uri_host.as_deref());
    if let Some(path) = env_file {
        let text = format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI={}\nAWS_CONTAINER_AUTHORIZATION_TOKEN={}\n",
            uri(&roles[0]),
            endpoint.token()
        );
        rolegate::cli::settings::write_private(&path, &text)?;
        eprintln!("rolegate: wrote {}", path.display());
    }
    println!(
        "export AWS_CONTAINER_CREDENTIALS_FULL_URI={}",
        uri(&roles[0])
    );
    println!(
        "export AWS_CONTAINER_AUTHORIZATION_TOKEN={}",
        endpoint.token()
    );
    for r in &roles[1..] {
        println!("# {r}: {}", uri(r));
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    eprintln!(
        "rolegate: serving credentials at {}; Ctrl-C stops",
        endpoint.addr()
    );
    endpoint.wait();
    Ok(())
}
