//! The SAML attack suite (SECURITY-BAR S1–S34): each case starts from a known-good
//! response signed with the tests' own IdP key, changes exactly one thing, and must be
//! rejected with its own reason, leaving no session.
//!
//! This file holds the harness and the known-good case; `wrapping` has signature
//! wrapping and key cases, `content` references, transforms, DTDs and the content checks.

mod content;
mod encryption;
mod wrapping;

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Response};

use crate::helpers::{TestApp, config_from, spawn_app};
use crate::oidc::{browser, location};
use crate::saml_fixtures::{self as fx, Fixture, keys};

/// Writes `text` to `path` so that a concurrent reader sees the old file or the whole
/// new one, never a part: brokers started by tests running in parallel read these
/// metadata files once, and a half-written one left that IdP unavailable (a flake of
/// about 1 run in 13).
fn write_whole(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension(format!("tmp{:x}", rand::random::<u64>()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub struct AttackBroker {
    pub app: TestApp,
    audit: tempfile::TempDir,
}

impl AttackBroker {
    pub async fn start() -> Self {
        let k = keys();
        let md = k.dir.join("idp-metadata.xml");
        write_whole(&md, &fx::idp_metadata(&k.idp));
        let idp = |id: &str, initiated: bool| {
            format!(
                "[[idp]]\nid = \"{id}\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\ngroups_attribute = \"groups\"\nallow_idp_initiated = {initiated}\n\n",
                md.display(),
                k.idp.cert.display()
            )
        };
        // Two IdPs publishing an RSA and an EC signing key, in both orders, both pinned.
        let mixed = |name: &str, keys: &[&fx::KeyPair]| {
            let path = k.dir.join(format!("{name}-metadata.xml"));
            write_whole(&path, &fx::idp_metadata_with(keys));
            format!(
                "[[idp]]\nid = \"{name}\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\", \"{}\"]\ngroups_attribute = \"groups\"\n\n",
                path.display(),
                k.idp.cert.display(),
                k.idp_ec.cert.display()
            )
        };
        // An IdP that encrypts assertions to the broker's SP key.
        let enc = format!(
            "[[idp]]\nid = \"enc\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\ngroups_attribute = \"groups\"\nsp_key = {{ file = \"{}\" }}\nsp_cert_file = \"{}\"\n\n",
            md.display(),
            k.idp.cert.display(),
            k.sp.key.display(),
            k.sp.cert.display()
        );
        // An IdP whose metadata carries no KeyDescriptor at all (some publish keys only
        // out of band): the pinned certificate alone verifies.
        let bare = {
            let path = k.dir.join("nokey-metadata.xml");
            write_whole(&path, &fx::idp_metadata_with(&[]));
            format!(
                "[[idp]]\nid = \"nokey\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\ngroups_attribute = \"groups\"\n\n",
                path.display(),
                k.idp.cert.display()
            )
        };
        let extra = format!(
            "{}{}{}{}{enc}{bare}[[rule]]\nid = \"devs\"\nwhen = {{ group = \"devs\" }}\ngrant = [\"dev-admin\"]\n",
            idp("atk", false),
            idp("atki", true),
            mixed("mix-rsa-first", &[&k.idp, &k.idp_ec]),
            mixed("mix-ec-first", &[&k.idp_ec, &k.idp]),
        );
        let mut config = config_from("store = \"memory\"", &extra);
        let audit = tempfile::tempdir().unwrap();
        config.audit.file = Some(audit.path().join("audit.jsonl"));
        // The SP entity id and ACS derive from the public URL: use the real port.
        let port = crate::helpers::free_port();
        config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.server.public_url = format!("http://127.0.0.1:{port}").parse().unwrap();
        let app = spawn_app(config).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.get("/saml/atk/metadata").await.status() != 200 {
            assert!(
                Instant::now() < deadline,
                "SAML metadata of the test IdP did not load"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { app, audit }
    }

    pub fn sp_entity(&self, idp: &str) -> String {
        format!("{}/saml/{idp}/metadata", self.app.address)
    }

    pub fn acs(&self, idp: &str) -> String {
        format!("{}/saml/{idp}/acs", self.app.address)
    }

    /// Starts an SP-initiated login; returns (RelayState, AuthnRequest ID).
    pub async fn start_login(&self, client: &Client, idp: &str) -> (String, String) {
        let res = client
            .get(format!("{}/login/{idp}", self.app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let url = url::Url::parse(&location(&res)).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let deflated = fx::b64_decode(&q["SAMLRequest"]);
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut xml)
            .unwrap();
        let id = xml
            .split(" ID=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            id.len() >= 33,
            "request ids carry at least 128 random bits: {id}"
        );
        (q["RelayState"].clone(), id)
    }

    /// A known-good fixture for a fresh login in `client`; returns it with the RelayState.
    pub async fn fixture(&self, client: &Client, idp: &str) -> (Fixture, String) {
        let (relay, id) = self.start_login(client, idp).await;
        (
            Fixture::new(&self.sp_entity(idp), &self.acs(idp), Some(&id)),
            relay,
        )
    }

    pub async fn post(
        &self,
        client: &Client,
        idp: &str,
        xml: &str,
        relay: Option<&str>,
    ) -> Response {
        let b64 = fx::b64(xml);
        let mut form = vec![("SAMLResponse", b64.as_str())];
        if let Some(r) = relay {
            form.push(("RelayState", r));
        }
        client.post(self.acs(idp)).form(&form).send().await.unwrap()
    }

    /// Follows a successful ACS answer through the finish step.
    pub async fn finish(&self, client: &Client, res: Response) -> bool {
        if res.status() != 303 {
            return false;
        }
        let res = client
            .get(format!("{}{}", self.app.address, location(&res)))
            .send()
            .await
            .unwrap();
        res.status() == 303 && self.signed_in(client).await
    }

    pub async fn signed_in(&self, client: &Client) -> bool {
        let res = client
            .get(format!("{}/", self.app.address))
            .send()
            .await
            .unwrap();
        res.status() == 200 && res.text().await.unwrap().contains("action=\"/logout\"")
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Asserts the last ACS call was refused for `reason`, with no session.
    pub async fn assert_rejected(&self, client: &Client, res: Response, reason: &str) {
        let status = res.status();
        assert!(
            status.is_client_error() || status.is_server_error(),
            "expected a rejection ({reason}), got {status}"
        );
        let last = self
            .audit()
            .into_iter()
            .rev()
            .find(|r| r["event"] == "login")
            .expect("the rejection is audited");
        assert_eq!(last["outcome"], "failure");
        let got = last["reason"].as_str().unwrap();
        assert!(
            got.starts_with(&format!("saml {reason}:")),
            "expected reason {reason}, got {got}"
        );
        assert!(
            !self.signed_in(client).await,
            "no session after a rejected response"
        );
        let metrics = self.app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "counted in saml_rejections"
        );
    }
}

/// Runs one attack: `mutate` changes the fixture before signing, `tamper` the signed XML.
async fn attack(
    reason: &str,
    mutate: impl FnOnce(&mut Fixture),
    tamper: impl FnOnce(String) -> String,
) {
    let b = AttackBroker::start().await;
    let client = browser();
    let (mut f, relay) = b.fixture(&client, "atk").await;
    mutate(&mut f);
    let xml = tamper(f.signed());
    let res = b.post(&client, "atk", &xml, Some(&relay)).await;
    b.assert_rejected(&client, res, reason).await;
}

fn replace_once(xml: String, from: &str, to: &str) -> String {
    assert!(xml.contains(from), "fixture lacks {from}");
    xml.replacen(from, to, 1)
}

#[tokio::test]
async fn the_known_good_response_signs_in() {
    let b = AttackBroker::start().await;
    for (what, sign_assertion, sign_response) in [
        ("assertion signed", true, false),
        ("response signed", false, true),
        ("both signed", true, true),
    ] {
        let client = browser();
        let (mut f, relay) = b.fixture(&client, "atk").await;
        f.sign_assertion = sign_assertion;
        f.sign_response = sign_response;
        let res = b.post(&client, "atk", &f.signed(), Some(&relay)).await;
        assert!(
            b.finish(&client, res).await,
            "{what}: the known-good response must sign in"
        );
    }
    let login = b
        .audit()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "login")
        .unwrap();
    assert_eq!(login["outcome"], "success");
    assert_eq!(login["subject"], "alice@example.com");
}
