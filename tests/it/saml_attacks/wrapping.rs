//! Signature wrapping (XSW1–XSW8), stripped and untrusted signatures, weak algorithms.

use super::*;

// ---- signature wrapping (SAML Raider XSW1–XSW8) -----------------------------------

pub(super) fn evil_copy(assertion: &str, id: &str) -> String {
    let unsigned = match assertion.find("<ds:Signature") {
        Some(s) => {
            let e = s + assertion[s..].find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
            format!("{}{}", &assertion[..s], &assertion[e..])
        }
        None => assertion.to_owned(),
    };
    let old_id = unsigned
        .split(" ID=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    unsigned
        .replacen(&old_id, id, 1)
        .replace("alice@example.com", "admin@example.com")
}

#[tokio::test]
async fn xsw1_response_clone_inside_the_signature_is_rejected() {
    // The clone keeps its assertion's ID: refused as a duplicate ID (S10) before anything else.
    attack(
        "duplicate_id",
        |f| {
            f.sign_assertion = false;
            f.sign_response = true;
        },
        |xml| {
            let sig_end = xml.find("</ds:Signature>").unwrap();
            let clone = evil_copy(&xml, "_evil_response_clone");
            let mut out = xml.clone();
            out.insert_str(sig_end, &clone);
            out.replacen("alice@example.com", "admin@example.com", 1)
        },
    )
    .await;
}

#[tokio::test]
async fn xsw2_response_clone_before_the_signature_is_rejected() {
    attack(
        "duplicate_id",
        |f| {
            f.sign_assertion = false;
            f.sign_response = true;
        },
        |xml| {
            let sig_start = xml.find("<ds:Signature").unwrap();
            let clone = evil_copy(&xml, "_evil_response_clone");
            let mut out = xml.clone();
            out.insert_str(sig_start, &clone);
            out
        },
    )
    .await;
}

#[tokio::test]
async fn xsw3_evil_assertion_before_the_signed_one_is_rejected() {
    attack(
        "assertion_count",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let evil = evil_copy(&a, "_evil_assertion_ID");
            xml.replacen(&a, &format!("{evil}{a}"), 1)
        },
    )
    .await;
}

#[tokio::test]
async fn xsw4_signed_assertion_moved_inside_an_evil_one_is_rejected() {
    attack(
        "assertion_count",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let evil = evil_copy(&a, "_evil_assertion_ID");
            let wrapped = evil.replacen("</saml:Assertion>", &format!("{a}</saml:Assertion>"), 1);
            xml.replacen(&a, &wrapped, 1)
        },
    )
    .await;
}

#[tokio::test]
async fn xsw5_mutated_original_with_an_unsigned_copy_is_rejected() {
    // The signature now sits in an element whose ID it does not reference.
    attack(
        "reference_uri",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let copy = evil_copy(&a, "_copy").replace("admin@example.com", "alice@example.com");
            let original_id = a.split(" ID=\"").nth(1).unwrap().split('"').next().unwrap();
            let copy = copy.replacen("_copy", original_id, 1);
            let mutated = a
                .replacen(original_id, "_evil_assertion_ID", 1)
                .replace("alice@example.com", "admin@example.com");
            xml.replacen(&a, &format!("{mutated}{copy}"), 1)
        },
    )
    .await;
}

#[tokio::test]
async fn xsw6_unsigned_copy_inside_the_signature_is_rejected() {
    attack(
        "assertion_count",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let copy = evil_copy(&a, "_copy_in_signature");
            let with_copy = a.replacen("</ds:Signature>", &format!("{copy}</ds:Signature>"), 1);
            xml.replacen(
                &a,
                &with_copy.replacen("alice@example.com", "admin@example.com", 1),
                1,
            )
        },
    )
    .await;
}

