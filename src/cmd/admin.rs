//! `rolegate admin …`: the admin area's actions straight against the state store, for when
//! the web UI is down (break-glass) or for scripts. The same core as the admin area
//! (`access::admin::AdminCore`), audited the same way, with the operator as the actor.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use rolegate::access::RequestContext;
use rolegate::access::admin::{Actor, ActorSource, AdminCore, AdminError, PersonTag};
use rolegate::access::locks::{Lock, LockTarget};

#[derive(Args)]
pub struct AdminArgs {
    /// The broker's configuration (its store and audit log are used).
    #[arg(long, env = "ROLEGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Who acts, for the audit record (default: $USER).
    #[arg(long = "as", global = true)]
    operator: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Find people with live access (e-mail, user name, subject, or a group), or show one.
    Who {
        /// What to look for.
        query: Option<String>,
        #[arg(long, requires = "subject")]
        idp: Option<String>,
        #[arg(long, requires = "idp")]
        subject: Option<String>,
    },
    /// End one item (`--item`, an id `who` prints) or everything a person holds.
    Revoke {
        #[arg(long)]
        idp: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        item: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Lock a person (IDP:SUBJECT), a group or a role.
    Lock {
        #[arg(long, conflicts_with_all = ["group", "role"])]
        person: Option<String>,
        #[arg(long, conflicts_with = "role")]
        group: Option<String>,
        /// With --group: only that IdP's group.
        #[arg(long, requires = "group")]
        idp: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        reason: String,
        /// For how long (e.g. 2h); default: until unlocked.
        #[arg(long = "for", conflicts_with = "until")]
        duration: Option<String>,
        /// Until when (RFC 3339, e.g. 2026-12-31T18:00:00Z).
        #[arg(long)]
        until: Option<String>,
    },
    /// Remove a lock.
    Unlock {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// List the locks.
    Locks,
}

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn lock_json(l: &Lock) -> serde_json::Value {
    json!({
        "id": l.id, "target": l.target, "reason": l.reason, "created_by": l.created_by,
        "created": when(l.created), "expires": l.expires.map(when),
    })
}

fn lock_line(l: &Lock) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{}  {}  until {}{}  by {}: {}",
        l.id,
        l.target,
        l.expires.map(when).unwrap_or_else(|| "unlocked".into()),
        if l.is_active(now) { "" } else { " (ended)" },
        l.created_by,
        l.reason
    )
}

pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = args.config.clone() else {
        bail!("give the broker's configuration with --config FILE (or ROLEGATE_CONFIG)");
    };
    let config = rolegate::config::load(&path)
        .map_err(|errors| anyhow::anyhow!("{}", errors.to_string().trim_end()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let core = AdminCore::open(Arc::new(config))
            .await
            .context("cannot open the store")?;
        let actor = Actor {
            name: format!(
                "operator {}",
                args.operator
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "unknown".into())
            ),
            source: ActorSource::Cli,
        };
        let ctx = RequestContext {
            request_id: format!("cli-{:016x}", rand_id()),
            client_ip: String::new(),
            user_agent: concat!("rolegate-admin/", env!("CARGO_PKG_VERSION")).into(),
        };
        let out = act(&core, args.command, &actor, &ctx, args.json).await;
        // Let the history of what was done reach the store before the process ends.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match out {
            Ok(text) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    })
}

fn rand_id() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

