//! Provisioning from the IdP (SCIM 2.0): each IdP with an `[idp.scim]` table keeps its
//! directory of users and groups in the state store through these use cases, and the
//! access core reads it at every request ([`membership`]).
//!
//! - A request finds its IdP by its bearer token, compared in constant time with every
//!   IdP's, then counts against the IdP's rate limit.
//! - Every write is planned from the directory at one version ([`plan`]) and committed
//!   whole on that version, retried when another write came first: a user, the groups
//!   naming them, their inverted group list and their membership view never disagree.
//! - A person deactivated or deleted is refused at their next request on every path, and
//!   everything they hold is revoked at once (source `scim`).
//! - Every change and every refusal is audited (`provisioning` records).

pub mod membership;
mod plan;
mod writes;

use std::time::Duration;

use serde_json::Value as Json;

use super::Access;
use super::admin::{Actor, ActorSource, PersonEntry};
use crate::audit::{Event, Outcome, RequestContext};
use crate::config::{IdentityKey, IdpConfig};
use crate::scim::filter::{AttrPath, CompareOp, Filter};
use crate::scim::schema::Kind;
use crate::scim::{ListQuery, Projection, ScimError, list_response};
use crate::store::{PersonTag, StoreError, Table, Window};
use plan::{Effect, GroupRef, Plan, Resource, group_name_key, user_name_key};

/// How often a write is recomputed when other writes keep coming first.
const ATTEMPTS: usize = 12;

/// The most members one group holds.
pub(super) const MAX_MEMBERS: usize = 20_000;

/// The IdP a SCIM request authenticated as.
#[derive(Debug, Clone)]
pub struct ScimCaller {
    idp: usize,
}

/// What a write was, for the audit record.
#[derive(Debug, Clone, Copy)]
pub enum ScimWrite {
    Create,
    Replace,
    Patch,
    Delete,
}

impl ScimWrite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Replace => "replace",
            Self::Patch => "patch",
            Self::Delete => "delete",
        }
    }
}

pub(super) fn unavailable(e: StoreError) -> ScimError {
    tracing::error!(error = %e, "SCIM: the state store failed");
    ScimError::new(503, None, "the directory is unavailable; try again").retry_after(5)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A fresh resource id: a random UUID (version 4), the form IdPs expect.
pub(super) fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub(super) fn meta(kind: Kind, created: Option<&Json>, version: u64) -> Json {
    let now = now_rfc3339();
    serde_json::json!({
        "resourceType": kind.name(),
        "created": created.cloned().unwrap_or_else(|| Json::String(now.clone())),
        "lastModified": now,
        "version": format!("W/\"{version}\""),
    })
}

pub(super) fn version_of(r: &Resource) -> u64 {
    r.get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Json::as_str)
        .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
        .unwrap_or(0)
}

pub(super) fn name_of(kind: Kind, r: &Resource) -> String {
    let field = match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    };
    r.get(field).and_then(Json::as_str).unwrap_or("").to_owned()
}

/// A group's member ids, each once, in the order given.
pub(super) fn member_ids(group: &Resource) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    group
        .get("members")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("value").and_then(Json::as_str))
        .filter(|v| seen.insert(*v))
        .map(str::to_owned)
        .collect()
}

