//! The audit log: one JSON line per security event, to stdout or an append-only file.
//!
//! Events are a typed enum ([`Event`]): every kind of record and its fields are declared
//! here, once, and built by the access core (the layer check keeps `web` and `cli` from
//! importing this module). No field can carry a credential, token, code or secret: they
//! are ids, names and reasons (the tests read the audit file for every secret issued).
//!
//! **Invariant: no credential or token without its record.** What the core hands out
//! (AWS credentials, token responses, sessions) is wrapped in [`Audited`], which only
//! [`AuditLog::release`] builds, after the record was written. A function that returns
//! something to a client must return an `Audited` value, so forgetting the record does not
//! compile, and a write that fails means nothing is released.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Refused,
    Denied,
    Revoked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Refused => "refused",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
        }
    }
}

/// Who a record is about: the person (IdP and subject).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Person {
    pub idp: String,
    pub subject: String,
}

/// Which client asked: path (`web_console`, `web_cli`, `cli`, `sdk`, `mobile`), its OAuth
/// client id, and for apps the app.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Client {
    pub client_path: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// What a credential was issued as, for the `issuance` records.
#[derive(Debug, Clone, Serialize)]
pub struct IssuanceFacts {
    pub role: String,
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: u32,
    pub sts_mode: &'static str,
}

