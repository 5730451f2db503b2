//! Recalling credentials STS already issued: the only code that knows `aws_sdk_iam`.
//!
//! STS credentials cannot be revoked; an IAM policy can deny them. AWS's "revoke active
//! sessions" pattern denies every session of a role issued before a time; rolegate knows
//! whose sessions it issued (each carries the person as `SourceIdentity`), so it narrows
//! the deny to one person: one statement per person in the role's inline policy
//! [`POLICY_NAME`], denying everything when `aws:SourceIdentity` is theirs and
//! `aws:TokenIssueTime` is before the recall. A statement's id carries the person's tag
//! and when the last credential it covers expires, so the [`sweep`] knows when it can go
//! without any other state. When a role's inline policies would pass IAM's size limit
//! the statements are folded into one that denies every session of the role issued
//! before the latest recall ([`widen`]): everyone re-fetches credentials, nobody
//! recalled keeps any.
//!
//! With `[aws] recall_role_name` the broker assumes that role in each account to write
//! the policy (IAM is per account); without it, it uses its own credentials.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use secrecy::ExposeSecret;
use serde_json::{Value as Json, json};

use super::StaticAwsCredentials;
use crate::config::Config;
use crate::domain::{Partition, RoleArn};

/// The inline policy rolegate keeps on a role it recalled credentials of.
pub const POLICY_NAME: &str = "rolegate-recall";

/// IAM's limit on all of a role's inline policies together, in characters (whitespace
/// not counted); our document is written without any.
pub const ROLE_POLICY_LIMIT: usize = 10_240;

const SID_PREFIX: &str = "RolegateRecall";
const SID_ALL: &str = "RolegateRecallAll";

/// One person's recall on one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallEntry {
    /// The person's tag (16 hex characters).
    pub person: String,
    /// Every `SourceIdentity` their credentials for the role carried.
    pub source_identities: Vec<String>,
    /// Sessions issued before this (Unix seconds) are denied.
    pub issued_before: u64,
    /// When the last credential it covers expires: the statement can go then.
    pub expires: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    #[error("IAM cannot be reached: {0}")]
    Unreachable(String),
    #[error("IAM refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("the role's recall policy is not rolegate's: {0}")]
    Malformed(String),
}

fn rfc3339(unix: u64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn statement(e: &RecallEntry) -> Json {
    json!({
        "Sid": format!("{SID_PREFIX}{}Until{}", e.person, e.expires),
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": { "aws:SourceIdentity": e.source_identities },
            "DateLessThan": { "aws:TokenIssueTime": rfc3339(e.issued_before) },
        },
    })
}

fn statement_all(issued_before: u64, expires: u64) -> Json {
    json!({
        "Sid": format!("{SID_ALL}Until{expires}"),
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": { "DateLessThan": { "aws:TokenIssueTime": rfc3339(issued_before) } },
    })
}

/// What a statement of ours says: the person (`None` for the widened one) and until when.
fn parse_sid(sid: &str) -> Option<(Option<String>, u64)> {
    if let Some(rest) = sid.strip_prefix(SID_ALL) {
        return Some((None, rest.strip_prefix("Until")?.parse().ok()?));
    }
    let rest = sid.strip_prefix(SID_PREFIX)?;
    let (person, until) = rest.split_once("Until")?;
    Some((Some(person.to_owned()), until.parse().ok()?))
}