impl Access {
    /// The IdP whose SCIM token `authorization` (`Bearer …`) carries. Every IdP's token is
    /// compared, in constant time, so the answer's timing says nothing about them. Then
    /// one hit on the IdP's rate limit.
    pub async fn scim_caller(
        &self,
        authorization: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<ScimCaller, ScimError> {
        use secrecy::ExposeSecret;
        let presented = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .unwrap_or("");
        let mut found = None;
        for (i, idp) in self.config.idps.iter().enumerate() {
            if let Some(s) = &idp.scim
                && super::tokens_match(presented, s.token.expose_secret())
                && !presented.is_empty()
            {
                found = Some(i);
            }
        }
        let Some(idp) = found else {
            let reason = if presented.is_empty() {
                "no bearer token"
            } else {
                "the bearer token is not an IdP's SCIM token"
            };
            self.audit_scim_refusal("", "read", "", reason, ctx);
            return Err(ScimError::new(
                401,
                None,
                "a valid SCIM bearer token is required",
            ));
        };
        let caller = ScimCaller { idp };
        let cfg = self.scim_idp(&caller);
        let settings = cfg.scim.as_ref().expect("found by its SCIM token");
        let window = Window {
            name: "scim",
            subject: cfg.id.as_str(),
            limit: settings.requests_per_minute.into(),
            period: Duration::from_secs(60),
        };
        match self.store.hit(&window).await.map_err(unavailable)? {
            crate::store::Allowance::Allowed => Ok(caller),
            crate::store::Allowance::Exceeded { retry_after } => {
                self.audit_scim_refusal(cfg.id.as_str(), "read", "", "rate limit", ctx);
                Err(
                    ScimError::new(429, None, "too many SCIM requests from this IdP; slow down")
                        .retry_after(retry_after.max(1)),
                )
            }
        }
    }

    fn scim_idp(&self, caller: &ScimCaller) -> &IdpConfig {
        &self.config.idps[caller.idp]
    }

    /// The service provider's base URL (`…/scim/v2`).
    pub fn scim_base(&self) -> String {
        format!(
            "{}/scim/v2",
            self.config.server.public_url.as_str().trim_end_matches('/')
        )
    }

    /// A request refused (bad input, a wrong token, a missing resource): audited.
    pub fn audit_scim_refusal(
        &self,
        idp: &str,
        operation: &'static str,
        resource: &'static str,
        reason: &str,
        ctx: &RequestContext,
    ) {
        tracing::warn!(idp, operation, resource, reason, "SCIM request refused");
        let event = Event::Provisioning {
            idp: idp.to_owned(),
            operation,
            resource,
            id: String::new(),
            name: String::new(),
            effects: Vec::new(),
            outcome: Outcome::Refused,
            reason: reason.chars().take(200).collect(),
        };
        if let Err(e) = self.record(ctx, &event) {
            tracing::error!(error = %e, "audit log write failed for a SCIM refusal");
        }
    }

    /// The resource as clients see it: with its location, its `$ref`s and (users) groups.
    fn scim_output(&self, kind: Kind, id: &str, mut r: Resource, groups: &[GroupRef]) -> Json {
        let base = self.scim_base();
        r.insert("id".into(), Json::String(id.to_owned()));
        if let Some(Json::Object(m)) = r.get_mut("meta") {
            m.insert(
                "location".into(),
                Json::String(format!("{base}{}/{id}", kind.endpoint())),
            );
        }
        match kind {
            Kind::User => {
                if !groups.is_empty() {
                    let list: Vec<Json> = groups
                        .iter()
                        .map(|g| {
                            serde_json::json!({
                                "value": g.id, "display": g.name,
                                "$ref": format!("{base}/Groups/{}", g.id), "type": "direct",
                            })
                        })
                        .collect();
                    r.insert("groups".into(), Json::Array(list));
                }
            }
            Kind::Group => {
                if let Some(Json::Array(members)) = r.get_mut("members") {
                    for m in members.iter_mut() {
                        let user = m.get("type").and_then(Json::as_str) == Some("User");
                        if user
                            && m.get("$ref").is_none()
                            && let Some(v) =
                                m.get("value").and_then(Json::as_str).map(str::to_owned)
                        {
                            m["$ref"] = Json::String(format!("{base}/Users/{v}"));
                        }
                    }
                }
            }
        }
        Json::Object(r)
    }

    async fn scim_load(
        &self,
        idp: &str,
        kind: Kind,
        id: &str,
    ) -> Result<Option<(Resource, Vec<GroupRef>)>, StoreError> {
        let table = match kind {
            Kind::User => Table::Users,
            Kind::Group => Table::Groups,
        };
        let Some(json) = self.store.directory_get(idp, table, id).await? else {
            return Ok(None);
        };
        let Ok(Json::Object(r)) = serde_json::from_str(&json) else {
            return Err(StoreError::Corrupt("scim resource".into()));
        };
        let groups = match kind {
            Kind::User => self
                .store
                .directory_get(idp, Table::MemberOf, id)
                .await?
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            Kind::Group => Vec::new(),
        };
        Ok(Some((r, groups)))
    }

    /// `GET /Users/{id}` or `/Groups/{id}`.
    pub async fn scim_get(
        &self,
        caller: &ScimCaller,
        kind: Kind,
        id: &str,
        projection: &Projection,
    ) -> Result<Json, ScimError> {
        let idp = self.scim_idp(caller).id.as_str();
        match self.scim_load(idp, kind, id).await.map_err(unavailable)? {
            Some((r, groups)) => Ok(projection.apply(self.scim_output(kind, id, r, &groups))),
            None => Err(ScimError::not_found(kind.name())),
        }
    }

    /// `GET /Users` or `/Groups`: filtered, in creation order, one page.
    pub async fn scim_list(
        &self,
        caller: &ScimCaller,
        kind: Kind,
        query: &ListQuery,
    ) -> Result<Json, ScimError> {
        let idp = self.scim_idp(caller).id.as_str();
        // The filters IdPs send before every create (`userName eq "…"`,
        // `displayName eq "…"`) are answered from the names table.
        let by_name = match (&query.filter, kind) {
            (Some(Filter::Compare(p, CompareOp::Eq, Json::String(v))), Kind::User)
                if is_attr(p, "userName") =>
            {
                Some(user_name_key(v))
            }
            (Some(Filter::Compare(p, CompareOp::Eq, Json::String(v))), Kind::Group)
                if is_attr(p, "displayName") =>
            {
                Some(group_name_key(v))
            }
            _ => None,
        };
        let mut all: Vec<(String, Resource, Vec<GroupRef>)> = Vec::new();
        if let Some(name) = by_name {
            let store = &self.store;
            if let Some(id) = store
                .directory_get(idp, Table::Names, &name)
                .await
                .map_err(unavailable)?
                && let Some((r, g)) = self.scim_load(idp, kind, &id).await.map_err(unavailable)?
            {
                all.push((id, r, g));
            }
        } else {
            let table = match kind {
                Kind::User => Table::Users,
                Kind::Group => Table::Groups,
            };
            let rows = self
                .store
                .directory_all(idp, table)
                .await
                .map_err(unavailable)?;
            let mut lists: std::collections::HashMap<String, Vec<GroupRef>> = match kind {
                Kind::User => self
                    .store
                    .directory_all(idp, Table::MemberOf)
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .filter_map(|(id, j)| serde_json::from_str(&j).ok().map(|l| (id, l)))
                    .collect(),
                Kind::Group => Default::default(),
            };
            for (id, json) in rows {
                if let Ok(Json::Object(r)) = serde_json::from_str(&json) {
                    let groups = lists.remove(&id).unwrap_or_default();
                    all.push((id, r, groups));
                }
            }
        }
        let mut shown: Vec<(String, String, Json)> = all
            .into_iter()
            .map(|(id, r, groups)| {
                let created = r
                    .get("meta")
                    .and_then(|m| m.get("created"))
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_owned();
                (created, id.clone(), self.scim_output(kind, &id, r, &groups))
            })
            .filter(|(_, _, r)| query.filter.as_ref().is_none_or(|f| f.matches(r)))
            .collect();
        shown.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(list_response(
            shown.into_iter().map(|(_, _, r)| r).collect(),
            query,
        ))
    }

    /// A write: planned from the directory at its current version and committed whole on
    /// it, recomputed when another write came first; then its effects on access, and its
    /// audit record.
    pub async fn scim_write(
        &self,
        caller: &ScimCaller,
        kind: Kind,
        write: ScimWrite,
        id: Option<&str>,
        body: Option<&Json>,
        ctx: &RequestContext,
    ) -> Result<Option<Json>, ScimError> {
        let cfg = self.scim_idp(caller);
        let idp = cfg.id.as_str();
        let settings = cfg.scim.as_ref().expect("a SCIM caller's IdP has SCIM");
        let refused = |e: ScimError| {
            self.audit_scim_refusal(idp, write.as_str(), kind.name(), &e.detail, ctx);
            e
        };
        for attempt in 0..ATTEMPTS {
            let version = self
                .store
                .directory_version(idp)
                .await
                .map_err(unavailable)?;
            let mut plan = Plan::new(&self.store, idp, settings, version);
            let outcome = match kind {
                Kind::User => writes::plan_user(&mut plan, write, id, body).await,
                Kind::Group => writes::plan_group(&mut plan, write, id, body).await,
            }
            .map_err(refused)?;
            let (change, effects) = plan.finish().map_err(refused)?;
            if !self
                .store
                .directory_commit(&change)
                .await
                .map_err(unavailable)?
            {
                // Another write came first: recompute from what it left.
                let jitter = rand::random::<u64>() % (5 * (attempt as u64 + 1));
                tokio::time::sleep(Duration::from_millis(2 + jitter)).await;
                continue;
            }
            let (rid, resource) = outcome;
            let event = Event::Provisioning {
                idp: idp.to_owned(),
                operation: write.as_str(),
                resource: kind.name(),
                id: rid.clone(),
                name: resource
                    .as_ref()
                    .map(|r| name_of(kind, r))
                    .unwrap_or_default(),
                effects: effects.iter().map(|e| e.as_str().to_owned()).collect(),
                outcome: Outcome::Success,
                reason: String::new(),
            };
            if let Err(e) = self.record(ctx, &event) {
                tracing::error!(error = %e, "audit log write failed for a SCIM change");
            }
            tracing::info!(idp, operation = write.as_str(), resource = kind.name(), id = %rid, "SCIM change");
            self.metrics
                .provisioning
                .get_or_create(&crate::metrics::KindLabels {
                    kind: format!("{}_{}", kind.name().to_lowercase(), write.as_str()),
                })
                .inc();
            for effect in &effects {
                if let Effect::Deactivated { key } = effect {
                    self.deprovisioned(cfg, key, ctx).await;
                }
            }
            return Ok(match resource {
                None => None,
                Some(r) => {
                    let groups = match kind {
                        Kind::User => self
                            .store
                            .directory_get(idp, Table::MemberOf, &rid)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|j| serde_json::from_str(&j).ok())
                            .unwrap_or_default(),
                        Kind::Group => Vec::new(),
                    };
                    Some(self.scim_output(kind, &rid, r, &groups))
                }
            });
        }
        Err(refused(
            ScimError::new(
                503,
                None,
                "the directory is busy with other changes; try again",
            )
            .retry_after(1),
        ))
    }

