//! A proptest mutator over the SAML pre-parse + samael verification path, seeded with a
//! known-good signed response. Properties: nothing panics or hangs, and any mutated
//! response that is still accepted yields exactly the original identity (the mutation
//! cannot have changed who signs in).
//!
//! CI runs a few dozen cases (seconds); run longer locally with
//! `PROPTEST_CASES=5000 cargo test --test it saml_fuzz`.

use std::sync::OnceLock;

use proptest::prelude::*;
use rolegate::idp::saml::{PendingRequest, SamlProvider};

use crate::saml_fixtures::{self as fx, Fixture, keys};

const SP: &str = "http://127.0.0.1:1/saml/fz/metadata";
const ACS: &str = "http://127.0.0.1:1/saml/fz/acs";
const REQUEST: &str = "_fuzz0000000000000000000000000000001";

fn provider() -> SamlProvider {
    let k = keys();
    let md = k.dir.join("fuzz-idp-metadata.xml");
    std::fs::write(&md, fx::idp_metadata(&k.idp)).unwrap();
    let extra = format!(
        "[[idp]]\nid = \"fz\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\n",
        md.display(),
        k.idp.cert.display()
    );
    let config = crate::helpers::config_from("store = \"memory\"", &extra);
    let idp = config.idp("fz").unwrap().clone();
    let rolegate::config::IdpProtocol::Saml(settings) = idp.protocol.clone() else {
        unreachable!()
    };
    let p = SamlProvider::new(idp, settings, &"http://127.0.0.1:1".parse().unwrap());
    p.load_metadata(&fx::idp_metadata(&k.idp)).unwrap();
    p
}

/// The seed: one signed response (both Response and Assertion signed), made once.
fn seed() -> &'static str {
    static SEED: OnceLock<String> = OnceLock::new();
    SEED.get_or_init(|| {
        let mut f = Fixture::new(SP, ACS, Some(REQUEST));
        f.sign_response = true;
        // Valid for the whole run.
        f.not_on_or_after = chrono::Utc::now() + chrono::Duration::hours(2);
        f.signed()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (
            any::<usize>(),
            prop_oneof![
                Just("<!---->".to_owned()),
                Just("<!DOCTYPE x>".to_owned()),
                Just("<saml:Assertion ID=\"_x\">".to_owned()),
                Just("</saml:Assertion>".to_owned()),
                Just("<ds:Object>".to_owned()),
                Just("&amp;".to_owned()),
                Just("\u{0}".to_owned()),
                "[ -~]{0,12}",
            ]
        )
            .prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), any::<usize>(), 1usize..200)
            .prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
    ]
}

fn apply(xml: &str, m: &Mutation) -> Vec<u8> {
    let mut bytes = xml.as_bytes().to_vec();
    let len = bytes.len();
    match m {
        Mutation::Flip(i, b) => bytes[i % len] ^= b | 1,
        Mutation::Delete(i, n) => {
            let start = i % len;
            bytes.drain(start..(start + n).min(len));
        }
        Mutation::Insert(i, s) => {
            let at = i % len;
            bytes.splice(at..at, s.bytes());
        }
        Mutation::Duplicate(a, b, n) => {
            let (from, to) = (a % len, b % len);
            let piece = bytes[from..(from + n).min(len)].to_vec();
            bytes.splice(to..to, piece);
        }
    }
    bytes
}

#[test]
fn the_seed_is_accepted() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let p = provider();
    let pending = PendingRequest {
        idp: "fz".into(),
        request_id: REQUEST.into(),
        binding: String::new(),
        return_to: None,
    };
    let (assertion, _) = rt
        .block_on(p.verify(&fx::b64(seed()), Some(&pending), chrono::Utc::now()))
        .expect("the seed verifies");
    assert_eq!(
        p.identity(&assertion).unwrap().claims().subject,
        "alice@example.com"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_responses_never_panic_and_never_change_the_identity(mutations in prop::collection::vec(mutation(), 1..4)) {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let p = provider();
        let pending = PendingRequest { idp: "fz".into(), request_id: REQUEST.into(), binding: String::new(), return_to: None };
        let mut bytes = seed().as_bytes().to_vec();
        for m in &mutations {
            let xml = String::from_utf8_lossy(&bytes).into_owned();
            bytes = apply(&xml, m);
        }
        let b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        };
        let started = std::time::Instant::now();
        let result = rt.block_on(p.verify(&b64, Some(&pending), chrono::Utc::now()));
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(6), "bounded time");
        if let Ok((assertion, _)) = result {
            let identity = p.identity(&assertion);
            if let Ok(identity) = identity {
                let c = identity.claims();
                prop_assert_eq!(c.subject.as_str(), "alice@example.com");
                let groups: Vec<&str> = c.groups.iter().map(|g| g.as_str()).collect();
                prop_assert_eq!(groups, vec!["devs"]);
            }
        }
    }
}
