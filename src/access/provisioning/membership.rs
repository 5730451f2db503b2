//! What the access core reads of a directory at every request: a person's membership
//! view (active or not, their groups), found by the identity key the IdP's `[idp.scim]`
//! names. A deactivated or deleted person is refused on every path (the refusal is a
//! [`Locked`] with the id `scim:deactivated`, so every client already reports it); with
//! `groups_from = "directory"` or `"both"` the rules see the directory's groups as they
//! are now, not as they were at sign-in.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::super::Access;
use super::super::locks::{AdmitError, DEACTIVATED, Locked, NOT_PROVISIONED};
use crate::config::{GroupsFrom, IdentityKey, IdpConfig, ScimSettings};
use crate::domain::GroupName;
use crate::idp::VerifiedIdentity;
use crate::mapping::IdentityClaims;
use crate::scim::filter::{AttrPath, attribute};
use crate::store::Table;

/// A person's membership view, by identity key (`Members` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The SCIM user's id; `None` once the user was deleted (the entry stays as a
    /// tombstone so that the person stays refused).
    #[serde(default)]
    pub id: Option<String>,
    pub active: bool,
    /// The display names of their groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The key a sign-in is matched with: the configured part of the identity, lower-cased.
pub fn identity_key(settings: &ScimSettings, c: &IdentityClaims) -> Option<String> {
    let raw = match settings.identity_key {
        IdentityKey::Subject => Some(c.subject.as_str()),
        IdentityKey::Username => Some(c.username.as_str()),
        IdentityKey::Email => c.email.as_deref(),
    };
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
}

/// The value of a SCIM user that names the person (`user_key`), as sent (the tag of a
/// person whose key is their subject needs its exact case).
pub fn user_key_value(settings: &ScimSettings, user: &Json) -> Option<String> {
    let found = if settings.user_key.eq_ignore_ascii_case("emails") {
        let emails = user.get("emails").and_then(Json::as_array)?;
        emails
            .iter()
            .find(|e| e.get("primary").and_then(Json::as_bool) == Some(true))
            .or_else(|| emails.first())
            .and_then(|e| e.get("value"))
            .and_then(Json::as_str)
            .map(str::to_owned)
    } else {
        let path = AttrPath::parse(&settings.user_key).ok()?;
        attribute(user, &path)
            .and_then(|v| match &path.sub {
                Some(s) => v.get(s.as_str()),
                None => Some(v),
            })
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    found.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The identity's IdP settings, when it provisions over SCIM.
fn provisioned<'a>(idps: &'a [IdpConfig], c: &IdentityClaims) -> Option<&'a IdpConfig> {
    idps.iter()
        .find(|i| i.id == c.idp)
        .filter(|i| i.scim.is_some())
}

impl Access {
    /// What the IdP's directory says of a person (for administrators): `None` when the
    /// IdP does not provision over SCIM, `Some(None)` when the directory does not know
    /// them.
    pub async fn directory_state(
        &self,
        idp: &str,
        subject: &str,
        username: &str,
        email: Option<&str>,
    ) -> Result<Option<Option<Membership>>, crate::store::StoreError> {
        let Some(cfg) = self.config.idps.iter().find(|i| i.id.as_str() == idp) else {
            return Ok(None);
        };
        let Some(settings) = &cfg.scim else {
            return Ok(None);
        };
        let raw = match settings.identity_key {
            IdentityKey::Subject => Some(subject),
            IdentityKey::Username => Some(username),
            IdentityKey::Email => email,
        };
        let Some(key) = raw.map(str::to_lowercase) else {
            return Ok(Some(None));
        };
        Ok(Some(
            self.store
                .directory_get(idp, Table::Members, &key)
                .await?
                .and_then(|j| serde_json::from_str(&j).ok()),
        ))
    }

