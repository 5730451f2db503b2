//! DPoP (RFC 9449) item by item: each check of §4.3 refuses a proof that breaks it and
//! only it (the same proof with that one thing right is accepted), at the token endpoint
//! and at the API; the challenges of §7.1; and the one binding rule wherever a broker
//! token is presented (the SSO portal refuses a DPoP-bound token, which cannot carry a
//! proof there). Proofs are built by hand (header and claims as raw JSON, signed with
//! `jsonwebtoken::crypto::sign`), so a test can put into them what a typed library
//! would refuse to write.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::exchange::{ACCESS, broker, error_of, exchange, form, now};
use crate::helpers::OidcSetup;
use crate::presented_tokens::app_id_token;

fn b64(v: &Json) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// An ES256 or RS* key, its public JWK and its signer.
struct Key {
    pem: String,
    jwk: Json,
    alg: Algorithm,
}

impl Key {
    fn es256() -> Self {
        let pem = rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Es256).unwrap();
        Self::from(pem, Algorithm::ES256)
    }

    fn rsa(alg: Algorithm) -> Self {
        let pem = rolegate::keys::generate_pem(rolegate::keys::KeyAlgorithm::Rs256).unwrap();
        Self::from(pem, alg)
    }

    fn from(pem: String, alg: Algorithm) -> Self {
        let mut jwk = rolegate::keys::SigningKey::from_pem(&pem).unwrap().jwk;
        for drop in ["kid", "alg", "use"] {
            jwk.as_object_mut().unwrap().remove(drop);
        }
        Self { pem, jwk, alg }
    }

    fn encoding(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(self.pem.as_bytes()).unwrap(),
        }
    }

    fn alg_name(&self) -> String {
        format!("{:?}", self.alg)
    }
}

/// A proof whose parts a test may change before signing.
struct Proof {
    header: Json,
    claims: Json,
}

impl Proof {
    fn new(key: &Key, method: &str, url: &str, access_token: Option<&str>) -> Self {
        let mut claims = json!({
            "jti": format!("{:x}", rand::random::<u128>()),
            "htm": method,
            "htu": url,
            "iat": now(),
        });
        if let Some(t) = access_token {
            claims["ath"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes()).as_ref(),
                )
                .into();
        }
        Self {
            header: json!({ "typ": "dpop+jwt", "alg": key.alg_name(), "jwk": key.jwk }),
            claims,
        }
    }

    fn signed_by(&self, key: &Key) -> String {
        let input = format!("{}.{}", b64(&self.header), b64(&self.claims));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding(), key.alg).unwrap();
        format!("{input}.{sig}")
    }
}

async fn exchange_with(s: &OidcSetup, proofs: &[String]) -> (u16, String, String) {
    let subject = app_id_token(&s.op, "alice", "alice-pw").await;
    let f = form("dpop-app", &subject, &[("requested_token_type", ACCESS)]);
    let mut req = Client::new()
        .post(format!("{}/oauth/token", s.app.address))
        .form(&f);
    for p in proofs {
        req = req.header("DPoP", p);
    }
    let res = req.send().await.unwrap();
    if res.status() == 200 {
        return (200, String::new(), String::new());
    }
    error_of(res).await
}