#[tokio::test]
async fn xsw7_clone_with_the_same_id_in_extensions_is_rejected() {
    attack(
        "duplicate_id",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let id = a
                .split(" ID=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            let clone = evil_copy(&a, &id);
            replace_once(
                xml,
                "<samlp:Status>",
                &format!("<samlp:Extensions>{clone}</samlp:Extensions><samlp:Status>"),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn xsw8_copy_wrapped_in_ds_object_is_rejected() {
    attack(
        "forbidden_element",
        |_| {},
        |xml| {
            let a = fx::element(&xml, "<saml:Assertion", "</saml:Assertion>").to_owned();
            let copy = evil_copy(&a, "_evil_in_object");
            replace_once(
                xml,
                "</ds:Signature>",
                &format!("<ds:Object>{copy}</ds:Object></ds:Signature>"),
            )
        },
    )
    .await;
}

// ---- signatures and keys -------------------------------------------------------------

#[tokio::test]
async fn a_stripped_signature_is_rejected() {
    attack(
        "unsigned",
        |_| {},
        |xml| {
            let sig = fx::element(&xml, "<ds:Signature", "</ds:Signature>").to_owned();
            xml.replacen(&sig, "", 1)
        },
    )
    .await;
}

#[tokio::test]
async fn a_signature_by_an_untrusted_key_with_its_cert_in_keyinfo_is_rejected() {
    attack(
        "signature_invalid",
        |f| f.attacker_key = true,
        |xml| {
            assert!(
                xml.contains(&keys().attacker.cert_b64()[..40]),
                "the attacker's cert is embedded in KeyInfo"
            );
            xml
        },
    )
    .await;
}

#[tokio::test]
async fn an_attribute_changed_after_signing_is_rejected() {
    attack(
        "signature_invalid",
        |_| {},
        |xml| {
            replace_once(
                xml,
                ">devs</saml:AttributeValue>",
                ">admins</saml:AttributeValue>",
            )
        },
    )
    .await;
}

#[tokio::test]
async fn a_sha1_signature_is_rejected() {
    attack(
        "signature_algorithm",
        |f| {
            f.sig_alg = fx::RSA_SHA1.into();
            f.digest = fx::SHA1.into();
        },
        |xml| xml,
    )
    .await;
}

#[tokio::test]
async fn a_sha1_digest_is_rejected() {
    attack(
        "digest_algorithm",
        |f| f.digest = fx::SHA1.into(),
        |xml| xml,
    )
    .await;
}

/// An IdP that publishes an RSA and an EC P-256 signing key (both pinned): responses
/// signed with either key sign in, whichever order the metadata lists them in; a response
/// signed by neither is still refused.
#[tokio::test]
async fn an_idp_with_an_rsa_and_an_ec_key_is_verified_with_each() {
    let b = AttackBroker::start().await;
    for idp in ["mix-rsa-first", "mix-ec-first"] {
        for ec in [false, true] {
            let client = browser();
            let (mut f, relay) = b.fixture(&client, idp).await;
            f.ec_key = ec;
            if ec {
                f.sig_alg = fx::ECDSA_SHA256.into();
            }
            let res = b.post(&client, idp, &f.signed(), Some(&relay)).await;
            assert!(
                b.finish(&client, res).await,
                "{idp}: a response signed with the {} key signs in",
                if ec { "EC" } else { "RSA" }
            );
        }
        forged_is_refused(&b, idp).await;
    }
}

/// A response signed with a key the IdP never published is refused.
async fn forged_is_refused(b: &AttackBroker, idp: &str) {
    let client = browser();
    let (mut f, relay) = b.fixture(&client, idp).await;
    f.attacker_key = true;
    let res = b.post(&client, idp, &f.signed(), Some(&relay)).await;
    b.assert_rejected(&client, res, "signature_invalid").await;
}

#[tokio::test]
async fn metadata_without_a_signing_key_verifies_with_the_pinned_certificate() {
    let b = AttackBroker::start().await;
    let client = browser();
    let (f, relay) = b.fixture(&client, "nokey").await;
    let res = b.post(&client, "nokey", &f.signed(), Some(&relay)).await;
    assert!(
        b.finish(&client, res).await,
        "the pinned key verifies a response although the metadata names no key"
    );
    forged_is_refused(&b, "nokey").await;
}
