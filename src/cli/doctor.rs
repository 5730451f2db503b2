//! `rolegate doctor`: what a developer checks when credentials do not come, in one
//! command: the broker answers, the login is valid (and for how long), the clocks agree,
//! the AWS config block is in place, and the client's folder is readable only by its
//! owner. Each check is a line; any failure makes the exit code non-zero.
//!
//! The judgements are pure functions (unit-tested); gathering the facts is the thin part.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::CliError;
use super::broker;
use super::settings;

/// Clocks further apart than this make tokens and credentials look expired or not yet
/// valid on one side (the broker's DPoP and token checks allow about a minute).
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The report as printed, and whether everything passed.
pub fn render(checks: &[Check]) -> (String, bool) {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<6} {:<12} {}\n",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    let ok = checks.iter().all(|c| c.ok);
    out.push_str(if ok {
        "Everything looks right.\n"
    } else {
        "Something needs attention (see FAIL above).\n"
    });
    (out, ok)
}

/// The clock check: `local - broker`, in whole seconds (HTTP dates have no fraction).
pub fn judge_skew(local: SystemTime, broker: SystemTime) -> Check {
    let (ahead, by) = match local.duration_since(broker) {
        Ok(d) => ("ahead of", d),
        Err(e) => ("behind", e.duration()),
    };
    let by = Duration::from_secs(by.as_secs());
    if by > MAX_SKEW {
        Check::fail(
            "clock",
            format!(
                "this machine's clock is {} {ahead} the broker's: tokens and credentials may be refused; set the clock (NTP)",
                humantime::format_duration(by)
            ),
        )
    } else {
        Check::ok(
            "clock",
            format!(
                "within {} of the broker's",
                humantime::format_duration(MAX_SKEW)
            ),
        )
    }
}

/// The login check from `/api/v1/me`'s end time (RFC 3339) and the current time.
pub fn judge_login(who: &str, ends: Option<&str>, now: SystemTime) -> Check {
    let Some(end) = ends.and_then(|e| humantime::parse_rfc3339_weak(e).ok()) else {
        return Check::ok("login", format!("valid, as {who}"));
    };
    match end.duration_since(now) {
        Ok(left) => Check::ok(
            "login",
            format!(
                "valid, as {who}; ends in {}",
                humantime::format_duration(Duration::from_secs(left.as_secs() / 60 * 60))
            ),
        ),
        Err(_) => Check::fail("login", "ended; run `rolegate login`"),
    }
}

/// The AWS config check: is rolegate's block in the file?
pub fn judge_aws_config(path: &Path, text: Option<&str>) -> Check {
    let block = text.and_then(super::commands::profiles_in_block);
    match block {
        Some(n) => Check::ok(
            "aws config",
            format!("{n} rolegate profile(s) in {}", path.display()),
        ),
        None => Check::fail(
            "aws config",
            format!(
                "no rolegate block in {}; run `rolegate configure`",
                path.display()
            ),
        ),
    }
}