/// Every kind of audit record. The `event` field of a line is the variant's name.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A browser sign-in, successful or not.
    Login {
        #[serde(flatten)]
        person: Person,
        outcome: Outcome,
        reason: String,
    },
    /// Written before STS is called: credentials AWS may mint for an answer that never
    /// arrives are on record too.
    IssuanceAttempt {
        attempt_id: String,
        #[serde(flatten)]
        person: Person,
        #[serde(flatten)]
        issued: IssuanceFacts,
        #[serde(flatten)]
        client: Client,
    },
    /// The outcome of an STS call (success or failure).
    Issuance {
        attempt_id: String,
        #[serde(flatten)]
        person: Person,
        display_name: String,
        rules: Vec<String>,
        #[serde(flatten)]
        issued: IssuanceFacts,
        source_identity: Option<String>,
        tags: serde_json::Map<String, Json>,
        transitive_tag_keys: Vec<String>,
        session_policy: Option<String>,
        #[serde(flatten)]
        client: Client,
        outcome: Outcome,
        reason: String,
        sts_request_id: Option<String>,
        /// The STS region that answered (or failed last).
        sts_region: String,
    },
    /// A credential request refused before STS (same `event` name as the outcome of an
    /// issuance, `outcome: refused`).
    #[serde(rename = "issuance")]
    IssuanceRefused {
        #[serde(flatten)]
        person: Person,
        display_name: String,
        role: String,
        #[serde(flatten)]
        client: Client,
        outcome: Outcome,
        reason: String,
    },
    /// A CLI, SDK or app login (a token family) started, or an approval denied.
    CliLogin {
        #[serde(flatten)]
        person: Person,
        #[serde(flatten)]
        client: Client,
        device_name: String,
        outcome: Outcome,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        session_expires_in_seconds: Option<u64>,
    },
    /// A login's refresh token rotated (or the successor of a just-rotated one handed out).
    TokenRefresh {
        #[serde(flatten)]
        person: Person,
        #[serde(flatten)]
        client: Client,
        device_name: String,
        outcome: Outcome,
    },
    /// A CLI, SDK or app login ended: logout, reuse of a refresh token, replay of its code.
    CliLogout {
        #[serde(flatten)]
        person: Person,
        #[serde(flatten)]
        client: Client,
        device_name: String,
        outcome: Outcome,
        reason: String,
    },
    /// A token exchange (RFC 8693): a broker access token issued to an app, or a refusal.
    TokenExchange {
        #[serde(flatten)]
        person: Person,
        #[serde(flatten)]
        client: Client,
        outcome: Outcome,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        issued_token_type: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dpop_bound: Option<bool>,
    },
    /// Access ended by someone: one item or everything a person held.
    Revocation {
        by: String,
        source: &'static str,
        #[serde(flatten)]
        person: Person,
        /// The person's tag (their id in the admin area).
        tag: String,
        /// The kinds of the items ended (`session`, `login`, …).
        items: Vec<String>,
        reason: String,
        outcome: Outcome,
    },
    /// A lock placed on a person, a group or a role.
    LockPlaced {
        by: String,
        source: &'static str,
        lock_id: String,
        target: String,
        reason: String,
        expires: Option<u64>,
    },
    /// A lock removed.
    LockRemoved {
        by: String,
        source: &'static str,
        lock_id: String,
        target: String,
        reason: String,
    },
    /// A request refused because a lock applies (what was asked, which lock).
    AccessLocked {
        #[serde(flatten)]
        person: Person,
        what: &'static str,
        lock_id: String,
        outcome: Outcome,
    },
    /// The person checked again at their IdP: the groups before and after, or why not.
    Revalidation {
        #[serde(flatten)]
        person: Person,
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        groups_before: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        groups_after: Option<Vec<String>>,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// Credentials already issued, recalled on one role: a deny policy for the person's
    /// sessions issued before `issued_before` (or the attempt that failed), or statements
    /// swept once every credential they covered had expired.
    Recall {
        by: String,
        source: &'static str,
        #[serde(flatten)]
        person: Person,
        tag: String,
        role_arn: String,
        /// `applied`, `widened`, `failed`, `swept`.
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        issued_before: Option<String>,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    },
    /// Just-in-time access: a request for an eligible role, each decision, the start, the
    /// end (and why), a break-glass use, or a refused request or decision.
    Elevation {
        /// `request`, `approval`, `decision`, `start`, `end`, `break_glass`, `refused`.
        step: &'static str,
        /// The requester.
        #[serde(flatten)]
        person: Person,
        role: String,
        /// The request's id (hashed: it is not a secret, but ids stay out of logs).
        request: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        by: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ticket: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_seconds: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        #[serde(skip_serializing_if = "String::is_empty")]
        comment: String,
        outcome: Outcome,
    },
    /// A SCIM request from an IdP: a change to its directory, or why it was refused.
    Provisioning {
        idp: String,
        /// `create`, `replace`, `patch`, `delete`, or `read` (refusals only).
        operation: &'static str,
        /// `User` or `Group` (empty when refused before a resource was known).
        resource: &'static str,
        #[serde(skip_serializing_if = "String::is_empty")]
        id: String,
        /// The userName or displayName.
        #[serde(skip_serializing_if = "String::is_empty")]
        name: String,
        /// What changed for access: `deactivated`, `reactivated`, `groups`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        effects: Vec<String>,
        outcome: Outcome,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// A request to an OAuth endpoint refused before any grant was looked at (malformed:
    /// a repeated parameter, another content type, a body too large).
    OauthRequestRefused {
        endpoint: String,
        outcome: Outcome,
        reason: String,
    },
}

impl Event {
    /// The person the record is about, if any.
    pub fn person(&self) -> Option<&Person> {
        match self {
            Self::Login { person, .. }
            | Self::IssuanceAttempt { person, .. }
            | Self::Issuance { person, .. }
            | Self::IssuanceRefused { person, .. }
            | Self::CliLogin { person, .. }
            | Self::TokenRefresh { person, .. }
            | Self::CliLogout { person, .. }
            | Self::TokenExchange { person, .. }
            | Self::Revocation { person, .. }
            | Self::Recall { person, .. }
            | Self::Elevation { person, .. }
            | Self::AccessLocked { person, .. }
            | Self::Revalidation { person, .. } => (!person.subject.is_empty()).then_some(person),
            Self::OauthRequestRefused { .. }
            | Self::Provisioning { .. }
            | Self::LockPlaced { .. }
            | Self::LockRemoved { .. } => None,
        }
    }
}

/// A value released together with its audit record. Only [`AuditLog::release`] makes one,
/// after writing the record.
#[derive(Debug)]
pub struct Audited<T>(T);

impl<T> Audited<T> {
    pub fn into_inner(self) -> T {
        self.0
    }

    pub fn get(&self) -> &T {
        &self.0
    }

    /// The same release, carrying a value derived from this one (credentials turned into
    /// a console sign-in URL).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Audited<U> {
        Audited(f(self.0))
    }

    /// As [`Audited::map`], for a derivation that can fail.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Audited<U>, E> {
        f(self.0).map(Audited)
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

    /// The line an event is written as (also kept in the person's recent history).
    pub fn line(event: &Event, ctx: &RequestContext) -> String {
        let mut record = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
        if let Some(obj) = record.as_object_mut() {
            obj.insert(
                "time".into(),
                json!(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            );
            obj.insert("request_id".into(), json!(ctx.request_id));
            obj.insert("client_ip".into(), json!(ctx.client_ip));
            obj.insert("user_agent".into(), json!(ctx.user_agent));
        }
        record.to_string()
    }

    fn write_line(&self, line: &str) -> Result<(), AuditError> {
        let mut line = line.to_owned();
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

    /// Writes a record; returns the line written. For refusals and records that release
    /// nothing (a failed write is the caller's to log: the refusal stands anyway).
    pub fn record(&self, ctx: &RequestContext, event: &Event) -> Result<String, AuditError> {
        let line = Self::line(event, ctx);
        self.write_line(&line)?;
        Ok(line)
    }

    /// Writes the record of `value`, then releases it: the only way to an [`Audited`].
    pub fn release<T>(
        &self,
        ctx: &RequestContext,
        event: &Event,
        value: T,
    ) -> Result<(Audited<T>, String), AuditError> {
        let line = self.record(ctx, event)?;
        Ok((Audited(value), line))
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
        log.record(
            &ctx,
            &Event::Login {
                person: Person {
                    idp: "corp".into(),
                    subject: "alice".into(),
                },
                outcome: Outcome::Success,
                reason: String::new(),
            },
        )
        .unwrap();
        let line = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["event"], "login");
        assert_eq!(v["subject"], "alice");
        assert_eq!(v["outcome"], "success");
    }

    #[test]
    fn nothing_is_released_when_the_record_cannot_be_written() {
        let log = AuditLog::file(Path::new("/dev/full")).unwrap();
        let event = Event::OauthRequestRefused {
            endpoint: "/oauth/token".into(),
            outcome: Outcome::Refused,
            reason: "x".into(),
        };
        assert!(
            log.release(&RequestContext::default(), &event, "secret")
                .is_err()
        );
    }

    #[test]
    fn a_refusal_keeps_the_issuance_event_name() {
        let e = Event::IssuanceRefused {
            person: Person::default(),
            display_name: String::new(),
            role: "r".into(),
            client: Client {
                client_path: "mobile",
                client_id: None,
                app: Some("app1".into()),
            },
            outcome: Outcome::Refused,
            reason: "not_granted".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "issuance");
        assert_eq!(v["outcome"], "refused");
        assert_eq!(v["app"], "app1");
        assert_eq!(v["client_path"], "mobile");
    }
}
