//! `rolegate request` and `rolegate requests`: asking for an eligible role for a while,
//! waiting for the decision with a progress line, and listing one's requests.

use std::io::Write as _;
use std::time::{Duration, Instant};

use super::CliError;
use super::broker;
use crate::wire::{ElevationAsk, ElevationStatus};

fn status_of(v: serde_json::Value) -> Result<ElevationStatus, CliError> {
    serde_json::from_value(v)
        .map_err(|e| CliError::Broker(format!("the broker's answer is not a request: {e}")))
}

fn line(r: &ElevationStatus) -> String {
    let detail = match r.status.as_str() {
        "pending" => format!("{} of {} approvals", r.approvals.len(), r.approvals_needed),
        "approved" => match r.until {
            Some(u) => {
                let left = u.saturating_sub(super::settings::now_unix());
                if left == 0 {
                    "over".to_owned()
                } else {
                    format!(
                        "{} left",
                        humantime::format_duration(Duration::from_secs(left))
                    )
                }
            }
            None => String::new(),
        },
        _ => r
            .decided_by
            .as_ref()
            .map(|d| {
                format!(
                    "by {d}{}",
                    r.comment
                        .as_ref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default(),
    };
    format!(
        "{:<20} {:<9} {:<8} {detail}",
        r.role,
        r.status,
        humantime::format_duration(Duration::from_secs(r.seconds)).to_string()
    )
}

/// Asks for `role` for `duration`; with `wait`, polls until the request is decided (or
/// `wait_for` passes), printing its state on one line of stderr.
pub fn request(
    ask: &ElevationAsk,
    wait: bool,
    wait_for: Duration,
) -> Result<(String, bool), CliError> {
    let body = serde_json::to_value(ask).map_err(|e| CliError::Broker(e.to_string()))?;
    let mut r = status_of(broker::api("POST", "/api/v1/requests", Some(&body))?)?;
    let started = Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = String::new();
    while wait && r.status == "pending" && started.elapsed() < wait_for {
        let now = format!(
            "waiting for approval of {} ({} of {}), {}s",
            r.role,
            r.approvals.len(),
            r.approvals_needed,
            started.elapsed().as_secs()
        );
        if tty {
            eprint!("\r{now}   ");
            let _ = std::io::stderr().flush();
        } else if r.approvals.len().to_string() != last {
            eprintln!("{now}");
            last = r.approvals.len().to_string();
        }
        std::thread::sleep(Duration::from_secs(2));
        r = status_of(broker::api(
            "GET",
            &format!("/api/v1/requests/{}", r.id),
            None,
        )?)?;
    }
    if tty && wait {
        eprintln!();
    }
    let granted = r.status == "approved";
    let out = match r.status.as_str() {
        "approved" => format!(
            "{} is yours until {} (`rolegate credentials --role {}`; profiles from `rolegate configure` work).\n",
            r.role,
            r.until
                .map(|u| humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(u)
                )
                .to_string())
                .unwrap_or_default(),
            r.role
        ),
        "pending" if wait => format!(
            "Still waiting for approval: {} (`rolegate requests` shows it).\n",
            r.id
        ),
        "pending" => format!(
            "Requested: the approvers are told. `rolegate requests` shows its state.\n{}\n",
            r.id
        ),
        "denied" => format!(
            "Denied{}.\n",
            r.decided_by
                .as_ref()
                .map(|d| format!(
                    " by {d}{}",
                    r.comment
                        .as_ref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                ))
                .unwrap_or_default()
        ),
        other => format!("The request is {other}.\n"),
    };
    Ok((out, granted || (!wait && r.status == "pending")))
}

/// The caller's requests, newest first.
pub fn requests() -> Result<String, CliError> {
    let list = broker::api("GET", "/api/v1/requests", None)?;
    let list: Vec<ElevationStatus> = serde_json::from_value(list).map_err(|e| {
        CliError::Broker(format!(
            "the broker's answer is not a list of requests: {e}"
        ))
    })?;
    if list.is_empty() {
        return Ok(
            "No requests. `rolegate request --role ROLE --for 1h --reason WHY` asks for one.\n"
                .into(),
        );
    }
    let mut out = format!("{:<20} {:<9} {:<8} detail\n", "role", "state", "for");
    for r in &list {
        out.push_str(&line(r));
        out.push('\n');
    }
    Ok(out)
}