    /// A person the directory deactivated or deleted: everything they hold is revoked now
    /// (their next request is refused anyway, by the membership view).
    async fn deprovisioned(&self, idp: &IdpConfig, key: &str, ctx: &RequestContext) {
        let settings = idp.scim.as_ref().expect("SCIM IdP");
        let mut tags: Vec<PersonTag> = Vec::new();
        if settings.identity_key == IdentityKey::Subject {
            tags.push(PersonTag::of(idp.id.as_str(), key));
        }
        // People known by user name or email (or a subject in another case): from the
        // directory of people with live access.
        let wanted = key.to_lowercase();
        let mut cursor = 0;
        loop {
            let Ok((next, page)) = self.store.entries_from::<PersonEntry>(cursor, 500).await else {
                tracing::error!(idp = %idp.id, "SCIM: could not read the people with access; their next request is refused by the directory");
                break;
            };
            for (tag, e) in page {
                let field = match settings.identity_key {
                    IdentityKey::Subject => Some(e.subject.as_str()),
                    IdentityKey::Username => Some(e.username.as_str()),
                    IdentityKey::Email => e.email.as_deref(),
                };
                if e.idp == idp.id.as_str()
                    && field.is_some_and(|f| f.to_lowercase() == wanted)
                    && let Some(tag) = PersonTag::parse(&tag)
                    && !tags.contains(&tag)
                {
                    tags.push(tag);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let actor = Actor {
            name: format!("scim:{}", idp.id),
            source: ActorSource::Scim,
        };
        for tag in tags {
            match self
                .admin
                .revoke(
                    &tag,
                    None,
                    &actor,
                    "deactivated in the IdP's directory (SCIM)",
                    ctx,
                )
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(person = %tag, error = %e, "SCIM: revoking a deactivated person failed; their next request is refused by the directory");
                }
            }
        }
    }
}

fn is_attr(p: &AttrPath, name: &str) -> bool {
    p.sub.is_none()
        && p.attr.eq_ignore_ascii_case(name)
        && p.uri.as_deref().is_none_or(|u| {
            u.eq_ignore_ascii_case(crate::scim::schema::USER_SCHEMA)
                || u.eq_ignore_ascii_case(crate::scim::schema::GROUP_SCHEMA)
        })
}
