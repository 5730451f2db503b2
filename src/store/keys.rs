//! How stored things are named: the one key layout of every record.
//!
//! **Nothing is stored under an identifier a client holds.** Session ids, tokens, codes,
//! user codes, client ids and replay ids all become a [`Hashed`] (SHA-256, hex) before
//! they reach a key, so the store (and a copy of it) never holds anything usable as a
//! credential. A key is `PREFIX` + either `KIND:HASH` (global records) or
//! `{TAG}:KIND:HASH` (records that belong to a person: see [`PersonTag`]).

use serde::{Deserialize, Serialize};

/// SHA-256 of an identifier, lowercase hex: the only form in which identifiers that a
/// client holds are stored or keyed.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Hashed(String);

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Hashed {
    /// The stored form of `raw`.
    pub fn of(raw: &str) -> Self {
        Self(sha256_hex(raw.as_bytes()))
    }

    /// The stored form of several parts, each prefixed with its length, so no two lists
    /// of parts (`("a", "bc")` and `("ab", "c")`) hash alike.
    pub fn of_parts(parts: &[&str]) -> Self {
        let joined: String = parts.iter().map(|p| format!("{}:{p}", p.len())).collect();
        Self(sha256_hex(joined.as_bytes()))
    }

    /// A hash read back from the store or typed by an administrator: 64 hex characters.
    pub fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(hex.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Hashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The person (IdP + subject) a record belongs to, as 16 hex characters of a hash.
///
/// Every record of one person (sessions, CLI logins and their tokens, app tokens, pending
/// approvals) and the person's index share this tag in braces in their keys, so on a
/// Redis Cluster they live in one hash slot: writing a record and its index entry,
/// rotating a refresh token, or ending everything a person holds is one atomic step.
/// Client-held identifiers of such records carry the tag (`TAG.SECRET`), so a lookup
/// knows the slot without asking anyone.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct PersonTag(String);

impl PersonTag {
    pub const LEN: usize = 16;

    pub fn of(idp: &str, subject: &str) -> Self {
        let h = sha256_hex(format!("rolegate person\0{}:{idp}{subject}", idp.len()).as_bytes());
        Self(h[..Self::LEN].to_owned())
    }

    /// A tag read from a client-held identifier or typed by an administrator.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PersonTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a record lives: globally (`KIND:HASH`) or with a person (`{TAG}:KIND:HASH`).
/// Built only from a record kind and a [`Hashed`] id, so every key has the same layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub(super) fn global(kind: &str, id: &Hashed) -> Self {
        Self(format!("{kind}:{id}"))
    }

    pub(super) fn owned(tag: &PersonTag, kind: &str, id: &Hashed) -> Self {
        Self(format!("{{{tag}}}:{kind}:{id}"))
    }

    /// A person's index of what they hold.
    pub(super) fn index(tag: &PersonTag) -> Self {
        Self(format!("{{{tag}}}:person"))
    }

    /// The record an index field (`KIND:HASH`) names.
    pub(super) fn of_field(tag: &PersonTag, field: &str) -> Self {
        Self(format!("{{{tag}}}:{field}"))
    }

    /// A table of an IdP's provisioned directory: `{scim.HASH}:TABLE`, every table of one
    /// IdP in one hash slot.
    pub(super) fn directory(idp: &str, table: &str) -> Self {
        let h = sha256_hex(format!("rolegate scim\0{idp}").as_bytes());
        Self(format!("{{scim.{}}}:{table}", &h[..16]))
    }

    /// A rate-limit window or replay marker: `KIND:HASH`.
    pub(super) fn marker(kind: &str, id: &Hashed) -> Self {
        Self::global(kind, id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An index field: the record's kind and hashed id (`KIND:HASH`).
pub fn index_field(kind: &str, id: &Hashed) -> String {
    format!("{kind}:{id}")
}

/// A client-held identifier of a person's record: `TAG.SECRET` (the secret is 43
/// base64url characters). Returns the tag and the stored id.
pub fn split_owned_id(raw: &str) -> Option<(PersonTag, Hashed)> {
    let (tag, secret) = raw.split_once('.')?;
    let tag = PersonTag::parse(tag)?;
    let shaped = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then(|| (tag, Hashed::of(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stored_hashed_and_parts_do_not_run_together() {
        let h = Hashed::of("rga_secret");
        assert_eq!(h.as_str().len(), 64);
        assert!(!h.as_str().contains("secret"));
        assert_ne!(
            Hashed::of_parts(&["a", "bc"]),
            Hashed::of_parts(&["ab", "c"])
        );
        assert_ne!(
            Hashed::of_parts(&["a\0", "b"]),
            Hashed::of_parts(&["a", "\0b"])
        );
        assert_eq!(Hashed::parse(h.as_str()), Some(h));
        assert_eq!(Hashed::parse("ABC"), None);
    }

    #[test]
    fn a_persons_keys_share_one_hash_tag() {
        let tag = PersonTag::of("corp", "alice");
        assert_eq!(tag, PersonTag::of("corp", "alice"));
        assert_ne!(tag, PersonTag::of("corp", "alicf"));
        assert_ne!(PersonTag::of("corp", "a\0b"), PersonTag::of("corp\0a", "b"));
        let k = Key::owned(&tag, "session", &Hashed::of("x"));
        let i = Key::index(&tag);
        let braces = |k: &Key| k.as_str()[..k.as_str().find('}').unwrap() + 1].to_owned();
        assert_eq!(braces(&k), braces(&i));
        assert_eq!(braces(&k), format!("{{{tag}}}"));
    }

    #[test]
    fn owned_ids_carry_a_tag_and_a_full_secret() {
        let tag = PersonTag::of("corp", "alice");
        let raw = format!("{tag}.{}", "A".repeat(43));
        let (t, id) = split_owned_id(&raw).unwrap();
        assert_eq!(t, tag);
        assert_eq!(id, Hashed::of(&raw));
        for bad in [
            format!("{tag}.{}", "A".repeat(42)),
            format!("{tag}{}", "A".repeat(44)),
            format!("XYZ.{}", "A".repeat(43)),
            format!("{tag}.{}*", "A".repeat(42)),
        ] {
            assert!(split_owned_id(&bad).is_none(), "{bad}");
        }
    }
}
