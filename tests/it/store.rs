//! One contract, two backends: the in-memory store and a real redis-server must behave
//! the same for every primitive later features rely on.

use std::sync::Arc;
use std::time::Duration;

use rolegate::store::{MemoryStore, RedisStore, Store, StoreError};
use secrecy::SecretString;

use crate::helpers::{shared_redis, unique_prefix};

fn memory() -> Store {
    Store::Memory(MemoryStore::new(&unique_prefix("mem"), 10_000))
}

fn redis() -> Store {
    Store::Redis(
        RedisStore::new(
            &SecretString::from(shared_redis().to_owned()),
            &unique_prefix("redis"),
        )
        .unwrap(),
    )
}

/// A real 6-node Redis Cluster: keys of one test spread over all three masters' slots.
fn cluster() -> Store {
    Store::Redis(
        RedisStore::cluster(
            &SecretString::from(crate::helpers::shared_cluster().seed()),
            &unique_prefix("cluster"),
        )
        .unwrap(),
    )
}

const TTL: Duration = Duration::from_secs(60);

async fn put_get_delete(s: Store) {
    assert_eq!(
        s.raw().get("k").await.unwrap(),
        None,
        "absent key reads as None"
    );
    s.raw().put("k", "v1", TTL).await.unwrap();
    assert_eq!(s.raw().get("k").await.unwrap().as_deref(), Some("v1"));
    s.raw().put("k", "v2", TTL).await.unwrap();
    assert_eq!(
        s.raw().get("k").await.unwrap().as_deref(),
        Some("v2"),
        "put replaces"
    );
    assert!(s.raw().delete("k").await.unwrap());
    assert!(
        !s.raw().delete("k").await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(s.raw().get("k").await.unwrap(), None);
}

async fn take_is_single_use(s: Store) {
    s.raw().put("once", "secret-state", TTL).await.unwrap();
    assert_eq!(
        s.raw().take("once").await.unwrap().as_deref(),
        Some("secret-state")
    );
    assert_eq!(
        s.raw().take("once").await.unwrap(),
        None,
        "a taken value is gone"
    );
    assert_eq!(s.raw().get("once").await.unwrap(), None);
}

async fn concurrent_takes_yield_one_winner(s: Store) {
    for round in 0..5 {
        let key = format!("race{round}");
        s.raw().put(&key, "v", TTL).await.unwrap();
        let s = Arc::new(s.clone());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move { s.raw().take(&key).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap().is_some());
        }
        assert_eq!(winners, 1, "exactly one concurrent take gets the value");
    }
}

async fn put_if_absent_is_first_writer_wins(s: Store) {
    assert!(
        s.raw()
            .put_if_absent("assertion-id", "1", TTL)
            .await
            .unwrap()
    );
    assert!(
        !s.raw()
            .put_if_absent("assertion-id", "2", TTL)
            .await
            .unwrap(),
        "replay refused"
    );
    assert_eq!(
        s.raw().get("assertion-id").await.unwrap().as_deref(),
        Some("1"),
        "first value kept"
    );
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.raw()
                    .put_if_absent("contended", &i.to_string(), TTL)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut firsts = 0;
    for t in tasks {
        firsts += usize::from(t.await.unwrap());
    }
    assert_eq!(firsts, 1, "exactly one concurrent writer wins");
}

// Windows and TTLs are seconds long so a loaded CI machine cannot outrun them; the sleeps
// only need to exceed them.
async fn counters_count_within_a_window(s: Store) {
    let window = Duration::from_millis(1500);
    assert_eq!(s.raw().incr("hits", window).await.unwrap(), 1);
    assert_eq!(s.raw().incr("hits", window).await.unwrap(), 2);
    assert_eq!(
        s.raw().incr("hits", Duration::from_secs(60)).await.unwrap(),
        3,
        "later TTLs do not extend the window"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        s.raw().incr("hits", window).await.unwrap(),
        1,
        "a new window starts at 1"
    );
}