/// Every §4.3 check at the token endpoint: the proof that breaks it is refused with its
/// reason; the same proof made right is accepted (so each refusal is that check's).
#[tokio::test]
async fn each_check_of_rfc_9449_section_4_3_refuses_only_what_it_should() {
    let s = broker().await;
    let url = format!("{}/oauth/token", s.app.address);
    let key = Key::es256();
    let good = || Proof::new(&key, "POST", &url, None);

    assert_eq!(
        exchange_with(&s, &[good().signed_by(&key)]).await.0,
        200,
        "a good proof"
    );

    type Case = (&'static str, Vec<String>, &'static str);
    let mut cases: Vec<Case> = Vec::new();
    // 1. One DPoP header.
    cases.push((
        "two DPoP headers",
        vec![good().signed_by(&key), good().signed_by(&key)],
        "exactly one DPoP header",
    ));
    // 2. A JWT.
    cases.push(("not a JWT", vec!["not-a-jwt".into()], "not a JWT"));
    // 4. typ.
    for typ in [json!("JWT"), Json::Null] {
        let mut p = good();
        if typ.is_null() {
            p.header.as_object_mut().unwrap().remove("typ");
        } else {
            p.header["typ"] = typ;
        }
        cases.push((
            "typ not dpop+jwt",
            vec![p.signed_by(&key)],
            "typ must be dpop+jwt",
        ));
    }
    // 5. An asymmetric algorithm the broker supports (RS512 is asymmetric, not in the list).
    let rs512 = Key::rsa(Algorithm::RS512);
    cases.push((
        "an unsupported algorithm",
        vec![Proof::new(&rs512, "POST", &url, None).signed_by(&rs512)],
        "must use one of",
    ));
    // An HS256 proof keyed with an oct JWK: a symmetric key is private material.
    {
        let secret = b"a-shared-secret-of-enough-length!";
        let mut p = good();
        p.header["alg"] = json!("HS256");
        p.header["jwk"] = json!({
            "kty": "oct",
            "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        });
        let input = format!("{}.{}", b64(&p.header), b64(&p.claims));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
        .unwrap();
        cases.push((
            "HS256 with an oct key",
            vec![format!("{input}.{sig}")],
            "must be a public key",
        ));
    }
    // 6. A jwk without private material (the raw header is checked).
    {
        let mut p = good();
        p.header["jwk"]["d"] = json!("MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI");
        cases.push((
            "a private key in the jwk",
            vec![p.signed_by(&key)],
            "must be a public key",
        ));
    }
    {
        let mut p = good();
        p.header.as_object_mut().unwrap().remove("jwk");
        cases.push(("no jwk", vec![p.signed_by(&key)], "no jwk header"));
    }
    // 7. The signature, with the header's key.
    let other = Key::es256();
    cases.push((
        "signed by another key than its jwk",
        vec![good().signed_by(&other)],
        "signature does not verify",
    ));
    // 8. htm, 9. htu.
    {
        let mut p = good();
        p.claims["htm"] = json!("GET");
        cases.push(("another method", vec![p.signed_by(&key)], "another method"));
        let mut p = good();
        p.claims["htu"] = json!(format!("{}/api/v1/me", s.app.address));
        cases.push(("another URL", vec![p.signed_by(&key)], "another URL"));
    }
    // 11. iat within the window, both ways; present.
    for (what, iat) in [("too old", now() - 120), ("in the future", now() + 120)] {
        let mut p = good();
        p.claims["iat"] = json!(iat);
        cases.push((what, vec![p.signed_by(&key)], "not fresh"));
    }
    {
        let mut p = good();
        p.claims.as_object_mut().unwrap().remove("iat");
        cases.push(("no iat", vec![p.signed_by(&key)], "no iat"));
        let mut p = good();
        p.claims.as_object_mut().unwrap().remove("jti");
        cases.push(("no jti", vec![p.signed_by(&key)], "no jti"));
    }
    for (what, proofs, reason) in cases {
        let (status, err, desc) = exchange_with(&s, &proofs).await;
        assert_eq!(
            (status, err.as_str()),
            (400, "invalid_dpop_proof"),
            "{what}: {desc}"
        );
        assert!(desc.contains(reason), "{what}: {desc}");
    }
    // A query or fragment on htu is not part of the comparison.
    let mut p = good();
    p.claims["htu"] = json!(format!("{url}?x=1"));
    assert_eq!(
        exchange_with(&s, &[p.signed_by(&key)]).await.0,
        200,
        "htu with a query"
    );
    // The jti is single use (replay), on the same proof.
    let once = good().signed_by(&key);
    assert_eq!(exchange_with(&s, std::slice::from_ref(&once)).await.0, 200);
    let (_, _, desc) = exchange_with(&s, &[once]).await;
    assert!(desc.contains("already used"), "{desc}");
}

/// A DPoP-bound broker token at the API: its proof must name it (`ath`) and be signed by
/// its key; every refusal carries a `DPoP` challenge with `algs`; no token at all gets a
/// challenge without `error` (RFC 6750 §3.1); the SSO portal refuses the bound token.
#[tokio::test]
async fn a_bound_token_needs_its_proof_and_refusals_carry_the_right_challenge() {
    let s = broker().await;
    let key = Key::es256();
    let token_url = format!("{}/oauth/token", s.app.address);
    let subject = app_id_token(&s.op, "alice", "alice-pw").await;
    let res = exchange(
        &s,
        &form("dpop-app", &subject, &[("requested_token_type", ACCESS)]),
        Some(&Proof::new(&key, "POST", &token_url, None).signed_by(&key)),
    )
    .await;
    assert_eq!(res.status(), 200);
    let at = res.json::<Json>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = format!("{}/api/v1/me", s.app.address);
    let call = |auth: Option<String>, proof: Option<String>| {
        let mut r = Client::new().get(&api);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send()
    };
    let challenges = |res: &reqwest::Response| -> Vec<String> {
        res.headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let good = Proof::new(&key, "GET", &api, Some(&at));
    assert_eq!(
        call(Some(format!("DPoP {at}")), Some(good.signed_by(&key)))
            .await
            .unwrap()
            .status(),
        200
    );

    // No token: a challenge for each scheme, without an error attribute.
    let res = call(None, None).await.unwrap();
    assert_eq!(res.status(), 401);
    let c = challenges(&res);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().all(|h| !h.contains("error=")), "{c:?}");
    assert!(c.iter().any(|h| h.starts_with("Bearer realm=")), "{c:?}");
    assert!(
        c.iter()
            .any(|h| h.starts_with("DPoP realm=") && h.contains("algs=\"ES256")),
        "{c:?}"
    );
    // An unknown bearer token: a Bearer challenge with invalid_token.
    let res = call(Some("Bearer rga_nothing".into()), None).await.unwrap();
    assert_eq!(res.status(), 401);
    let c = challenges(&res);
    assert!(
        c.len() == 1 && c[0].starts_with("Bearer ") && c[0].contains("error=\"invalid_token\""),
        "{c:?}"
    );

    // 12. ath: the proof names this token.
    let mut p = Proof::new(&key, "GET", &api, Some("rga_another"));
    p.claims["iat"] = json!(now());
    let mut no_ath = Proof::new(&key, "GET", &api, None);
    no_ath.claims["iat"] = json!(now());
    let other = Key::es256();
    for (what, auth, proof, error) in [
        (
            "a proof for another token",
            format!("DPoP {at}"),
            Some(p.signed_by(&key)),
            "invalid_dpop_proof",
        ),
        (
            "a proof without ath",
            format!("DPoP {at}"),
            Some(no_ath.signed_by(&key)),
            "invalid_dpop_proof",
        ),
        (
            "another key's proof",
            format!("DPoP {at}"),
            Some(Proof::new(&other, "GET", &api, Some(&at)).signed_by(&other)),
            "invalid_dpop_proof",
        ),
        ("no proof", format!("DPoP {at}"), None, "invalid_dpop_proof"),
        (
            "sent as a Bearer token",
            format!("Bearer {at}"),
            Some(Proof::new(&key, "GET", &api, Some(&at)).signed_by(&key)),
            "invalid_token",
        ),
    ] {
        let res = call(Some(auth), proof).await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let c = challenges(&res);
        assert!(
            c.len() == 1
                && c[0].starts_with("DPoP ")
                && c[0].contains(&format!("error=\"{error}\""))
                && c[0].contains("algs=\""),
            "{what}: {c:?}"
        );
    }

    // The SSO portal cannot carry a proof: a bound token is refused there.
    let res = Client::new()
        .get(format!("{}/sso-portal/assignment/accounts", s.app.address))
        .header("x-amz-sso_bearer_token", &at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["x-amzn-ErrorType"], "UnauthorizedException");
}