async fn act(
    core: &AdminCore,
    command: AdminCommand,
    actor: &Actor,
    ctx: &RequestContext,
    json: bool,
) -> Result<String, AdminError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let emit = |v: serde_json::Value, text: String| {
        if json { format!("{v:#}\n") } else { text }
    };
    match command {
        AdminCommand::Who {
            query,
            idp: Some(idp),
            subject: Some(subject),
        } => {
            let _ = query;
            let view = core.person(&AdminCore::tag_of(&idp, &subject), 20).await?;
            let items: Vec<serde_json::Value> = view
                .holdings
                .iter()
                .map(|(f, h)| json!({ "item": f, "holding": h }))
                .collect();
            let mut text = format!("{idp}:{subject} (id {})\n", view.tag);
            for (f, h) in &view.holdings {
                text.push_str(&format!(
                    "  {:<20} {:<8} {:<24} since {}  ends {}  from {}\n    item {f}\n",
                    h.kind.as_str(),
                    h.client_path,
                    h.client_id.clone().unwrap_or_default(),
                    when(h.created),
                    when(h.expires),
                    h.ip
                ));
            }
            if view.holdings.is_empty() {
                text.push_str("  nothing live\n");
            }
            for l in &view.locks {
                text.push_str(&format!("  LOCKED: {}\n", lock_line(l)));
            }
            Ok(emit(
                json!({ "id": view.tag.to_string(), "entry": view.entry.as_ref().map(|e| json!(e)), "items": items, "locks": view.locks.iter().map(lock_json).collect::<Vec<_>>(), "history": view.history }),
                text,
            ))
        }
        AdminCommand::Who { query, .. } => {
            let found = core.search(query.as_deref().unwrap_or(""), 100).await?;
            let text = if found.is_empty() {
                "nobody with live access matches\n".to_owned()
            } else {
                found
                    .iter()
                    .map(|(t, e)| {
                        format!(
                            "{}  {}:{}  {}  groups: {}\n",
                            t,
                            e.idp,
                            e.subject,
                            e.email.as_deref().unwrap_or(&e.username),
                            e.groups.join(", ")
                        )
                    })
                    .collect()
            };
            Ok(emit(
                json!(
                    found
                        .iter()
                        .map(|(t, e)| json!({ "id": t.to_string(), "person": e }))
                        .collect::<Vec<_>>()
                ),
                text,
            ))
        }
        AdminCommand::Revoke {
            idp,
            subject,
            item,
            reason,
        } => {
            let tag: PersonTag = AdminCore::tag_of(&idp, &subject);
            let ended = core
                .revoke(&tag, item.as_deref(), actor, &reason, ctx)
                .await?;
            Ok(emit(
                json!({ "revoked": ended.len(), "items": ended }),
                format!("revoked {} item(s) of {idp}:{subject}\n", ended.len()),
            ))
        }
        AdminCommand::Lock {
            person,
            group,
            idp,
            role,
            reason,
            duration,
            until,
        } => {
            let target = match (person, group, role) {
                (Some(p), None, None) => {
                    let (idp, subject) = p
                        .split_once(':')
                        .ok_or_else(|| AdminError::Invalid("--person is IDP:SUBJECT".into()))?;
                    LockTarget::Person {
                        idp: idp.into(),
                        subject: subject.into(),
                    }
                }
                (None, Some(group), None) => LockTarget::Group { idp, group },
                (None, None, Some(role)) => LockTarget::Role { role },
                _ => {
                    return Err(AdminError::Invalid(
                        "lock one of --person, --group or --role".into(),
                    ));
                }
            };
            let expires = match (duration, until) {
                (Some(d), _) => Some(
                    now + humantime::parse_duration(&d)
                        .map_err(|e| AdminError::Invalid(format!("--for {d:?}: {e}")))?
                        .as_secs(),
                ),
                (None, Some(u)) => Some(
                    humantime::parse_rfc3339_weak(&u)
                        .map_err(|e| AdminError::Invalid(format!("--until {u:?}: {e}")))?
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                ),
                (None, None) => None,
            };
            let lock = core.lock(target, &reason, expires, actor, ctx).await?;
            Ok(emit(
                lock_json(&lock),
                format!("locked: {}\n", lock_line(&lock)),
            ))
        }
        AdminCommand::Unlock { id, reason } => {
            let lock = core.unlock(&id, actor, &reason, ctx).await?;
            Ok(emit(
                lock_json(&lock),
                format!("unlocked: {}\n", lock_line(&lock)),
            ))
        }
        AdminCommand::Locks => {
            let locks = core.locks().await?;
            let text = if locks.is_empty() {
                "no locks\n".to_owned()
            } else {
                locks
                    .iter()
                    .map(|l| format!("{}\n", lock_line(l)))
                    .collect()
            };
            Ok(emit(
                json!(locks.iter().map(lock_json).collect::<Vec<_>>()),
                text,
            ))
        }
    }
}
