//! Typed single-use flow state: the one API through which every value that must be used
//! at most once before anyone is signed in is saved and consumed (OIDC `state`, SAML
//! RelayState and hand-off, held approval requests). Replay markers are in `limits`.
//!
//! A flow value is saved under its kind's key namespace with its kind's lifetime, and
//! consumed with an atomic get-and-delete: of two concurrent consumers exactly one gets
//! it. Each kind is a Rust type ([`FlowState`]), so a SAML RelayState can never be read
//! back as an OIDC login, and no caller spells a key by hand.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{Hashed, Key};
use super::{Store, StoreError};

/// A kind of single-use flow state: what it holds, where it lives, for how long.
pub trait FlowState: Serialize + DeserializeOwned {
    /// The key namespace, e.g. `"oidc:state"`; the hashed id follows it.
    const KIND: &'static str;
    /// How long it waits to be consumed before it expires unused.
    const TTL: Duration;
}

impl Store {
    /// Saves a flow value under `id` (stored hashed) for its kind's lifetime. Ids are
    /// random and fresh: an existing value under the same id would be a bug, and is
    /// overwritten rather than merged.
    pub async fn save_flow<T: FlowState>(&self, id: &str, value: &T) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.raw()
            .put(
                Key::global(T::KIND, &Hashed::of(id)).as_str(),
                &json,
                T::TTL,
            )
            .await
    }

    /// Consumes the flow value under `id`: returns it and deletes it in one atomic step.
    /// `Ok(None)` when it is unknown, expired or already consumed; a value that does not
    /// decode as `T` is corruption, never "not found".
    pub async fn consume_flow<T: FlowState>(&self, id: &str) -> Result<Option<T>, StoreError> {
        match self
            .raw()
            .take(Key::global(T::KIND, &Hashed::of(id)).as_str())
            .await?
        {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", T::KIND))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::store::{FirstUse, MemoryStore};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Pending {
        n: u32,
    }
    impl FlowState for Pending {
        const KIND: &'static str = "test:pending";
        const TTL: Duration = Duration::from_secs(60);
    }

    #[derive(Serialize, Deserialize, Debug)]
    struct Other {
        s: String,
    }
    impl FlowState for Other {
        const KIND: &'static str = "test:other";
        const TTL: Duration = Duration::from_secs(60);
    }

    fn store() -> Store {
        Store::Memory(MemoryStore::new("t:", 100))
    }

    #[tokio::test]
    async fn a_flow_value_is_consumed_once() {
        let s = store();
        s.save_flow("abc", &Pending { n: 7 }).await.unwrap();
        assert_eq!(
            s.consume_flow::<Pending>("abc").await.unwrap(),
            Some(Pending { n: 7 })
        );
        assert_eq!(s.consume_flow::<Pending>("abc").await.unwrap(), None);
    }

    #[tokio::test]
    async fn one_kind_cannot_be_read_as_another() {
        let s = store();
        s.save_flow("abc", &Pending { n: 7 }).await.unwrap();
        assert!(s.consume_flow::<Other>("abc").await.unwrap().is_none());
        // ...and the value of the right kind is still there.
        assert!(s.consume_flow::<Pending>("abc").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_replay_marker_reports_the_first_use_only() {
        let s = store();
        let ttl = Duration::from_secs(60);
        assert_eq!(
            s.first_use("seen", "id1", ttl).await.unwrap(),
            FirstUse::First
        );
        assert_eq!(
            s.first_use("seen", "id1", ttl).await.unwrap(),
            FirstUse::Replay
        );
        assert_eq!(
            s.first_use("seen", "id2", ttl).await.unwrap(),
            FirstUse::First
        );
    }

    #[tokio::test]
    async fn flow_ids_are_stored_hashed() {
        let s = store();
        s.save_flow("the-raw-id", &Pending { n: 1 }).await.unwrap();
        let key = format!("test:pending:{}", Hashed::of("the-raw-id"));
        assert!(s.raw().get(&key).await.unwrap().is_some());
        assert!(
            s.raw()
                .get("test:pending:the-raw-id")
                .await
                .unwrap()
                .is_none()
        );
    }
}
