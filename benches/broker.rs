//! Hot-path benchmarks: the mapping engine, the SAML pre-parse, and full SAML response
//! verification (pre-parse + samael/xmlsec with a pinned key + post-checks).
//!
//! `cargo bench --bench broker` measures (release profile) and prints one line per case;
//! the figures are recorded in BENCHMARKS.md. Under `cargo test` (no `--bench` flag) each
//! case runs a few times as a smoke test, so the bench code cannot rot.

#[path = "../tests/it/saml_fixtures.rs"]
#[allow(dead_code)]
mod saml_fixtures;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use rolegate::idp::saml::{PendingRequest, SamlProvider, prefilter};

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations.min(10) {
        f(); // warm-up
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = started.elapsed() / iterations;
    println!(
        "{name:<44} {iterations:>8} iterations   {:>10.2} µs/op   {:>10.0} ops/s",
        per.as_secs_f64() * 1e6,
        1.0 / per.as_secs_f64().max(1e-12)
    );
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = |full: u32| if measuring { full } else { 3 };

    // Mapping: the example config's rules against the contractor claims (3 rules match, a deny wins).
    let config =
        rolegate::config::load(Path::new("config/rolegate.example.toml")).expect("example config");
    let claims: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("config/examples/contractor.claims.json").unwrap(),
    )
    .unwrap();
    let identity =
        rolegate::idp::identity_from_claims(config.idp("corp").unwrap(), claims).unwrap();
    measure("mapping: evaluate (3 rules, deny wins)", n(200_000), || {
        black_box(config.rules.evaluate(black_box(&identity)));
    });
    measure("config: load + validate example file", n(2_000), || {
        black_box(rolegate::config::load(Path::new("config/rolegate.example.toml")).unwrap());
    });

    // SAML: one response signed with the test key (Response and Assertion both signed).
    let (sp, acs, request) = (
        "http://127.0.0.1:1/saml/b/metadata",
        "http://127.0.0.1:1/saml/b/acs",
        "_bench000000000000000000000000000001",
    );
    let mut f = saml_fixtures::Fixture::new(sp, acs, Some(request));
    f.sign_response = true;
    f.not_on_or_after = chrono::Utc::now() + chrono::Duration::hours(1);
    let xml = f.signed();
    let allowed = [saml_fixtures::RSA_SHA256];
    measure("saml: pre-parse (quick-xml, no DTD)", n(20_000), || {
        black_box(prefilter::check(black_box(&xml), &allowed, false).unwrap());
    });

    let k = saml_fixtures::keys();
    let md = k.dir.join("bench-idp-metadata.xml");
    std::fs::write(&md, saml_fixtures::idp_metadata(&k.idp)).unwrap();
    let text = format!(
        "[[idp]]\nid = \"b\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\n[[account]]\nid = \"a\"\nnumber = \"111122223333\"\n",
        md.display(),
        k.idp.cert.display()
    );
    let cfg = rolegate::config::from_str(&text, Path::new("bench.toml"), Vec::new()).unwrap();
    let idp = cfg.idp("b").unwrap().clone();
    let rolegate::config::IdpProtocol::Saml(settings) = idp.protocol.clone() else {
        unreachable!()
    };
    let provider = SamlProvider::new(idp, settings, &"http://127.0.0.1:1".parse().unwrap());
    provider
        .load_metadata(&saml_fixtures::idp_metadata(&k.idp))
        .unwrap();
    let pending = PendingRequest {
        idp: "b".into(),
        request_id: request.into(),
        binding: String::new(),
        return_to: None,
    };
    let b64 = saml_fixtures::b64(&xml);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    measure(
        "saml: verify response (2 signatures, RSA-2048)",
        n(2_000),
        || {
            black_box(
                rt.block_on(provider.verify(&b64, Some(&pending), chrono::Utc::now()))
                    .unwrap(),
            );
        },
    );
    if !measuring {
        println!("(smoke run; `cargo bench --bench broker` measures)");
    }
}
