//! The broker's own subcommands (server build): `serve`, `check-config`, `explain`,
//! `keys generate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};

use rolegate::config::{self, Config, IdpProtocol, StoreConfig};
use rolegate::{idp, keys, mapping, telemetry, web};

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Run the broker.
    Serve {
        /// Configuration file.
        #[arg(long, env = "ROLEGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and print a summary (same checks as `serve`).
    CheckConfig {
        /// Configuration file.
        #[arg(env = "ROLEGATE_CONFIG")]
        path: PathBuf,
    },
    /// Show, rule by rule, which roles an identity with the given claims would get, and why.
    Explain {
        #[arg(long, env = "ROLEGATE_CONFIG")]
        config: PathBuf,
        /// The IdP the claims come from (decides the groups and user-name claims).
        #[arg(long)]
        idp: String,
        /// A JSON file with the claims (as in a decoded ID token).
        #[arg(long)]
        claims: PathBuf,
        /// Take the groups from the IdP's SCIM directory (in the configured state store)
        /// for this subject, as a request would see them with `groups_from = "directory"`.
        #[arg(long)]
        groups_from_directory: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Manage the broker's own signing keys (web_identity mode).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Administer access straight against the state store: who has what, revoke, lock.
    Admin(super::admin::AdminArgs),
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write a new private key for web_identity mode (PKCS#8 PEM, mode 0600) and print its
    /// key id. Add it to [web_identity] keys; make it active once AWS has seen the JWKS.
    Generate {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Algorithm::Es256)]
        algorithm: Algorithm,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Es256,
    Rs256,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(command: ServerCommand) -> anyhow::Result<ExitCode> {
    use ServerCommand as Command;
    match command {
        Command::Serve { config } => {
            let config = load(&config)?;
            serve(config)
        }
        Command::CheckConfig { path } => {
            let config = load(&path)?;
            emit(&summary(&config))
        }
        Command::Explain {
            config,
            idp,
            claims,
            groups_from_directory,
            format,
        } => {
            let config = load(&config)?;
            explain(config, &idp, &claims, groups_from_directory, format)
        }
        Command::Keys(KeysCommand::Generate { out, algorithm }) => generate_key(&out, algorithm),
        Command::Admin(args) => super::admin::run(args),
    }
}

fn generate_key(out: &Path, algorithm: Algorithm) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let alg = match algorithm {
        Algorithm::Es256 => keys::KeyAlgorithm::Es256,
        Algorithm::Rs256 => keys::KeyAlgorithm::Rs256,
    };
    let pem = keys::generate_pem(alg).context("cannot generate a key")?;
    let key = keys::SigningKey::from_pem(&pem).context("the generated key does not load")?;
    // A fresh checkout has no keys/ folder: create it, readable by the owner only.
    if let Some(dir) = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            if out.exists() {
                format!(
                    "{} already exists (an existing file is never overwritten)",
                    out.display()
                )
            } else {
                format!("cannot create {}", out.display())
            }
        })?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} ({}, kid {})",
        out.display(),
        alg.as_str(),
        key.kid
    );
    println!(
        "\nAs the broker's first key, add it active:\n\n[web_identity]\nkeys = [{{ file = \"{}\", active = true }}]\n",
        out.display()
    );
    println!(
        "To rotate, add it with active = false next to the active key, wait until AWS has\nfetched the new JWKS, then make it the only active one."
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`rolegate check-config x | head`) is a normal end.
fn emit(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    // `ConfigErrors` lists every problem; print it whole rather than as an anyhow chain.
    config::load(path).map_err(|errors| anyhow::anyhow!("{}", errors.to_string().trim_end()))
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    telemetry::init(config.server.log_format, &config.server.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store = match &config.session.store {
            StoreConfig::Memory => "memory",
            StoreConfig::Redis { .. } => "redis",
            StoreConfig::RedisCluster { .. } => "redis-cluster",
            StoreConfig::RedisSentinel(_) => "redis-sentinel",
        };
        let public_url = config.server.public_url.to_string();
        let app = web::Application::build(config)
            .await
            .context("cannot start the server")?;
        tracing::info!(address = %app.local_addr(), %public_url, store, "rolegate listening");
        let handle = app.shutdown_handle();
        let server = tokio::spawn(app.run_until_stopped());
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down: draining in-flight requests");
        // SIGTERM is the orchestrator's rolling stop; Ctrl-C is a person who wants
        // the process gone now.
        if signal == "SIGTERM" {
            handle.shutdown_after_pre_stop().await;
        } else {
            handle.shutdown().await;
        }
        server
            .await
            .context("server task failed")?
            .context("server failed")?;
        tracing::info!("rolegate stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can still be stopped by Ctrl-C via tokio's handler.
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The `check-config` summary.
fn summary(c: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid", c.source.display());
    let store = match &c.session.store {
        StoreConfig::Memory => "memory (single instance; sessions lost on restart)".to_owned(),
        StoreConfig::Redis { .. } => format!("redis (key prefix {:?})", c.session.key_prefix),
        StoreConfig::RedisCluster { .. } => {
            format!("redis-cluster (key prefix {:?})", c.session.key_prefix)
        }
        StoreConfig::RedisSentinel(t) => format!(
            "redis-sentinel (master {:?}, {} sentinels, key prefix {:?})",
            t.service,
            t.sentinels.len(),
            c.session.key_prefix
        ),
    };
    let _ = writeln!(
        out,
        "  server:   listen {}, public URL {}, store {}",
        c.server.listen, c.server.public_url, store
    );
    let _ = writeln!(
        out,
        "  aws:      partition {}, region {}",
        c.aws.partition, c.aws.region
    );
    let _ = writeln!(out, "  IdPs ({}):", c.idps.len());
    for i in &c.idps {
        let detail = match &i.protocol {
            IdpProtocol::Oidc(o) => format!("issuer {}", o.issuer),
            IdpProtocol::Saml(s) => format!(
                "{} pinned signing cert(s)",
                s.signing_cert_sha256.len() + s.signing_cert_pems.len()
            ),
        };
        let _ = writeln!(
            out,
            "    {:<20} {:<5} {:?}  {}",
            i.id.as_str(),
            i.protocol.kind(),
            i.display_name,
            detail
        );
    }
    let _ = writeln!(out, "  accounts ({}):", c.accounts.len());
    for a in &c.accounts {
        let _ = writeln!(
            out,
            "    {:<20} {}  {:?}",
            a.id.as_str(),
            a.number,
            a.display_name
        );
    }
    let _ = writeln!(out, "  roles ({}):", c.roles.len());
    for r in &c.roles {
        let _ = writeln!(
            out,
            "    {:<20} {}  {}, max {}{}",
            r.id.as_str(),
            r.arn,
            r.sts_mode.as_str(),
            r.max_session_duration,
            if r.session_policy.is_some() {
                ", session policy"
            } else {
                ""
            }
        );
    }
    let rules = c.rules.rules();
    let count = |f: fn(&mapping::Effect) -> bool| rules.iter().filter(|r| f(&r.effect)).count();
    let denies = count(|e| matches!(e, mapping::Effect::Deny { .. }));
    let eligible = count(|e| matches!(e, mapping::Effect::Eligible { .. }));
    let _ = writeln!(
        out,
        "  rules ({}): {} grant, {} deny, {} eligible",
        rules.len(),
        rules.len() - denies - eligible,
        denies,
        eligible
    );
    for r in rules {
        let (kind, roles) = match &r.effect {
            mapping::Effect::Grant { roles, .. } => (
                "grant",
                roles
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect::<Vec<_>>(),
            ),
            mapping::Effect::Deny { roles } => (
                "deny",
                roles.iter().map(|p| p.as_str().to_owned()).collect(),
            ),
            mapping::Effect::Eligible { roles, .. } => (
                "eligible",
                roles.iter().map(|r| r.as_str().to_owned()).collect(),
            ),
        };
        let _ = writeln!(
            out,
            "    {:<20} {:<5} {}",
            r.id.as_str(),
            kind,
            roles.join(", ")
        );
    }
    out
}

fn explain(
    config: Config,
    idp_id: &str,
    claims_path: &Path,
    from_directory: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let Some(idp_config) = config.idp(idp_id) else {
        let known: Vec<&str> = config.idps.iter().map(|i| i.id.as_str()).collect();
        bail!("unknown IdP {idp_id:?} (configured: {})", known.join(", "));
    };
    let text = std::fs::read_to_string(claims_path)
        .with_context(|| format!("cannot read claims file {}", claims_path.display()))?;
    let claims: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", claims_path.display()))?;
    let mut identity = idp::identity_from_claims(idp_config, claims).with_context(|| {
        format!(
            "{} cannot be used as claims of IdP {idp_id}",
            claims_path.display()
        )
    })?;
    if from_directory {
        if idp_config.scim.is_none() {
            bail!("IdP {idp_id} does not provision over SCIM (no [idp.scim] table)");
        }
        let config = std::sync::Arc::new(config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        let membership = runtime.block_on(async {
            let core = rolegate::access::admin::AdminCore::open(config.clone())
                .await
                .context("cannot open the store")?;
            core.directory_membership(&identity)
                .await
                .context("cannot read the IdP's directory")
        })?;
        let note = match &membership {
            None => "not in the IdP's directory: no groups from it".to_owned(),
            Some(m) if !m.active => {
                "DEACTIVATED in the IdP's directory: every request would be refused".to_owned()
            }
            Some(m) => format!("directory groups: {}", m.groups.join(", ")),
        };
        eprintln!("{note}");
        identity.groups = membership
            .map(|m| m.groups)
            .unwrap_or_default()
            .iter()
            .filter_map(|g| rolegate::domain::GroupName::parse(g).ok())
            .collect();
        return explain_identity(&config, &identity, format);
    }
    explain_identity(&config, &identity, format)
}

fn explain_identity(
    config: &Config,
    identity: &rolegate::mapping::IdentityClaims,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let evaluation = config.rules.evaluate(identity);
    match format {
        Format::Text => emit(&mapping::render_text(identity, &evaluation)),
        Format::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&mapping::render_json(identity, &evaluation))?
        )),
    }
}
