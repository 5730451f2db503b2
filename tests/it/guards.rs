//! One test per security check that a mutation of it (removing or inverting the check)
//! would otherwise survive: the review's mutation run found these unguarded. Each test
//! fails when its check is broken.

use std::process::Command;

use serde_json::json;

use crate::helpers::{SetupOptions, shared_redis, spawn_with, unique_prefix};
use crate::issuance::action;
use crate::oidc::{browser, is_signed_in, login_until_callback};

/// Writes a browser session straight into Redis (as a sign-in would), for a test whose
/// broker cannot complete a sign-in itself. Returns the session id and its CSRF token.
fn plant_session(prefix: &str, subject: &str, groups: &[&str], created: u64) -> (String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let tag = rolegate::store::PersonTag::of("corp", subject);
    let secret: String = format!("{:0>43}", format!("{:x}", rand::random::<u128>()));
    let id = format!("{tag}.{secret}");
    let csrf = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
        format!("rolegate csrf\0{id}").as_bytes(),
    ));
    let expires = created + 8 * 3600;
    let record = json!({
        "identity": {
            "idp": "corp",
            "subject": subject,
            "username": format!("{subject}@example.com"),
            "email": format!("{subject}@example.com"),
            "groups": groups,
            "claims": { "sub": subject, "email": format!("{subject}@example.com"), "groups": groups },
        },
        "created": created,
        "expires": expires,
        "idle": 1800,
        "holding": {
            "kind": "session", "idp": "corp", "subject": subject, "username": subject,
            "client_path": "web", "created": created, "last_used": created,
            "expires": expires, "ip": "127.0.0.1", "user_agent": "planted",
        },
    });
    let ok = Command::new("redis-cli")
        .args(["-u", shared_redis()])
        .args([
            "SET",
            &session_key(prefix, &id),
            &record.to_string(),
            "EX",
            "600",
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    (id, csrf)
}

/// Where a session id's record lives: in its person's slot, under the id's hash.
fn session_key(prefix: &str, id: &str) -> String {
    let (tag, _) = id.split_once('.').unwrap();
    format!(
        "{prefix}{{{tag}}}:session:{}",
        rolegate::store::Hashed::of(id)
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn redis_session(prefix: &str) -> String {
    format!(
        "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
        shared_redis()
    )
}

/// The issuer's invariant: credentials whose audit record cannot be written are dropped
/// (the person gets a 503 and no key), and a sign-in that cannot be audited is refused.
#[tokio::test]
async fn nothing_is_handed_out_when_the_audit_log_cannot_be_written() {
    let prefix = unique_prefix("audit-full");
    let s = spawn_with(SetupOptions {
        session: redis_session(&prefix),
        audit_file: Some("/dev/full".into()),
        ..SetupOptions::default()
    })
    .await;
    // A sign-in: verified at the IdP, refused for want of an audit record.
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    let res = client.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(!is_signed_in(&s, &client).await);

    // An issuance for a session that exists: STS answers, the record cannot be written.
    let (id, csrf) = plant_session(&prefix, "alice", &["aws-admins"], now());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(format!("{}/roles/prod-admin/credentials", s.app.address))
        .header("cookie", format!("rolegate_session={id}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let page = res.text().await.unwrap();
    assert!(page.contains("cannot write its audit log"), "{page}");
    assert!(
        !page.contains("ASIA") && !page.contains("access-key-id"),
        "{page}"
    );

    // A CLI login approved by that session: the code is redeemed, the login's record
    // cannot be written, so no tokens leave the broker.
    let (verifier, challenge) = crate::cli_login::pkce();
    let approval = client
        .get(crate::cli_login::authorize_url(
            &s,
            &challenge,
            crate::cli_login::REDIRECT,
            "rolegate-cli",
        ))
        .header("cookie", format!("rolegate_session={id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = client
        .post(format!("{}/oauth/authorize", s.app.address))
        .header("cookie", format!("rolegate_session={id}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("request", crate::cli_login::field(&approval, "request")),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let code = to
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let res = crate::cli_login::exchange(&s, &code, &verifier).await;
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(!body.contains("rga_") && !body.contains("rgr_"), "{body}");
}

fn ttl(key: &str) -> i64 {
    let out = Command::new("redis-cli")
        .args(["-u", shared_redis(), "TTL", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn home_with(address: &str, cookie: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{address}/"))
        .header("cookie", format!("rolegate_session={cookie}"))
        .send()
        .await
        .unwrap()
}

/// Session lifetimes (defaults: idle 30m, absolute 8h): a new session lives for the idle
/// timeout; use renews it to the idle timeout but never past the absolute end; past the
/// absolute end it is gone; an id that is not token-shaped is never looked up.
#[tokio::test]
async fn session_lifetimes_and_the_id_format_hold() {
    let prefix = unique_prefix("lifetimes");
    let s = spawn_with(SetupOptions {
        session: redis_session(&prefix),
        ..SetupOptions::default()
    })
    .await;

    // A new session: TTL = the idle timeout.
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    let res = client.get(&cb).send().await.unwrap();
    let id = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|c| {
            c.to_str()
                .ok()?
                .strip_prefix("rolegate_session=")
                .map(|v| v.split(';').next().unwrap().to_owned())
        })
        .expect("a session cookie");
    let t = ttl(&session_key(&prefix, &id));
    assert!((1790..=1800).contains(&t), "new session TTL {t}");

    // Use renews to the idle timeout (the planted one had 600 s left).
    let (id, _) = plant_session(&prefix, "alice", &["aws-admins"], now() - 60);
    assert_eq!(home_with(&s.app.address, &id).await.status(), 200);
    let t = ttl(&session_key(&prefix, &id));
    assert!((1790..=1800).contains(&t), "renewed TTL {t}");

    // Near the absolute end (8h), renewal stops at that end.
    let (id, _) = plant_session(&prefix, "alice", &["aws-admins"], now() - 8 * 3600 + 100);
    assert_eq!(home_with(&s.app.address, &id).await.status(), 200);
    let t = ttl(&session_key(&prefix, &id));
    assert!(
        (1..=100).contains(&t),
        "TTL capped by the absolute timeout: {t}"
    );

    // Past the absolute end: not signed in, and the record is deleted.
    let (id, _) = plant_session(&prefix, "alice", &["aws-admins"], now() - 8 * 3600 - 5);
    assert_eq!(home_with(&s.app.address, &id).await.status(), 303);
    assert_eq!(ttl(&session_key(&prefix, &id)), -2, "deleted");

    // A record under an id that is not token-shaped is never found.
    let odd = "not-a-token";
    let record = json!({
        "idp": "corp", "subject": "alice", "username": "a", "email": null,
        "groups": ["aws-admins"], "claims": {}, "csrf": "x", "created": now(),
    });
    Command::new("redis-cli")
        .args(["-u", shared_redis()])
        .args([
            "SET",
            &format!("{prefix}session:{odd}"),
            &record.to_string(),
            "EX",
            "600",
        ])
        .output()
        .unwrap();
    assert_eq!(home_with(&s.app.address, odd).await.status(), 303);
}

// ---- configuration --------------------------------------------------------------------

fn config_errors(text: &str) -> String {
    match rolegate::config::from_str(text, std::path::Path::new("g.toml"), Vec::new()) {
        Ok(_) => panic!("config unexpectedly valid"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = r#"
[[idp]]
id = "corp"
kind = "oidc"
issuer = "https://idp.example.com"
client_id = "broker"

[[account]]
id = "prod"
number = "111122223333"
"#;

/// A role's console destination must be on the console's own site: anything else would
/// make the broker an open redirect after a federation sign-in.
#[test]
fn a_console_destination_off_the_console_site_is_refused() {
    for dest in [
        "https://evil.example.com/console",
        "https://console.aws.amazon.com.evil.example.com/",
        "//evil.example.com/x",
        "http://console.aws.amazon.com/",
        "https://user@console.aws.amazon.com/",
    ] {
        let text = format!(
            "{BASE}\n[[role]]\nid = \"r\"\narn = \"arn:aws:iam::111122223333:role/R\"\naccount = \"prod\"\nconsole_destination = \"{dest}\"\n"
        );
        let errs = config_errors(&text);
        assert!(
            errs.contains("role[0].console_destination"),
            "{dest}: {errs}"
        );
    }
    // On the console's site (a subdomain, or a path) it is fine.
    for dest in [
        "/ec2/home",
        "https://us-east-1.console.aws.amazon.com/s3/home",
    ] {
        let text = format!(
            "{BASE}\n[[role]]\nid = \"r\"\narn = \"arn:aws:iam::111122223333:role/R\"\naccount = \"prod\"\nconsole_destination = \"{dest}\"\n"
        );
        rolegate::config::from_str(&text, std::path::Path::new("g.toml"), Vec::new())
            .unwrap_or_else(|e| panic!("{dest}: {e}"));
    }
}

/// Two rules granting one role with different session policies or source identities
/// fail the grant (rather than one silently winning).
#[test]
fn conflicting_session_policies_or_source_identities_fail_the_grant() {
    use rolegate::mapping::RefusalReason;
    let dir = tempfile::tempdir().unwrap();
    for (name, policy) in [("a.json", "s3:GetObject"), ("b.json", "s3:PutObject")] {
        std::fs::write(
            dir.path().join(name),
            format!(r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{policy}","Resource":"*"}}]}}"#),
        )
        .unwrap();
    }
    let role =
        "[[role]]\nid = \"r\"\narn = \"arn:aws:iam::111122223333:role/R\"\naccount = \"prod\"\n";
    let cases = [
        (
            "policies",
            "[rule.session]\nsession_policy_file = \"a.json\"",
            "[rule.session]\nsession_policy_file = \"b.json\"",
            "different session policies",
        ),
        (
            "source identities",
            "[rule.session]\nsource_identity = \"{email}\"",
            "[rule.session]\nsource_identity = \"{username}-x\"",
            "different source identities",
        ),
    ];
    for (what, a, b, reason) in cases {
        let text = format!(
            "{BASE}\n{role}\n[[rule]]\nid = \"one\"\ngrant = [\"r\"]\n{a}\n\n[[rule]]\nid = \"two\"\ngrant = [\"r\"]\n{b}\n"
        );
        let path = dir.path().join("c.toml");
        let config = rolegate::config::from_str(&text, &path, Vec::new())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let id = rolegate::idp::identity_from_claims(
            config.idp("corp").unwrap(),
            json!({ "sub": "u1", "email": "u@example.com" }),
        )
        .unwrap();
        let ev = config.rules.evaluate(&id);
        assert!(ev.grants.is_empty(), "{what}: granted anyway");
        match &ev.refused[0].reason {
            RefusalReason::Invalid(why) => assert!(why.contains(reason), "{what}: {why}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

// ---- SAML pre-filter and replay cache -------------------------------------------------

const RESPONSE_HEAD: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r">"#;
const SIG: &str = r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_a"/></ds:SignedInfo></ds:Signature>"##;

fn prefilter(xml: &str) -> Result<(), rolegate::idp::saml::prefilter::Rejection> {
    rolegate::idp::saml::prefilter::check(
        xml,
        &["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"],
        false,
    )
    .map(|_| ())
}

#[test]
fn the_prefilter_refuses_an_unclosed_root_a_misplaced_signature_and_too_many_attributes() {
    use rolegate::idp::saml::prefilter::Rejection;
    let good = format!(
        "{RESPONSE_HEAD}<saml:Assertion ID=\"_a\">{SIG}<saml:Subject/></saml:Assertion></samlp:Response>"
    );
    assert_eq!(prefilter(&good), Ok(()), "the baseline passes");

    let unclosed = good.trim_end_matches("</samlp:Response>");
    assert_eq!(prefilter(unclosed), Err(Rejection::NotAResponse));

    // A Signature anywhere but directly under the Response or an Assertion.
    let misplaced = format!(
        "{RESPONSE_HEAD}<saml:Assertion ID=\"_a\"><saml:Subject>{SIG}</saml:Subject></saml:Assertion></samlp:Response>"
    );
    assert_eq!(prefilter(&misplaced), Err(Rejection::MisplacedSignature));

    let many: String = (0..65).map(|i| format!(" a{i}=\"x\"")).collect();
    let crowded = format!(
        "{RESPONSE_HEAD}<saml:Assertion ID=\"_a\">{SIG}<saml:Subject{many}/></saml:Assertion></samlp:Response>"
    );
    assert_eq!(prefilter(&crowded), Err(Rejection::TooManyAttributes));
    let fine: String = (0..63).map(|i| format!(" a{i}=\"x\"")).collect();
    let roomy = format!(
        "{RESPONSE_HEAD}<saml:Assertion ID=\"_a\">{SIG}<saml:Subject{fine}/></saml:Assertion></samlp:Response>"
    );
    assert_eq!(prefilter(&roomy), Ok(()));
}

/// A replay-cache entry must outlive the assertion's acceptance: its NotOnOrAfter plus
/// the tolerated clock skew (plus a margin), however large the configured skew.
#[test]
fn the_replay_cache_outlives_the_assertion_with_any_clock_skew() {
    use std::time::Duration;
    let now = chrono::Utc::now();
    let noa = now + chrono::Duration::minutes(5);
    let xml = format!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a" Version="2.0" IssueInstant="{ii}"><saml:Issuer>i</saml:Issuer><saml:Subject><saml:NameID>n</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{noa}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotOnOrAfter="{noa}"/></saml:Assertion>"#,
        ii = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        noa = noa.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let a: samael::schema::Assertion = xml.parse().unwrap();
    for skew in [
        Duration::from_secs(0),
        Duration::from_secs(180),
        Duration::from_secs(600),
    ] {
        let ttl = rolegate::idp::saml::replay_ttl(&a, now, skew);
        let accepted_until = Duration::from_secs(5 * 60) + skew;
        assert!(
            ttl > accepted_until,
            "skew {skew:?}: cache {ttl:?} ends before the assertion ({accepted_until:?})"
        );
        assert!(ttl <= accepted_until + Duration::from_secs(61), "{ttl:?}");
    }
}

// ---- OIDC -------------------------------------------------------------------------------

use crate::oidc::tamper;

fn last_login(s: &crate::helpers::OidcSetup) -> serde_json::Value {
    s.audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "login")
        .unwrap()
}

#[tokio::test]
async fn azp_and_audiences_and_the_exp_leeway_are_checked_exactly() {
    let s = crate::helpers::spawn_with_oidc().await;
    let n = now() as i64;
    let cases = [
        // (what, tamper, signs in?)
        (
            "azp is this client",
            json!({ "claims": { "azp": "broker" } }),
            true,
        ),
        // Any audience besides this client is refused, with or without azp.
        (
            "several audiences, azp this client",
            json!({ "claims": { "aud": ["broker", "other"], "azp": "broker" } }),
            false,
        ),
        (
            "several audiences, no azp",
            json!({ "claims": { "aud": ["broker", "other"], "azp": null } }),
            false,
        ),
        (
            "expired 30 s ago (within the 60 s leeway)",
            json!({ "claims": { "exp": n - 30, "iat": n - 300 } }),
            true,
        ),
        (
            "expired 90 s ago (beyond the leeway)",
            json!({ "claims": { "exp": n - 90, "iat": n - 300 } }),
            false,
        ),
    ];
    for (what, t, accepted) in cases {
        let client = browser();
        let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
        tamper(&s, t).await;
        let res = client.get(&cb).send().await.unwrap();
        if accepted {
            assert_eq!(res.status(), 303, "{what}: {}", res.text().await.unwrap());
            assert!(is_signed_in(&s, &client).await, "{what}");
        } else {
            assert_eq!(res.status(), 403, "{what}");
            assert!(!is_signed_in(&s, &client).await, "{what}");
        }
    }
    let r = last_login(&s);
    assert!(r["reason"].as_str().unwrap().contains("expired"), "{r}");
}

#[tokio::test]
async fn an_overlong_state_is_not_looked_up() {
    let s = crate::helpers::spawn_with_oidc().await;
    let res = reqwest::get(format!(
        "{}/oidc/corp/callback?code=x&state={}",
        s.app.address,
        "a".repeat(129)
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(last_login(&s)["reason"], "missing state");
}

/// The IdP comes from the stored state, and the callback must arrive at that IdP's own
/// redirect path: a state of IdP "corp" presented at IdP "corp2"'s callback is refused.
#[tokio::test]
async fn a_callback_at_another_idps_path_is_refused() {
    let s = spawn_with(SetupOptions {
        extra_idps: "[[idp]]\nid = \"corp2\"\nkind = \"oidc\"\nissuer = \"__ISSUER__\"\nclient_id = \"broker\"\nclient_secret = { file = \"../testbed/op/client-secret\" }\n".into(),
        ..SetupOptions::default()
    })
    .await;
    let client = browser();
    let res = client
        .get(format!("{}/login/corp", s.app.address))
        .send()
        .await
        .unwrap();
    let auth = crate::oidc::location(&res);
    let res = client.get(&auth).send().await.unwrap();
    let interaction = format!("{}{}", s.op.issuer(), crate::oidc::location(&res));
    let res = client
        .post(format!("{interaction}/login"))
        .form(&[("username", "alice"), ("password", "alice-pw")])
        .send()
        .await
        .unwrap();
    let res = client
        .get(crate::oidc::location(&res))
        .send()
        .await
        .unwrap();
    let cb = crate::oidc::location(&res);
    assert!(cb.contains("/oidc/corp/callback"), "{cb}");
    let elsewhere = cb.replace("/oidc/corp/callback", "/oidc/corp2/callback");
    let res = client.get(&elsewhere).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(last_login(&s)["reason"], "callback path is not this IdP's");
    assert!(!is_signed_in(&s, &client).await);
}

// ---- SAML metadata and the federation client ---------------------------------------------

/// Metadata whose entityID is not the one configured for the IdP is refused: that IdP
/// stays unavailable.
#[tokio::test]
async fn metadata_of_another_entity_than_configured_is_refused() {
    use crate::saml_fixtures::{self as fx, keys};
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md.xml");
    std::fs::write(&md, fx::idp_metadata(&k.idp)).unwrap();
    let idp = |id: &str, entity: &str| {
        format!(
            "[[idp]]\nid = \"{id}\"\nkind = \"saml\"\nentity_id = \"{entity}\"\nmetadata_file = \"{}\"\nsigning_cert_files = [\"{}\"]\n\n",
            md.display(),
            k.idp.cert.display()
        )
    };
    let extra = format!(
        "{}{}",
        idp("right", fx::IDP_ENTITY),
        idp("wrong", "https://another-idp.example.com/metadata")
    );
    let app =
        crate::helpers::spawn_app(crate::helpers::config_from("store = \"memory\"", &extra)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get("/saml/right/metadata").await.status() != 200 {
        assert!(std::time::Instant::now() < deadline, "the right IdP loads");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.get("/saml/wrong/metadata").await.status(), 503);
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["idps_unavailable"], json!(["wrong"]), "{ready}");
}

/// The federation endpoint is called with credentials in the body: its client follows no
/// redirect, so a redirect (to wherever) is a failed sign-in, not a second POST.
#[tokio::test]
async fn the_federation_client_follows_no_redirect() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = format!("{}/federation", crate::helpers::federation_url());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let s = spawn_with(SetupOptions {
        federation: Some(format!("http://127.0.0.1:{port}/federation")),
        ..SetupOptions::default()
    })
    .await;
    let (client, csrf) = crate::oidc::signed_in_as_alice(&s).await;
    let res = action(&s, &client, "prod-admin", "console", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 502, "a redirect is a failed sign-in");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