    /// The identity as the IdP's directory has it now: refused when deactivated (or not
    /// provisioned where that is required), its groups from the directory when
    /// `groups_from` says so. Identities of IdPs without SCIM pass unchanged. A directory
    /// that cannot be read is an error: nobody is admitted on a guess.
    pub(in crate::access) async fn directory_admit(
        &self,
        identity: VerifiedIdentity,
    ) -> Result<VerifiedIdentity, AdmitError> {
        let Some(idp) = provisioned(&self.config.idps, identity.claims()) else {
            return Ok(identity);
        };
        let settings = idp.scim.as_ref().expect("provisioned() checked");
        let membership = match identity_key(settings, identity.claims()) {
            None => None,
            Some(key) => self
                .store
                .directory_get(idp.id.as_str(), Table::Members, &key)
                .await?
                .and_then(|json| serde_json::from_str::<Membership>(&json).ok()),
        };
        let refuse = |lock_id: &str, kind: &str| {
            self.metrics
                .lock_refusals
                .get_or_create(&crate::metrics::KindLabels { kind: kind.into() })
                .inc();
            AdmitError::Locked(Locked {
                lock_id: lock_id.to_owned(),
            })
        };
        match &membership {
            Some(m) if !m.active => return Err(refuse(DEACTIVATED, "deactivated")),
            None if settings.require_provisioned => {
                return Err(refuse(NOT_PROVISIONED, "not_provisioned"));
            }
            _ => {}
        }
        let directory_groups = || -> Vec<GroupName> {
            membership
                .iter()
                .flat_map(|m| m.groups.iter())
                .filter_map(|g| GroupName::parse(g).ok())
                .collect()
        };
        Ok(match idp.groups_from {
            GroupsFrom::Token => identity,
            GroupsFrom::Directory => identity.with_groups(directory_groups()),
            GroupsFrom::Both => {
                let mut groups = identity.claims().groups.clone();
                for g in directory_groups() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
                identity.with_groups(groups)
            }
        })
    }
}

impl super::super::admin::AdminCore {
    /// The IdP's directory entry of the person `c` names (for `rolegate explain
    /// --groups-from-directory`): `None` when the IdP does not provision over SCIM or the
    /// directory does not know them.
    pub async fn directory_membership(
        &self,
        c: &IdentityClaims,
    ) -> Result<Option<Membership>, crate::store::StoreError> {
        let Some(idp) = provisioned(&self.config.idps, c) else {
            return Ok(None);
        };
        let settings = idp.scim.as_ref().expect("provisioned() checked");
        let Some(key) = identity_key(settings, c) else {
            return Ok(None);
        };
        Ok(self
            .store
            .directory_get(idp.id.as_str(), Table::Members, &key)
            .await?
            .and_then(|j| serde_json::from_str(&j).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(user_key: &str, identity_key: IdentityKey) -> ScimSettings {
        ScimSettings {
            token: secrecy::SecretString::from("x".repeat(32)),
            user_key: user_key.into(),
            identity_key,
            require_provisioned: false,
            requests_per_minute: 600,
        }
    }

    #[test]
    fn users_and_sign_ins_are_matched_case_insensitively_by_the_configured_keys() {
        let user = json!({
            "userName": "Alice@Example.com", "externalId": "00u1",
            "emails": [{ "value": "a@other" }, { "value": "alice@corp", "primary": true }],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "employeeNumber": "42" },
        });
        let s = settings("userName", IdentityKey::Username);
        assert_eq!(
            user_key_value(&s, &user).as_deref(),
            Some("Alice@Example.com")
        );
        let s = settings("externalId", IdentityKey::Subject);
        assert_eq!(user_key_value(&s, &user).as_deref(), Some("00u1"));
        let s = settings("emails", IdentityKey::Email);
        assert_eq!(user_key_value(&s, &user).as_deref(), Some("alice@corp"));
        let s = settings(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            IdentityKey::Subject,
        );
        assert_eq!(user_key_value(&s, &user).as_deref(), Some("42"));
        let s = settings("nickName", IdentityKey::Subject);
        assert_eq!(user_key_value(&s, &user), None);

        let claims = IdentityClaims {
            idp: crate::domain::IdpId::parse("okta").unwrap(),
            subject: "00U1".into(),
            username: "Alice@Example.com".into(),
            email: None,
            groups: vec![],
            claims: json!({}),
        };
        let s = settings("userName", IdentityKey::Username);
        assert_eq!(
            identity_key(&s, &claims).as_deref(),
            Some("alice@example.com")
        );
        let s = settings("userName", IdentityKey::Subject);
        assert_eq!(identity_key(&s, &claims).as_deref(), Some("00u1"));
        let s = settings("userName", IdentityKey::Email);
        assert_eq!(identity_key(&s, &claims), None, "no email: no key");
    }
}
