//! References and transforms (refused before xmlsec, with no network or file access),
//! DTDs and processing instructions, and the checks on what a verified response says.

use super::wrapping::evil_copy;
use super::*;

// ---- references and transforms: refused before xmlsec, without any network or file access

/// A listener that records every connection, to prove nothing is fetched.
fn hit_counter() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/ssrf-probe",
        listener.local_addr().unwrap().port()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (url, hits)
}

async fn reference_attack(reason: &str, tamper: impl FnOnce(String, &str) -> String) {
    let (url, hits) = hit_counter();
    let started = Instant::now();
    attack(reason, |_| {}, |xml| tamper(xml, &url)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused quickly"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no outbound request was made"
    );
}

/// The signed XML with its (first) Reference pointing at `uri` instead.
fn with_reference_uri(xml: String, uri: &str) -> String {
    let r = reference_of(&xml);
    xml.replacen(&r, &format!("<ds:Reference URI=\"{uri}\""), 1)
}

fn reference_of(xml: &str) -> String {
    let uri = xml
        .split("<ds:Reference URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    format!("<ds:Reference URI=\"{uri}\"")
}

#[tokio::test]
async fn an_http_reference_uri_is_refused_without_fetching_it() {
    reference_attack("reference_uri", with_reference_uri).await;
}

#[tokio::test]
async fn a_file_reference_uri_is_refused() {
    reference_attack("reference_uri", |xml, _| {
        with_reference_uri(xml, "file:///etc/passwd")
    })
    .await;
}

#[tokio::test]
async fn an_xpointer_reference_is_refused() {
    reference_attack("reference_uri", |xml, _| {
        with_reference_uri(xml, "#xpointer(/)")
    })
    .await;
}

#[tokio::test]
async fn a_second_reference_is_refused() {
    reference_attack("reference_count", |xml, _| {
        let r = reference_of(&xml);
        replace_once(xml, "</ds:SignedInfo>", &format!("{r}><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo>"))
    })
    .await;
}

#[tokio::test]
async fn an_xslt_transform_is_refused() {
    reference_attack("transform", |xml, url| {
        replace_once(
            xml,
            "<ds:Transforms>",
            &format!("<ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\"><xsl:stylesheet xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" version=\"1.0\"><xsl:template match=\"/\"><xsl:copy-of select=\"document('{url}')\"/></xsl:template></xsl:stylesheet></ds:Transform>"),
        )
    })
    .await;
}

#[tokio::test]
async fn an_xpath_transform_is_refused() {
    reference_attack("transform", |xml, _| {
        replace_once(xml, "<ds:Transforms>", "<ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"><ds:XPath>count(//. | //@* | //namespace::*)</ds:XPath></ds:Transform>")
    })
    .await;
}

#[tokio::test]
async fn a_doctype_with_entities_is_refused() {
    reference_attack("doctype", |xml, url| {
        format!("<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM \"{url}\"><!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>{}", xml.replacen("alice@example.com", "&xxe;&lol2;", 1))
    })
    .await;
}

#[tokio::test]
async fn a_processing_instruction_is_refused() {
    attack(
        "processing_instruction",
        |_| {},
        |xml| format!("<?xml-stylesheet href=\"x.xsl\"?>{xml}"),
    )
    .await;
}

// ---- content checks -----------------------------------------------------------------

#[tokio::test]
async fn comment_injection_in_the_nameid_never_truncates_the_identity() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (mut f, relay) = b.fixture(&client, "atk").await;
    f.name_id = "alice@example.com.evil.com".into();
    let xml = f.signed().replace(
        "alice@example.com.evil.com</saml:NameID>",
        "alice@example.com<!---->.evil.com</saml:NameID>",
    );
    let res = b.post(&client, "atk", &xml, Some(&relay)).await;
    let accepted = b.finish(&client, res).await;
    let last = b
        .audit()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "login")
        .unwrap();
    if accepted {
        assert_eq!(
            last["subject"], "alice@example.com.evil.com",
            "the full NameID, never the text before the comment"
        );
    } else {
        assert_eq!(last["outcome"], "failure");
        assert_ne!(last["subject"], "alice@example.com");
    }
}