async fn get_renewing_reads_and_extends_the_ttl_in_one_step(s: Store) {
    let short = Duration::from_millis(1000);
    s.raw().put("r", "v", short).await.unwrap();
    assert_eq!(
        s.raw()
            .get_renewing("r", Duration::from_secs(10))
            .await
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(s.raw().get_renewing("absent", TTL).await.unwrap(), None);
    assert_eq!(
        s.raw().get("absent").await.unwrap(),
        None,
        "nothing is created"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.raw().get("r").await.unwrap().as_deref(),
        Some("v"),
        "renewed past its first TTL"
    );
    // Renewing can also shorten.
    s.raw()
        .get_renewing("r", Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.raw().get("r").await.unwrap(), None);
}

async fn values_expire(s: Store) {
    let short = Duration::from_millis(1500);
    s.raw().put("p", "v", short).await.unwrap();
    assert!(s.raw().put_if_absent("n", "v", short).await.unwrap());
    s.raw().put("t", "v", short).await.unwrap();
    assert_eq!(s.raw().get("p").await.unwrap().as_deref(), Some("v"));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(s.raw().get("p").await.unwrap(), None, "put expires");
    assert_eq!(
        s.raw().take("t").await.unwrap(),
        None,
        "take after expiry finds nothing"
    );
    assert!(
        s.raw().put_if_absent("n", "again", TTL).await.unwrap(),
        "an expired replay entry frees the id"
    );
}

async fn values_round_trip_unchanged(s: Store) {
    let tricky = "{\"json\":\"ünïcødé\",\"nl\":\"a\\nb\"} \r\n\t\u{0}end";
    s.raw().put("raw", tricky, TTL).await.unwrap();
    assert_eq!(s.raw().get("raw").await.unwrap().as_deref(), Some(tricky));
}

/// A directory change lands whole, only on the version it was computed from; of two
/// changes from one version, one wins (on a cluster too: the tables share a slot).
async fn directory_changes_are_all_or_nothing_on_their_version(s: Store) {
    use rolegate::store::Table;
    let v0 = s.directory_version("okta").await.unwrap();
    assert_eq!(v0, 0);
    let mut a = s.directory_change("okta", v0);
    a.put(Table::Users, "u1", "{\"userName\":\"alice\"}".into())
        .put(Table::Groups, "g1", "{\"members\":[\"u1\"]}".into())
        .put(Table::Members, "alice", "{\"active\":true}".into());
    let mut b = s.directory_change("okta", v0);
    b.put(Table::Users, "u2", "{}".into());
    assert!(s.directory_commit(&a).await.unwrap());
    assert!(
        !s.directory_commit(&b).await.unwrap(),
        "computed from a stale version"
    );
    assert_eq!(
        s.directory_get("okta", Table::Users, "u2").await.unwrap(),
        None
    );
    assert_eq!(s.directory_version("okta").await.unwrap(), 1);
    let mut c = s.directory_change("okta", 1);
    c.delete(Table::Groups, "g1")
        .delete(Table::Members, "alice");
    assert!(s.directory_commit(&c).await.unwrap());
    assert_eq!(
        s.directory_all("okta", Table::Groups).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.directory_all("okta", Table::Members).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.directory_all("okta", Table::Users).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.directory_version("other-idp").await.unwrap(),
        0,
        "one directory per IdP"
    );
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Note(u32);

impl rolegate::store::Record for Note {
    const KIND: &'static str = "test:note";
    fn ttl(&self, _now: u64) -> Duration {
        TTL
    }
}

/// A person's transaction applies only when every guard holds: exists, absent, unchanged;
/// of two writers guarded on the same state, one wins.
async fn person_transactions_apply_only_when_their_guards_hold(s: Store) {
    use rolegate::store::{Hashed, PersonTag};
    let tag = PersonTag::of("corp", &unique_prefix("guards"));
    let id = Hashed::of("note");
    let mut first = s.txn(&tag);
    first
        .require_absent::<Note>(&id)
        .put(&id, &Note(1))
        .unwrap();
    let mut second = s.txn(&tag);
    second
        .require_absent::<Note>(&id)
        .put(&id, &Note(2))
        .unwrap();
    assert!(s.commit(&first).await.unwrap());
    assert!(!s.commit(&second).await.unwrap(), "absent no more");
    let read = s.load_owned::<Note>(&tag, &id).await.unwrap().unwrap();
    assert_eq!(read.value, Note(1));
    let mut a = s.txn(&tag);
    a.require_unchanged(&id, &read).put(&id, &Note(3)).unwrap();
    let mut b = s.txn(&tag);
    b.require_unchanged(&id, &read).put(&id, &Note(4)).unwrap();
    assert!(s.commit(&a).await.unwrap());
    assert!(!s.commit(&b).await.unwrap(), "changed since read");
    let mut c = s.txn(&tag);
    c.require::<Note>(&Hashed::of("missing"))
        .put(&id, &Note(5))
        .unwrap();
    assert!(!s.commit(&c).await.unwrap());
    assert_eq!(
        s.load_owned::<Note>(&tag, &id)
            .await
            .unwrap()
            .unwrap()
            .value,
        Note(3)
    );
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory_backend {
            $( #[tokio::test] async fn $name() { super::$name(super::memory()).await } )*
        }
        mod redis_backend {
            $( #[tokio::test] async fn $name() { super::$name(super::redis()).await } )*
        }
        mod redis_cluster_backend {
            $( #[tokio::test] async fn $name() { super::$name(super::cluster()).await } )*
        }
    };
}

contract!(
    put_get_delete,
    take_is_single_use,
    concurrent_takes_yield_one_winner,
    put_if_absent_is_first_writer_wins,
    counters_count_within_a_window,
    values_expire,
    values_round_trip_unchanged,
    get_renewing_reads_and_extends_the_ttl_in_one_step,
    directory_changes_are_all_or_nothing_on_their_version,
    person_transactions_apply_only_when_their_guards_hold,
);

#[tokio::test]
async fn an_unreachable_redis_is_an_error_never_not_found() {
    let port = crate::helpers::free_port(); // nothing listens there
    let s = Store::Redis(
        RedisStore::new(
            &SecretString::from(format!("redis://127.0.0.1:{port}/")),
            "x:",
        )
        .unwrap(),
    );
    assert!(
        matches!(s.raw().take("k").await, Err(StoreError::Unavailable(_))),
        "take fails closed"
    );
    assert!(
        matches!(s.raw().get("k").await, Err(StoreError::Unavailable(_))),
        "get fails closed"
    );
    assert!(
        s.raw().put_if_absent("k", "v", TTL).await.is_err(),
        "replay check fails closed"
    );
    assert!(s.ping().await.is_err());
}

#[tokio::test]
async fn a_full_memory_store_refuses_new_keys_but_serves_existing_ones() {
    let s = Store::Memory(MemoryStore::new("cap:", 2));
    s.raw().put("a", "1", TTL).await.unwrap();
    s.raw().put("b", "2", TTL).await.unwrap();
    assert!(matches!(
        s.raw().put("c", "3", TTL).await,
        Err(StoreError::Full(2))
    ));
    s.raw()
        .put("a", "1b", TTL)
        .await
        .expect("overwriting an existing key is allowed");
    assert_eq!(s.raw().take("b").await.unwrap().as_deref(), Some("2"));
    s.raw()
        .put("c", "3", TTL)
        .await
        .expect("room again after a take");
}