fn issued_before_of(s: &Json) -> u64 {
    s.pointer("/Condition/DateLessThan/aws:TokenIssueTime")
        .and_then(Json::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}

fn statements(doc: Option<&str>) -> Result<Vec<Json>, RecallError> {
    let Some(doc) = doc else {
        return Ok(Vec::new());
    };
    let v: Json = serde_json::from_str(doc).map_err(|e| RecallError::Malformed(e.to_string()))?;
    match v.get("Statement") {
        Some(Json::Array(a)) => Ok(a.clone()),
        Some(s @ Json::Object(_)) => Ok(vec![s.clone()]),
        _ => Err(RecallError::Malformed("no Statement".into())),
    }
}

fn document(statements: Vec<Json>) -> String {
    json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

/// The policy with `entry` merged in: the person's statement replaced by one covering
/// both (every source identity, the later time, the later expiry). Other statements
/// (other people, anything not ours) stay.
pub fn merge(doc: Option<&str>, entry: &RecallEntry) -> Result<String, RecallError> {
    let mut entry = entry.clone();
    let mut kept = Vec::new();
    for s in statements(doc)? {
        let sid = s.get("Sid").and_then(Json::as_str).unwrap_or("");
        match parse_sid(sid) {
            Some((Some(p), until)) if p == entry.person => {
                let ids: BTreeSet<String> = s
                    .pointer("/Condition/StringEquals/aws:SourceIdentity")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .chain(entry.source_identities.iter().cloned())
                    .collect();
                entry.source_identities = ids.into_iter().collect();
                entry.issued_before = entry.issued_before.max(issued_before_of(&s));
                entry.expires = entry.expires.max(until);
            }
            _ => kept.push(s),
        }
    }
    entry.source_identities.sort();
    entry.source_identities.dedup();
    kept.push(statement(&entry));
    Ok(document(kept))
}

/// The policy folded into one statement denying every session of the role issued before
/// the latest recall in it, until the last expiry (when it would pass IAM's size limit).
pub fn widen(doc: &str) -> Result<String, RecallError> {
    let mut before = 0;
    let mut until = 0;
    let mut kept = Vec::new();
    for s in statements(Some(doc))? {
        match s.get("Sid").and_then(Json::as_str).and_then(parse_sid) {
            Some((_, u)) => {
                before = before.max(issued_before_of(&s));
                until = until.max(u);
            }
            None => kept.push(s),
        }
    }
    kept.push(statement_all(before, until));
    Ok(document(kept))
}

/// The policy without the statements whose credentials have all expired at `now`, and
/// how many went; `None` when nothing is left (the policy is deleted).
pub fn sweep(doc: &str, now: u64) -> Result<(Option<String>, usize), RecallError> {
    let all = statements(Some(doc))?;
    let before = all.len();
    let kept: Vec<Json> = all
        .into_iter()
        .filter(
            |s| match s.get("Sid").and_then(Json::as_str).and_then(parse_sid) {
                Some((_, until)) => until > now,
                None => true,
            },
        )
        .collect();
    let removed = before - kept.len();
    Ok(((!kept.is_empty()).then(|| document(kept)), removed))
}

/// The people a role's policy recalls now (their tags), and whether it is widened.
pub fn recalled(doc: &str) -> Result<(Vec<String>, bool), RecallError> {
    let mut people = Vec::new();
    let mut widened = false;
    for s in statements(Some(doc))? {
        match s.get("Sid").and_then(Json::as_str).and_then(parse_sid) {
            Some((Some(p), _)) => people.push(p),
            Some((None, _)) => widened = true,
            None => {}
        }
    }
    Ok((people, widened))
}

/// How one recall went on IAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The person's statement is in the role's policy.
    Added,
    /// The policy was folded into one statement (IAM's size limit).
    Widened,
}

/// The IAM client(s): the broker's own, or one per account through `recall_role_name`.
pub struct Iam {
    base: aws_sdk_iam::config::Builder,
    sts: aws_sdk_sts::Client,
    recall_role_name: Option<String>,
    partition: Partition,
    /// Clients with an assumed role's credentials, by account, until they expire.
    assumed: Mutex<HashMap<String, (Instant, aws_sdk_iam::Client)>>,
}

fn iam_region(p: Partition) -> &'static str {
    match p {
        Partition::Aws => "us-east-1",
        Partition::AwsUsGov => "us-gov-west-1",
        Partition::AwsCn => "cn-north-1",
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_iam::config::http::HttpResponse>,
) -> RecallError {
    match &e {
        SdkError::ServiceError(s) => RecallError::Refused {
            code: s.err().code().unwrap_or("Unknown").to_owned(),
            message: s.err().message().unwrap_or("").chars().take(300).collect(),
        },
        _ => RecallError::Unreachable(
            crate::telemetry::error_chain(&e)
                .chars()
                .take(300)
                .collect(),
        ),
    }
}

impl Iam {
    pub async fn new(config: &Config, credentials: Option<&StaticAwsCredentials>) -> Self {
        let partition = config.aws.partition;
        let region = Region::new(iam_region(partition));
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .load()
            .await;
        let timeouts = aws_sdk_iam::config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(20))
            .operation_attempt_timeout(Duration::from_secs(8))
            .connect_timeout(Duration::from_secs(3))
            .build();
        let mut base = aws_sdk_iam::config::Builder::from(&sdk)
            .region(region.clone())
            .retry_config(aws_sdk_iam::config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(timeouts.clone());
        let mut sts = aws_sdk_sts::config::Builder::from(&sdk)
            .region(Region::new(config.aws.region.clone()))
            .timeout_config(timeouts);
        if let Some(url) = &config.aws.iam_endpoint_url {
            base = base.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        if let Some(url) = &config.aws.sts_endpoint_url {
            sts = sts.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        if let Some(c) = credentials {
            let creds = Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.expose_secret().to_owned(),
                c.session_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                None,
                "rolegate-static",
            );
            base = base.credentials_provider(creds.clone());
            sts = sts.credentials_provider(creds);
        }
        Self {
            base,
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            recall_role_name: config.aws.recall_role_name.clone(),
            partition,
            assumed: Mutex::new(HashMap::new()),
        }
    }

    /// The client that may change roles in `account`.
    async fn client(&self, account: &str) -> Result<aws_sdk_iam::Client, RecallError> {
        let Some(name) = &self.recall_role_name else {
            return Ok(aws_sdk_iam::Client::from_conf(self.base.clone().build()));
        };
        if let Some((until, c)) = self
            .assumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            && *until > Instant::now()
        {
            return Ok(c.clone());
        }
        let arn = format!("arn:{}:iam::{account}:role/{name}", self.partition.as_str());
        let out = self
            .sts
            .assume_role()
            .role_arn(&arn)
            .role_session_name("rolegate-recall")
            .duration_seconds(3600)
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(s) => RecallError::Refused {
                    code: s.err().code().unwrap_or("Unknown").to_owned(),
                    message: format!("assuming {arn}: {}", s.err().message().unwrap_or("")),
                },
                _ => RecallError::Unreachable(crate::telemetry::error_chain(&e)),
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| RecallError::Unreachable("STS returned no credentials".into()))?;
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "rolegate-recall-role",
        );
        let client =
            aws_sdk_iam::Client::from_conf(self.base.clone().credentials_provider(creds).build());
        // Renewed well before the hour is over.
        self.assumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                account.to_owned(),
                (
                    Instant::now() + Duration::from_secs(45 * 60),
                    client.clone(),
                ),
            );
        Ok(client)
    }

    async fn get(
        &self,
        c: &aws_sdk_iam::Client,
        role: &RoleArn,
    ) -> Result<Option<String>, RecallError> {
        match c
            .get_role_policy()
            .role_name(role.role_name())
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(out) => {
                let doc = out.policy_document();
                // IAM returns the document URL-encoded (RFC 3986).
                let doc = if doc.trim_start().starts_with('{') {
                    doc.to_owned()
                } else {
                    percent_encoding::percent_decode_str(doc)
                        .decode_utf8()
                        .map_err(|e| RecallError::Malformed(e.to_string()))?
                        .into_owned()
                };
                Ok(Some(doc))
            }
            Err(SdkError::ServiceError(s)) if s.err().is_no_such_entity_exception() => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn put(
        &self,
        c: &aws_sdk_iam::Client,
        role: &RoleArn,
        doc: &str,
    ) -> Result<(), RecallError> {
        c.put_role_policy()
            .role_name(role.role_name())
            .policy_name(POLICY_NAME)
            .policy_document(doc)
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Merges `entry` into the role's recall policy (idempotent: the same entry twice is
    /// one statement). The caller holds the role's lease: no other writer in between.
    pub async fn add(&self, role: &RoleArn, entry: &RecallEntry) -> Result<Applied, RecallError> {
        let c = self.client(role.account().as_str()).await?;
        let current = self.get(&c, role).await?;
        let merged = merge(current.as_deref(), entry)?;
        if merged.len() <= ROLE_POLICY_LIMIT {
            match self.put(&c, role, &merged).await {
                Ok(()) => return Ok(Applied::Added),
                // The role's other inline policies leave less room than ours alone.
                Err(RecallError::Refused { code, .. }) if code == "LimitExceeded" => {}
                Err(e) => return Err(e),
            }
        }
        self.put(&c, role, &widen(&merged)?).await?;
        Ok(Applied::Widened)
    }

    /// Removes the statements whose credentials have all expired; deletes the policy
    /// when none is left. Returns how many went.
    pub async fn sweep(&self, role: &RoleArn, now: u64) -> Result<usize, RecallError> {
        let c = self.client(role.account().as_str()).await?;
        let Some(doc) = self.get(&c, role).await? else {
            return Ok(0);
        };
        let (left, removed) = sweep(&doc, now)?;
        match (left, removed) {
            (_, 0) => {}
            (Some(d), _) => self.put(&c, role, &d).await?,
            (None, _) => {
                c.delete_role_policy()
                    .role_name(role.role_name())
                    .policy_name(POLICY_NAME)
                    .send()
                    .await
                    .map_err(classify)?;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(person: &str, ids: &[&str], before: u64, expires: u64) -> RecallEntry {
        RecallEntry {
            person: person.into(),
            source_identities: ids.iter().map(|s| (*s).to_owned()).collect(),
            issued_before: before,
            expires,
        }
    }

    #[test]
    fn a_recall_denies_one_person_before_a_time_and_merges_with_others() {
        let a = merge(
            None,
            &entry("aaaa", &["alice@x"], 1_800_000_000, 1_800_003_600),
        )
        .unwrap();
        let v: Json = serde_json::from_str(&a).unwrap();
        let s = &v["Statement"][0];
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Action"], "*");
        assert_eq!(
            s["Condition"]["StringEquals"]["aws:SourceIdentity"],
            json!(["alice@x"])
        );
        assert_eq!(
            s["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2027-01-15T08:00:00Z"
        );
        let ab = merge(
            Some(&a),
            &entry("bbbb", &["bob@x"], 1_800_000_100, 1_800_001_000),
        )
        .unwrap();
        assert_eq!(
            recalled(&ab).unwrap(),
            (vec!["aaaa".to_owned(), "bbbb".to_owned()], false)
        );
        // Alice again, later, with another source identity: still one statement of hers.
        let again = merge(
            Some(&ab),
            &entry("aaaa", &["alice"], 1_800_000_500, 1_800_000_900),
        )
        .unwrap();
        let v: Json = serde_json::from_str(&again).unwrap();
        let hers: Vec<&Json> = v["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Sid"].as_str().unwrap().contains("aaaa"))
            .collect();
        assert_eq!(hers.len(), 1);
        assert_eq!(
            hers[0]["Sid"], "RolegateRecallaaaaUntil1800003600",
            "the later expiry"
        );
        assert_eq!(
            hers[0]["Condition"]["StringEquals"]["aws:SourceIdentity"],
            json!(["alice", "alice@x"])
        );
        assert_eq!(
            hers[0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2027-01-15T08:08:20Z"
        );
        assert_eq!(
            merge(
                Some(&again),
                &entry("aaaa", &["alice"], 1_800_000_500, 1_800_000_900)
            )
            .unwrap(),
            again,
            "idempotent"
        );
    }

    #[test]
    fn the_sweep_removes_what_has_expired_and_keeps_what_is_not_ours() {
        let foreign = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Other","Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#;
        let doc = merge(Some(foreign), &entry("aaaa", &["a"], 100, 1000)).unwrap();
        let doc = merge(Some(&doc), &entry("bbbb", &["b"], 100, 2000)).unwrap();
        let (left, removed) = sweep(&doc, 1500).unwrap();
        assert_eq!(removed, 1);
        let left = left.unwrap();
        assert_eq!(recalled(&left).unwrap().0, vec!["bbbb".to_owned()]);
        assert!(left.contains("\"Other\""));
        let ours_only = merge(None, &entry("aaaa", &["a"], 100, 1000)).unwrap();
        assert_eq!(
            sweep(&ours_only, 1000).unwrap(),
            (None, 1),
            "nothing left: delete"
        );
        assert_eq!(sweep(&ours_only, 999).unwrap().1, 0);
    }

    #[test]
    fn past_the_size_limit_the_policy_is_widened_to_every_session_before_the_latest_recall() {
        let mut doc: Option<String> = None;
        for i in 0..60u64 {
            let e = entry(
                &format!("{i:016x}"),
                &[&format!("person{i}@example.com")],
                1_000 + i,
                5_000 + i,
            );
            doc = Some(merge(doc.as_deref(), &e).unwrap());
        }
        let doc = doc.unwrap();
        assert!(
            doc.len() > ROLE_POLICY_LIMIT,
            "60 people do not fit: {}",
            doc.len()
        );
        let wide = widen(&doc).unwrap();
        assert!(wide.len() < 400);
        let v: Json = serde_json::from_str(&wide).unwrap();
        assert_eq!(v["Statement"].as_array().unwrap().len(), 1);
        assert!(v["Statement"][0]["Condition"].get("StringEquals").is_none());
        assert_eq!(recalled(&wide).unwrap(), (vec![], true));
        assert_eq!(v["Statement"][0]["Sid"], "RolegateRecallAllUntil5059");
        assert_eq!(sweep(&wide, 5059).unwrap(), (None, 1));
    }
}
