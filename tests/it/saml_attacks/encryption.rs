//! Encrypted assertions as IdPs send them: encrypted by the real xmlsec1 to the SP's
//! certificate (RSA-OAEP-MGF1P with SHA-1, AES-128-GCM or AES-256-GCM), inside a signed
//! Response. They decrypt and sign in; a changed or truncated ciphertext is refused with
//! the decryption reason, never as a signature failure.

use super::*;

#[tokio::test]
async fn assertions_encrypted_with_aes_gcm_decrypt_and_sign_in() {
    let b = AttackBroker::start().await;
    for cipher in [fx::AES128_GCM, fx::AES256_GCM] {
        let client = browser();
        let (mut f, relay) = b.fixture(&client, "enc").await;
        f.encrypt = Some(cipher);
        f.sign_response = true;
        let xml = f.signed();
        assert!(
            xml.contains("EncryptedAssertion") && !xml.contains("<saml:Subject>"),
            "the assertion travels encrypted"
        );
        let res = b.post(&client, "enc", &xml, Some(&relay)).await;
        assert!(b.finish(&client, res).await, "{cipher}: signs in");
    }
}

/// Changes one base64 character in the content ciphertext, then re-signs the Response
/// (as an IdP-side attacker with the IdP's key could not do otherwise): the signature
/// verifies, the GCM tag does not.
fn tamper_ciphertext(f: &Fixture, change: impl Fn(&str) -> String) -> String {
    let mut g = f.clone();
    g.sign_response = false;
    let xml = g.signed();
    // The last CipherValue is the content's (the key's sits inside KeyInfo before it).
    let at = xml.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len();
    let end = at + xml[at..].find("</xenc:CipherValue>").unwrap();
    let changed = change(&xml[at..end]);
    let xml = format!("{}{changed}{}", &xml[..at], &xml[end..]);
    // Sign the Response over the changed ciphertext, as `Fixture::signed` does.
    let issuer_end = xml.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let mut xml = xml;
    xml.insert_str(
        issuer_end,
        &crate::saml_fixtures::sig_template_for(&f.response_id, &f.sig_alg, &f.digest),
    );
    fx::xmlsec_sign(&xml, &keys().idp)
}

#[tokio::test]
async fn a_changed_or_truncated_ciphertext_is_refused_as_a_decryption_failure() {
    let b = AttackBroker::start().await;
    let flip = |v: &str| {
        let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        let mid = clean.len() / 2;
        let c = if &clean[mid..mid + 1] == "A" {
            "B"
        } else {
            "A"
        };
        format!("{}{c}{}", &clean[..mid], &clean[mid + 1..])
    };
    let truncate = |v: &str| {
        let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        clean[..clean.len() / 2 / 4 * 4].to_owned()
    };
    for (what, change) in [
        ("changed", &flip as &dyn Fn(&str) -> String),
        ("truncated", &truncate),
    ] {
        let client = browser();
        let (mut f, relay) = b.fixture(&client, "enc").await;
        f.encrypt = Some(fx::AES256_GCM);
        f.sign_response = true;
        let xml = tamper_ciphertext(&f, change);
        let res = b.post(&client, "enc", &xml, Some(&relay)).await;
        assert_eq!(res.status(), 403, "{what}");
        b.assert_rejected(&client, res, "decryption").await;
    }
}