/// The permissions check: paths others than the owner may read or enter.
pub fn judge_permissions(open: &[PathBuf]) -> Check {
    if open.is_empty() {
        Check::ok("permissions", "the client's folder is readable only by you")
    } else {
        Check::fail(
            "permissions",
            format!(
                "readable by others: {} (chmod go-rwx)",
                open.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}

/// Every check, in order; later checks that need the broker are skipped when it is
/// unknown or does not answer.
pub fn doctor() -> Result<Vec<Check>, CliError> {
    let mut checks = vec![];
    match broker::broker_url(None) {
        Err(_) => checks.push(Check::fail(
            "broker",
            "none configured; run `rolegate login --broker https://…` once",
        )),
        Ok(url) => match broker::broker_date(&url) {
            Err(e) => checks.push(Check::fail("broker", e.to_string())),
            Ok(date) => {
                checks.push(Check::ok("broker", format!("{url} answers")));
                match date {
                    Some(d) => checks.push(judge_skew(SystemTime::now(), d)),
                    None => checks.push(Check::fail(
                        "clock",
                        "the broker sent no Date header to compare with",
                    )),
                }
                checks.push(login_check());
            }
        },
    }
    checks.push(Check::ok(
        "tokens",
        format!("kept in {}", settings::tokens_location()?),
    ));
    let aws = super::commands::aws_config_path()?;
    let text = std::fs::read_to_string(&aws).ok();
    checks.push(judge_aws_config(&aws, text.as_deref()));
    checks.push(judge_permissions(&open_paths(&settings::dir()?)));
    Ok(checks)
}

fn login_check() -> Check {
    if settings::load_tokens().ok().flatten().is_none() {
        return Check::fail("login", "not logged in; run `rolegate login`");
    }
    match broker::api("GET", "/api/v1/me", None) {
        Ok(me) => judge_login(
            me["username"].as_str().unwrap_or("?"),
            me["session_expires_at"].as_str(),
            SystemTime::now(),
        ),
        Err(e) => Check::fail("login", e.to_string()),
    }
}

/// The client folder, its subfolders and files, where group or others have any access.
fn open_paths(dir: &Path) -> Vec<PathBuf> {
    let mut open = vec![];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.permissions().mode() & 0o077 != 0 {
                open.push(p.clone());
            }
            if meta.is_dir()
                && let Ok(entries) = std::fs::read_dir(&p)
            {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
        open.sort();
    }
    #[cfg(not(unix))]
    let _ = dir;
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn clocks_a_minute_apart_pass_and_further_fail_both_ways() {
        assert!(judge_skew(at(1000), at(1000)).ok);
        assert!(judge_skew(at(1060), at(1000)).ok);
        assert!(judge_skew(at(940), at(1000)).ok);
        let ahead = judge_skew(at(1061), at(1000));
        assert!(
            !ahead.ok && ahead.detail.contains("1m 1s ahead of"),
            "{ahead:?}"
        );
        let behind = judge_skew(at(1000), at(1300));
        assert!(
            !behind.ok && behind.detail.contains("5m behind"),
            "{behind:?}"
        );
    }

    #[test]
    fn a_login_says_how_long_it_has_left_or_that_it_ended() {
        let now = humantime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        let c = judge_login("alice", Some("2026-12-03T17:30:20Z"), now);
        assert!(c.ok && c.detail.contains("ends in 7h 30m"), "{c:?}");
        let c = judge_login("alice", Some("2026-12-03T09:00:00Z"), now);
        assert!(!c.ok && c.detail.contains("rolegate login"), "{c:?}");
    }

    #[test]
    fn the_aws_config_needs_rolegates_block() {
        let p = Path::new("/home/x/.aws/config");
        assert!(!judge_aws_config(p, None).ok);
        assert!(!judge_aws_config(p, Some("[profile other]\nregion = x\n")).ok);
        let roles = serde_json::json!({"accounts": [{"id": "prod", "number": "1", "roles": [
            {"id": "a", "arn": "arn:aws:iam::1:role/A"}, {"id": "b", "arn": "arn:aws:iam::1:role/B"}]}]});
        let block = super::super::commands::profiles_block(
            &roles,
            "{account}-{role}",
            &super::super::commands::ProfileForm::CredentialProcess { exe: "rolegate" },
        );
        let c = judge_aws_config(p, Some(&format!("[default]\n{block}")));
        assert!(
            c.ok && c.detail.starts_with("2 rolegate profile(s)"),
            "{c:?}"
        );
    }

    #[test]
    fn the_report_fails_when_any_check_fails() {
        let (out, ok) = render(&[Check::ok("a", "fine"), Check::fail("b", "broken")]);
        assert!(!ok);
        assert!(out.contains("FAIL   b"), "{out}");
        assert!(render(&[Check::ok("a", "fine")]).1);
    }

    #[cfg(unix)]
    #[test]
    fn files_others_can_read_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir(d.path().join("cache")).unwrap();
        std::fs::set_permissions(
            d.path().join("cache"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let f = d.path().join("cache").join("r.json");
        std::fs::write(&f, "{}").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(open_paths(d.path()).is_empty());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(open_paths(d.path()), vec![f]);
    }
}
