//! The directory of people in the administration core: searching it, and one person's
//! view (their entry, what they hold, their recent history, the locks that apply).

use super::admin::{AdminCore, AdminError, MAX_QUERY, PersonEntry, PersonView};
use super::holdings::Holding;
use super::locks::LockTarget;
use crate::store::{PersonTag, now_unix};

impl AdminCore {
    /// People with live access whose e-mail, user name or subject contains `query`, or who
    /// are in the group `query` (case-insensitive), at most `limit`.
    pub async fn search(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<(PersonTag, PersonEntry)>, AdminError> {
        let q = query.trim().to_lowercase();
        if q.chars().count() > MAX_QUERY {
            return Err(AdminError::Invalid(format!(
                "the search is longer than {MAX_QUERY} characters"
            )));
        }
        let now = now_unix();
        let mut found = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, page) = self.store.entries_from::<PersonEntry>(cursor, 500).await?;
            for (tag, e) in page {
                let Some(tag) = PersonTag::parse(&tag) else {
                    continue;
                };
                if e.expires <= now {
                    let _ = self.store.entry_remove::<PersonEntry>(tag.as_str()).await;
                    continue;
                }
                let hit = q.is_empty()
                    || e.subject.to_lowercase().contains(&q)
                    || e.username.to_lowercase().contains(&q)
                    || e.email
                        .as_deref()
                        .is_some_and(|m| m.to_lowercase().contains(&q))
                    || e.groups.iter().any(|g| g.to_lowercase() == q);
                if hit {
                    found.push((tag, e));
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        found.sort_by(|a, b| a.1.username.cmp(&b.1.username));
        Ok(found)
    }

    /// The tag of the person `idp` + `subject`.
    pub fn tag_of(idp: &str, subject: &str) -> PersonTag {
        PersonTag::of(idp, subject)
    }

    /// One person: their directory entry, live items, recent history and locks.
    pub async fn person(&self, tag: &PersonTag, history: usize) -> Result<PersonView, AdminError> {
        let entry = self.store.entry::<PersonEntry>(tag.as_str()).await?;
        let mut holdings: Vec<(String, Holding)> = self
            .store
            .holdings(tag)
            .await?
            .into_iter()
            .filter_map(|(f, json)| serde_json::from_str(&json).ok().map(|h| (f, h)))
            .collect();
        holdings.sort_by_key(|h| std::cmp::Reverse(h.1.created));
        let history: Vec<serde_json::Value> = self
            .store
            .history(tag, history)
            .await?
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if entry.is_none() && holdings.is_empty() && history.is_empty() {
            return Err(AdminError::NotFound(
                "nobody with that id has access or a recent history".into(),
            ));
        }
        let (idp, subject, groups) = match (&entry, holdings.first()) {
            (Some(e), _) => (e.idp.clone(), e.subject.clone(), e.groups.clone()),
            (None, Some((_, h))) => (h.idp.clone(), h.subject.clone(), Vec::new()),
            (None, None) => Default::default(),
        };
        let now = now_unix();
        let locks = self
            .locks()
            .await?
            .into_iter()
            .filter(|l| l.is_active(now))
            .filter(|l| match &l.target {
                LockTarget::Person { idp: i, subject: s } => *i == idp && *s == subject,
                LockTarget::Group { idp: i, group } => {
                    i.as_deref().is_none_or(|i| i == idp) && groups.contains(group)
                }
                LockTarget::Role { .. } => false,
            })
            .collect();
        Ok(PersonView {
            tag: tag.clone(),
            entry,
            holdings,
            history,
            locks,
        })
    }
}
