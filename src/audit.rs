//! The audit log: one JSON line per security event (sign-ins, credential issuances and
//! refusals, written by the access core), to stdout or an append-only file.
//!
//! An audit record must never hold a credential, token, code or secret. [`LoginEvent`]
//! has no field that could carry one; issuance records are JSON built by
//! `access::issuer` from non-secret values only (the type does not enforce this for
//! [`AuditLog::record`]: its callers do, and the tests read the audit file for every
//! secret they were issued). Writing is synchronous and its failure is an error, so a
//! caller that must not proceed unaudited (issuance, session creation) can fail closed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Value as Json, json};

#[derive(Debug, thiserror::Error)]
#[error("cannot write the audit log {target}: {source}")]
pub struct AuditError {
    target: String,
    #[source]
    source: std::io::Error,
}

enum Sink {
    Stdout,
    File { path: PathBuf, file: Mutex<File> },
}

pub struct AuditLog {
    sink: Sink,
}

/// Where a request came from, for every event.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: String,
    pub user_agent: String,
}

/// A sign-in attempt and its outcome.
#[derive(Debug, Clone)]
pub struct LoginEvent<'a> {
    pub idp: &'a str,
    pub subject: &'a str,
    pub outcome: Outcome,
    pub reason: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl AuditLog {
    pub fn stdout() -> Self {
        Self { sink: Sink::Stdout }
    }

    /// Opens (creating it and its folder if needed) an append-only audit file.
    pub fn file(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AuditError {
                target: dir.display().to_string(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                target: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            sink: Sink::File {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
        })
    }

    fn write(&self, mut record: Json, ctx: &RequestContext) -> Result<(), AuditError> {
        if let Some(obj) = record.as_object_mut() {
            obj.insert(
                "time".into(),
                json!(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            );
            obj.insert("request_id".into(), json!(ctx.request_id));
            obj.insert("client_ip".into(), json!(ctx.client_ip));
            obj.insert("user_agent".into(), json!(ctx.user_agent));
        }
        let mut line = record.to_string();
        line.push('\n');
        match &self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())
                    .and_then(|_| out.flush())
                    .map_err(|source| AuditError {
                        target: "stdout".into(),
                        source,
                    })
            }
            Sink::File { path, file } => {
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                // One write call per line with O_APPEND: lines from concurrent writers
                // (and other processes) never interleave.
                f.write_all(line.as_bytes()).map_err(|source| AuditError {
                    target: path.display().to_string(),
                    source,
                })
            }
        }
    }

    pub fn login(&self, ctx: &RequestContext, e: &LoginEvent<'_>) -> Result<(), AuditError> {
        self.write(
            json!({
                "event": "login",
                "idp": e.idp,
                "subject": e.subject,
                "outcome": e.outcome.as_str(),
                "reason": e.reason,
            }),
            ctx,
        )
    }

    /// For events defined in other modules (issuances and refusals): a JSON object that
    /// must hold no secret, to which time and request context are added.
    pub fn record(&self, ctx: &RequestContext, event: Json) -> Result<(), AuditError> {
        self.write(event, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_file_in_a_missing_folder_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not/yet/there/audit.jsonl");
        let log = AuditLog::file(&path).unwrap();
        let ctx = RequestContext::default();
        log.login(
            &ctx,
            &LoginEvent {
                idp: "corp",
                subject: "alice",
                outcome: Outcome::Success,
                reason: "",
            },
        )
        .unwrap();
        let line = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["event"], "login");
        assert_eq!(v["subject"], "alice");
    }
}