#[tokio::test]
async fn a_missing_audience_restriction_is_rejected() {
    attack("audience_missing", |f| f.audience = None, |xml| xml).await;
}

#[tokio::test]
async fn another_audience_is_rejected() {
    attack(
        "wrong_audience",
        |f| f.audience = Some("https://other-sp.example.com/metadata".into()),
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn a_wrong_recipient_is_rejected() {
    attack(
        "wrong_destination",
        |f| f.recipient = "https://other-sp.example.com/acs".into(),
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn a_wrong_destination_on_a_signed_response_is_rejected() {
    attack(
        "wrong_destination",
        |f| {
            f.sign_response = true;
            f.destination = Some("https://other-sp.example.com/acs".into());
        },
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn a_signed_response_without_a_destination_is_rejected() {
    attack(
        "wrong_destination",
        |f| {
            f.sign_response = true;
            f.destination = None;
        },
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn an_expired_assertion_is_rejected() {
    attack(
        "expired",
        |f| {
            let past = chrono::Utc::now() - chrono::Duration::minutes(30);
            f.not_on_or_after = past;
            f.not_before = past - chrono::Duration::minutes(5);
        },
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn a_not_yet_valid_assertion_is_rejected() {
    attack(
        "not_yet_valid",
        |f| f.not_before = chrono::Utc::now() + chrono::Duration::minutes(10),
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn a_future_issue_instant_is_rejected() {
    attack(
        "future_issue_instant",
        |f| f.assertion_issue_instant = chrono::Utc::now() + chrono::Duration::hours(1),
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn two_assertions_are_rejected() {
    attack(
        "assertion_count",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let second = evil_copy(&a, "_second").replace("admin@example.com", "alice@example.com");
            xml.replacen(
                "</samlp:Response>",
                &format!("{second}</samlp:Response>"),
                1,
            )
        },
    )
    .await;
}

#[tokio::test]
async fn a_status_other_than_success_is_rejected() {
    attack(
        "status_not_success",
        |f| {
            f.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into();
            f.sign_response = true;
        },
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn the_issuer_of_another_idp_is_rejected() {
    attack(
        "wrong_issuer",
        |f| f.issuer = "https://other-idp.example.com/metadata".into(),
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn an_oversized_response_is_rejected() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (f, relay) = b.fixture(&client, "atk").await;
    // Over the 256 KiB SAMLResponse cap, under the ACS body limit: the handler refuses it.
    let xml = f.signed();
    let padding = 198_000 - xml.len();
    let padded = xml.replacen(
        "<samlp:Status>",
        &format!("<!--{}--><samlp:Status>", "x".repeat(padding)),
        1,
    );
    assert!(fx::b64(&padded).len() > rolegate::idp::saml::MAX_RESPONSE_B64);
    let res = b.post(&client, "atk", &padded, Some(&relay)).await;
    b.assert_rejected(&client, res, "too_large").await;
    // Far beyond the form limit: refused by the body limit itself.
    let res = client
        .post(b.acs("atk"))
        .form(&[("SAMLResponse", "A".repeat(1024 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(!b.signed_in(&client).await);
}

// ---- request binding, unsolicited responses, replay -----------------------------------

#[tokio::test]
async fn an_unknown_in_response_to_is_rejected() {
    attack(
        "in_response_to",
        |f| f.in_response_to = Some(format!("_{:032x}", rand::random::<u128>())),
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn another_browsers_request_id_is_rejected() {
    let b = AttackBroker::start().await;
    let (victim, attacker) = (browser(), browser());
    let (victim_relay, _) = b.start_login(&victim, "atk").await;
    let (f, _attacker_relay) = b.fixture(&attacker, "atk").await;
    // The attacker's response (for the attacker's own request) posted with the victim's
    // RelayState: the request ids differ.
    let res = b
        .post(&victim, "atk", &f.signed(), Some(&victim_relay))
        .await;
    b.assert_rejected(&victim, res, "in_response_to").await;
}

#[tokio::test]
async fn an_unsolicited_response_is_rejected_when_idp_initiated_login_is_off() {
    attack_without_relay("atk", "unsolicited").await;
}

async fn attack_without_relay(idp: &str, reason: &str) {
    let b = AttackBroker::start().await;
    let client = browser();
    let f = Fixture::new(&b.sp_entity(idp), &b.acs(idp), None);
    let res = b.post(&client, idp, &f.signed(), None).await;
    b.assert_rejected(&client, res, reason).await;
}

#[tokio::test]
async fn a_response_naming_a_request_but_without_relay_state_is_rejected() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (f, _relay) = b.fixture(&client, "atk").await;
    let res = b.post(&client, "atk", &f.signed(), None).await;
    b.assert_rejected(&client, res, "unknown_request").await;
}

#[tokio::test]
async fn a_replayed_assertion_is_rejected() {
    let b = AttackBroker::start().await;
    let client = browser();
    // IdP-initiated is on for "atki": no request binding, so only the replay cache stops a
    // captured response from being used twice.
    let f = Fixture::new(&b.sp_entity("atki"), &b.acs("atki"), None);
    let xml = f.signed();
    let first = b.post(&client, "atki", &xml, None).await;
    assert!(
        b.finish(&client, first).await,
        "the first use signs in (IdP-initiated allowed)"
    );
    let other = browser();
    let res = b.post(&other, "atki", &xml, None).await;
    b.assert_rejected(&other, res, "replay").await;
}

#[tokio::test]
async fn a_relay_state_that_is_a_url_is_rejected() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (f, _relay) = b.fixture(&client, "atk").await;
    let res = b
        .post(
            &client,
            "atk",
            &f.signed(),
            Some("https://evil.example.com/"),
        )
        .await;
    b.assert_rejected(&client, res, "bad_relay_state").await;
}

#[tokio::test]
async fn a_response_for_idp_a_posted_to_idp_bs_acs_is_rejected() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (f, relay) = b.fixture(&client, "atk").await;
    let res = b.post(&client, "atki", &f.signed(), Some(&relay)).await;
    b.assert_rejected(&client, res, "unknown_request").await;
}

// ---- metadata pinning and encrypted assertions ----------------------------------------

#[tokio::test]
async fn metadata_whose_key_is_not_pinned_is_refused_and_nobody_gets_in() {
    let k = keys();
    let md = k.dir.join("unpinned-metadata.xml");
    // The metadata carries the attacker's key; the config pins the real IdP's.
    std::fs::write(&md, fx::idp_metadata(&k.attacker)).unwrap();
    let extra = format!(
        "[[idp]]\nid = \"bad\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\n",
        md.display(),
        k.idp.cert.display()
    );
    let app = spawn_app(config_from("store = \"memory\"", &extra)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["idps_unavailable"], serde_json::json!(["bad"]));
    assert_eq!(
        app.get("/login/bad").await.status(),
        503,
        "no login against unpinned metadata"
    );
    // A response signed with the key from that metadata gets nowhere either.
    let f = Fixture {
        attacker_key: true,
        ..Fixture::new("x", "y", None)
    };
    let res = app
        .client
        .post(format!("{}/saml/bad/acs", app.address))
        .form(&[("SAMLResponse", fx::b64(&f.signed()))])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error() || res.status().is_server_error());
}

fn encrypted(xml: String, key_alg: &str, data_alg: &str) -> String {
    let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
    let enc = format!(
        r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element"><xenc:EncryptionMethod Algorithm="{data_alg}"/><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{key_alg}"/><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#
    );
    xml.replacen(&a, &enc, 1)
}

#[tokio::test]
async fn an_encrypted_assertion_without_an_sp_key_is_refused() {
    attack(
        "encryption_not_configured",
        |f| {
            f.sign_assertion = false;
            f.sign_response = true;
        },
        |xml| {
            encrypted(
                xml,
                "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
                "http://www.w3.org/2009/xmlenc11#aes256-gcm",
            )
        },
    )
    .await;
}

#[test]
fn rsa_1_5_and_cbc_encryption_are_refused_before_any_decryption() {
    use rolegate::idp::saml::prefilter::{Rejection, check};
    let f = Fixture {
        sign_assertion: false,
        sign_response: true,
        ..Fixture::new("sp", "acs", None)
    };
    // Signatures do not matter here: the pre-parse refuses before anything is verified.
    let xml = f.response(&f.assertion(false), false);
    let signed_shape = |x: String| {
        x.replacen("</saml:Issuer>", "</saml:Issuer><ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo><ds:Reference URI=\"\"/></ds:SignedInfo></ds:Signature>", 1)
    };
    let algs = [fx::RSA_SHA256];
    let rsa15 = signed_shape(encrypted(
        xml.clone(),
        "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    ));
    assert_eq!(
        check(&rsa15, &algs, true),
        Err(Rejection::EncryptionAlgorithm(
            "http://www.w3.org/2001/04/xmlenc#rsa-1_5".into()
        ))
    );
    let cbc = signed_shape(encrypted(
        xml.clone(),
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    ));
    assert_eq!(
        check(&cbc, &algs, true),
        Err(Rejection::EncryptionAlgorithm(
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc".into()
        ))
    );
    // AES-192-GCM: nothing decrypts it, so it is refused up front (not after verifying).
    let aes192 = signed_shape(encrypted(
        xml.clone(),
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        "http://www.w3.org/2009/xmlenc11#aes192-gcm",
    ));
    assert_eq!(
        check(&aes192, &algs, true),
        Err(Rejection::EncryptionAlgorithm(
            "http://www.w3.org/2009/xmlenc11#aes192-gcm".into()
        ))
    );
    // A content cipher named as key transport (or the reverse) is refused too.
    let swapped = signed_shape(encrypted(
        xml.clone(),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    ));
    assert!(matches!(
        check(&swapped, &algs, true),
        Err(Rejection::EncryptionAlgorithm(_))
    ));
    let unsigned_response = encrypted(
        xml,
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    );
    // The inner assertion's signature is invisible while encrypted: the Response must be signed.
    assert_eq!(
        check(&unsigned_response, &algs, true),
        Err(Rejection::EncryptedButResponseUnsigned)
    );
}

#[tokio::test]
async fn with_an_sp_key_authn_requests_are_signed_and_the_cert_is_published() {
    let k = keys();
    let sp_dir = tempfile::tempdir().unwrap();
    let sp = fx::KeyPair::generate(sp_dir.path(), "rolegate-sp");
    let md = k.dir.join("idp-metadata-sp.xml");
    std::fs::write(&md, fx::idp_metadata(&k.idp)).unwrap();
    let extra = format!(
        "[[idp]]\nid = \"signed\"\nkind = \"saml\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\nsp_key = {{ file = \"{}\" }}\nsp_cert_file = \"{}\"\n",
        md.display(),
        k.idp.cert.display(),
        sp.key.display(),
        sp.cert.display()
    );
    let app = spawn_app(config_from("store = \"memory\"", &extra)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/saml/signed/metadata").await.status() != 200 {
        assert!(Instant::now() < deadline, "metadata did not load");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metadata = app.get("/saml/signed/metadata").await.text().await.unwrap();
    assert!(
        metadata.contains(&sp.cert_b64()[..60]),
        "the SP certificate is in the SP metadata"
    );
    let res = app.get("/login/signed").await;
    let url = location(&res);
    assert!(
        url.contains("&SigAlg=") && url.contains("&Signature="),
        "{url}"
    );
}

/// A body over the ACS limit never reaches the handler (actix refuses it), and is still
/// audited and counted as a refusal.
#[tokio::test]
async fn an_oversized_acs_body_is_refused_and_audited() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (_, relay) = b.fixture(&client, "atk").await;
    let huge = "A".repeat(600 * 1024);
    let res = client
        .post(b.acs("atk"))
        .form(&[
            ("SAMLResponse", huge.as_str()),
            ("RelayState", relay.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    b.assert_rejected(&client, res, "too_large").await;
}

// ---- checks a mutation run found unguarded ----------------------------------------------

#[tokio::test]
async fn an_http_or_file_reference_on_the_response_signature_is_refused() {
    for uri in ["http://127.0.0.1:9/x", "file:///etc/passwd"] {
        attack(
            "reference_uri",
            |f| {
                f.sign_assertion = false;
                f.sign_response = true;
            },
            |xml| with_reference_uri(xml, uri),
        )
        .await;
    }
}

#[tokio::test]
async fn a_response_issue_instant_in_the_future_is_rejected() {
    attack(
        "future_issue_instant",
        |f| f.issue_instant = chrono::Utc::now() + chrono::Duration::hours(1),
        |xml| xml,
    )
    .await;
}

/// With IdP-initiated login allowed, samael skips InResponseTo; rolegate's own checks
/// of the Response's and the SubjectConfirmation's InResponseTo are then the only ones.
#[tokio::test]
async fn in_response_to_is_checked_on_response_and_confirmation_even_when_unsolicited_is_allowed() {
    let b = AttackBroker::start().await;
    for (what, response_irt, assertion_irt) in [
        ("Response names another request", Some("_other"), None),
        (
            "SubjectConfirmation names another request",
            None,
            Some("_other"),
        ),
    ] {
        let client = browser();
        let (mut f, relay) = b.fixture(&client, "atki").await;
        if let Some(r) = response_irt {
            f.response_in_response_to = Some(Some(r.into()));
        }
        if let Some(a) = assertion_irt {
            f.response_in_response_to = Some(f.in_response_to.clone());
            f.in_response_to = Some(a.into());
        }
        let res = b.post(&client, "atki", &f.signed(), Some(&relay)).await;
        assert!(res.status().is_client_error(), "{what}");
        b.assert_rejected(&client, res, "in_response_to").await;
    }
}

/// The replay cache keys the Response id too: a new assertion inside a Response whose id
/// was already used is a replay.
#[tokio::test]
async fn a_reused_response_id_is_a_replay_even_with_a_new_assertion() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (f, relay) = b.fixture(&client, "atk").await;
    let res = b.post(&client, "atk", &f.signed(), Some(&relay)).await;
    assert!(b.finish(&client, res).await, "the first use signs in");
    let client = browser();
    let (mut g, relay) = b.fixture(&client, "atk").await;
    g.response_id = f.response_id.clone();
    let res = b.post(&client, "atk", &g.signed(), Some(&relay)).await;
    b.assert_rejected(&client, res, "replay").await;
}

/// A canonicalization method other than C14N (XSLT here, which xmlsec would run on the
/// attacker's document) is refused before verification with its own reason, not read as
/// a bad signature.
#[tokio::test]
async fn an_odd_canonicalization_method_has_its_own_reason() {
    attack(
        "canonicalization",
        |_| {},
        |xml| {
            replace_once(
                xml,
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/>"#,
            )
        },
    )
    .await;
}

/// A changed signature value is a bad signature, and reads so (apart from decryption
/// and canonicalization refusals).
#[tokio::test]
async fn a_changed_signature_value_reads_as_an_invalid_signature() {
    attack(
        "signature_invalid",
        |_| {},
        |xml| {
            let at = xml.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
            let c = if &xml[at + 10..at + 11] == "A" {
                "B"
            } else {
                "A"
            };
            format!("{}{c}{}", &xml[..at + 10], &xml[at + 11..])
        },
    )
    .await;
}
