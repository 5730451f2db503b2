//! OIDC sign-in against a real OpenID Provider, hop by hop (no automatic redirects), and
//! the hostile cases: each must fail with a precise error and create no session.

use reqwest::{Client, Response};
use serde_json::json;

use crate::helpers::{OidcSetup, spawn_with_oidc};

pub fn location(res: &Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Walks sign-in up to the IdP's redirect back to the broker; returns that callback URL.
pub async fn login_until_callback(
    s: &OidcSetup,
    client: &Client,
    user: &str,
    password: &str,
) -> String {
    let res = client
        .get(format!("{}/", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "one IdP: straight to its sign-in");
    assert_eq!(location(&res), "/login/corp");
    let cb = sign_in_from(s, client, "/login/corp", user, password).await;
    assert!(cb.starts_with(&s.callback), "{cb}");
    cb
}

/// From a broker sign-in path (`/login/corp…`) through the OP's own login form to the
/// broker callback URL the OP redirects to.
pub async fn sign_in_from(
    s: &OidcSetup,
    client: &Client,
    login: &str,
    user: &str,
    password: &str,
) -> String {
    sign_in_at(s, &s.app.address, client, login, user, password).await
}

/// As [`sign_in_from`], starting at the broker instance at `base` (several instances).
pub async fn sign_in_at(
    s: &OidcSetup,
    base: &str,
    client: &Client,
    login: &str,
    user: &str,
    password: &str,
) -> String {
    let res = client.get(format!("{base}{login}")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let auth = location(&res);
    assert!(auth.starts_with(&s.op.issuer()), "{auth}");
    assert!(
        auth.contains("code_challenge_method=S256")
            && auth.contains("nonce=")
            && auth.contains("state="),
        "{auth}"
    );
    let res = client.get(&auth).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let interaction = format!("{}{}", s.op.issuer(), location(&res));
    let form = crate::helpers::page(client, &interaction).await;
    assert!(form.contains("id=\"password\""), "the IdP's own login form");
    let res = client
        .post(format!("{interaction}/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let res = client.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

pub fn browser() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

pub async fn is_signed_in(s: &OidcSetup, client: &Client) -> bool {
    let res = client
        .get(format!("{}/", s.app.address))
        .send()
        .await
        .unwrap();
    // The role picker (and only it) has the sign-out form.
    res.status() == 200 && res.text().await.unwrap().contains("action=\"/logout\"")
}

pub async fn tamper(s: &OidcSetup, body: serde_json::Value) {
    let res = Client::new()
        .post(format!("{}/__test/tamper", s.op.issuer()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn a_person_signs_in_and_sees_their_roles_grouped_by_account() {
    let s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    let res = client.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/");
    let set_cookie: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("rolegate_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/"),
        "{session}"
    );

    let res = client
        .get(format!("{}/", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Hello, alice@example.com"), "{html}");
    let sections: Vec<&str> = html
        .split("<section class=\"card account\">")
        .skip(1)
        .collect();
    assert_eq!(sections.len(), 2, "one section per account: {html}");
    let prod = sections
        .iter()
        .find(|s| s.contains("Production"))
        .expect("Production account");
    let dev = sections
        .iter()
        .find(|s| s.contains("Development"))
        .expect("Development account");
    assert!(
        prod.contains("Administrator") && !prod.contains("DevAdmin"),
        "prod-admin under Production"
    );
    assert!(
        dev.contains("DevAdmin") && !dev.contains("Administrator"),
        "dev-admin under Development"
    );
    assert!(
        html.contains("111122223333") && html.contains("444455556666"),
        "account numbers shown"
    );
    assert!(
        html.contains("/roles/prod-admin/console") && html.contains("/roles/dev-admin/credentials")
    );
}

#[tokio::test]
async fn a_person_without_roles_is_told_why() {
    let s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "carol", "carol-pw").await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    let html = crate::helpers::page(&client, format!("{}/", s.app.address)).await;
    assert!(html.contains("No AWS roles for you yet"), "{html}");
    // carol has no groups at all: the page says so, instead of "one of these groups".
    assert!(
        html.contains("sent no groups for you") && !html.contains("one of these groups"),
        "{html}"
    );
}

#[tokio::test]
async fn the_role_picker_offers_session_lengths_up_to_the_grant_and_shows_the_arn() {
    let s = spawn_with_oidc().await;
    let (client, _) = signed_in_as_alice(&s).await;
    let html = crate::helpers::page(&client, format!("{}/", s.app.address)).await;
    // prod-readonly allows 4h: 15m … 4h offered, 4h selected; nothing longer.
    let item = html
        .split("id=\"role-prod-readonly\"")
        .nth(1)
        .unwrap()
        .split("</li>")
        .next()
        .unwrap();
    for (secs, label) in [(900, "15m"), (3600, "1h"), (7200, "2h")] {
        assert!(
            item.contains(&format!("<option value=\"{secs}\">{label}</option>")),
            "{item}"
        );
    }
    assert!(
        item.contains("<option value=\"14400\" selected>4h</option>"),
        "{item}"
    );
    assert!(!item.contains("28800"), "nothing above the grant: {item}");
    assert!(
        item.contains("arn:aws:iam::111122223333:role/ReadOnly"),
        "the ARN is shown: {item}"
    );
    assert!(
        item.contains("formaction=\"/roles/prod-readonly/console\""),
        "{item}"
    );
}

#[tokio::test]
async fn state_is_single_use_required_and_bound_to_the_browser() {
    let s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;

    // Another browser presenting this callback: binding mismatch; the state is consumed.
    let other = browser();
    let res = other.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("started in another browser")
    );
    // Replay (now even in the right browser): unknown state.
    let res = client.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("already used"));
    assert!(!is_signed_in(&s, &client).await);

    let res = client
        .get(format!("{}?code=abc", s.callback))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "missing state");
    let res = client
        .get(format!("{}?code=abc&state=forged", s.callback))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "unknown state");
    assert!(!is_signed_in(&s, &client).await);
}

#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused() {
    let s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    let mut url = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://idp-b.example.com".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let res = client.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(!is_signed_in(&s, &client).await);
}

#[tokio::test]
async fn hostile_id_tokens_are_rejected_and_create_no_session() {
    let s = spawn_with_oidc().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let cases = [
        ("wrong aud", json!({ "claims": { "aud": "someone-else" } })),
        (
            "wrong iss",
            json!({ "claims": { "iss": "https://evil.example.com" } }),
        ),
        (
            "wrong nonce",
            json!({ "claims": { "nonce": "not-the-nonce" } }),
        ),
        (
            "expired",
            json!({ "claims": { "exp": now - 3600, "iat": now - 7200 } }),
        ),
        (
            "iat in the future",
            json!({ "claims": { "iat": now + 3600, "exp": now + 7200 } }),
        ),
        (
            "foreign azp",
            json!({ "claims": { "azp": "another-client" } }),
        ),
        ("unknown signing key", json!({ "foreign_key": true })),
        ("alg none", json!({ "header": { "alg": "none" } })),
        (
            "HS256 with the client secret",
            json!({ "header": { "alg": "HS256" } }),
        ),
    ];
    for (what, t) in cases {
        let client = browser();
        let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
        tamper(&s, t).await;
        let res = client.get(&cb).send().await.unwrap();
        assert_eq!(
            res.status(),
            403,
            "{what}: {}",
            res.text().await.unwrap_or_default()
        );
        assert!(!is_signed_in(&s, &client).await, "{what}: no session");
    }
    // And the untampered path still works afterwards.
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    assert!(is_signed_in(&s, &client).await);
}

#[tokio::test]
async fn a_key_rotated_at_the_idp_works_after_a_refetch() {
    let mut s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "bob", "bob-pw").await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);

    s.op.rotate_key(&s.callback, "key-2");
    // The JWKS refetch is rate-limited to once per 10 s per IdP; discovery fetched keys
    // just before, so wait out that window as a real rotation would.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "bob", "bob-pw").await;
    let res = client.get(&cb).send().await.unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert!(is_signed_in(&s, &client).await);
}

/// Signs alice in and returns her browser and the CSRF token from the role picker.
pub async fn signed_in_as_alice(s: &OidcSetup) -> (Client, String) {
    signed_in_as(s, "alice", "alice-pw").await
}

/// A browser signed in as `user`, and the CSRF token of its role picker.
pub async fn signed_in_as(s: &OidcSetup, user: &str, password: &str) -> (Client, String) {
    let client = browser();
    let cb = login_until_callback(s, &client, user, password).await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    let html = crate::helpers::page(&client, format!("{}/", s.app.address)).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .expect("a CSRF field")
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (client, csrf)
}

#[tokio::test]
async fn role_actions_require_the_csrf_token() {
    let s = spawn_with_oidc().await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let post = |form: Vec<(&'static str, String)>| {
        client
            .post(format!("{}/roles/prod-admin/console", s.app.address))
            .form(&form)
            .send()
    };
    assert_eq!(post(vec![]).await.unwrap().status(), 403, "no token");
    assert_eq!(
        post(vec![("csrf", "x".repeat(43))]).await.unwrap().status(),
        403,
        "wrong token"
    );
    let res = post(vec![("csrf", csrf.clone())]).await.unwrap();
    assert_eq!(
        res.status(),
        302,
        "a valid token reaches the issuer and the console"
    );
    let res = client
        .post(format!("{}/roles/no-such-role/console", s.app.address))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a role the mapping does not grant");
}

#[tokio::test]
async fn a_session_cookie_from_before_login_is_not_reused() {
    let s = spawn_with_oidc().await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let fixed = "A".repeat(43);
    let base: url::Url = s.app.address.parse().unwrap();
    jar.add_cookie_str(&format!("rolegate_session={fixed}; Path=/"), &base);
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    let res = client.get(&cb).send().await.unwrap();
    let new = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("rolegate_session="))
        .unwrap();
    assert!(
        !new.contains(&fixed),
        "a fresh session id is issued at login"
    );
    // The attacker's pre-set id does not lead to a session.
    let attacker = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = attacker
        .get(format!("{}/", s.app.address))
        .header("cookie", format!("rolegate_session={fixed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the fixed id is not signed in");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let s = spawn_with_oidc().await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let res = client
        .post(format!("{}/logout", s.app.address))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("signed out") && html.contains("/session/end"),
        "offers the IdP's end-session URL: {html}"
    );
    assert!(!is_signed_in(&s, &client).await);
}

#[tokio::test]
async fn sign_ins_are_audited_without_tokens() {
    let s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    assert_eq!(
        client.get(&cb).send().await.unwrap().status(),
        400,
        "replay"
    );

    let records = s.audit_records();
    assert_eq!(records.len(), 2, "{records:#?}");
    let ok = &records[0];
    assert_eq!(ok["event"], "login");
    assert_eq!(ok["outcome"], "success");
    assert_eq!(ok["idp"], "corp");
    assert_eq!(ok["subject"], "alice");
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert_eq!(ok["request_id"].as_str().unwrap().len(), 32);
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    let failed = &records[1];
    assert_eq!(failed["outcome"], "failure");
    assert!(
        failed["reason"].as_str().unwrap().contains("state"),
        "{failed}"
    );
    let url = url::Url::parse(&cb).unwrap();
    let text = std::fs::read_to_string(s.audit_path()).unwrap();
    for (k, v) in url.query_pairs() {
        if k == "code" || k == "state" {
            assert!(!text.contains(v.as_ref()), "audit log holds the {k}");
        }
    }
}

#[tokio::test]
async fn an_error_from_the_idp_is_shown_and_creates_no_session() {
    let s = spawn_with_oidc().await;
    let client = browser();
    let res = client
        .get(format!("{}/login/corp", s.app.address))
        .send()
        .await
        .unwrap();
    let auth = url::Url::parse(&location(&res)).unwrap();
    let state = auth
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let res = client
        .get(format!(
            "{}?error=access_denied&error_description=no&state={state}",
            s.callback
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("did not sign you in (access_denied)"),
        "{html}"
    );
    assert!(html.contains("Start again"), "{html}");
    assert!(!is_signed_in(&s, &client).await);
}

#[tokio::test]
async fn several_idps_are_listed_and_one_that_is_down_says_so() {
    let dead = crate::helpers::free_port();
    let extra = format!(
        "[[idp]]\nid = \"down\"\nkind = \"oidc\"\ndisplay_name = \"Partner SSO\"\nissuer = \"http://127.0.0.1:{dead}\"\nclient_id = \"broker\"\n"
    );
    let s = crate::helpers::spawn_with_oidc_options("store = \"memory\"".into(), extra).await;
    let client = browser();
    let res = client
        .get(format!("{}/", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Corp SSO") && html.contains("Partner SSO"),
        "{html}"
    );
    assert!(html.contains("href=\"/login/corp\"") && html.contains("href=\"/login/down\""));

    let res = client
        .get(format!("{}/login/down", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Partner SSO cannot be reached right now")
    );
    let ready: serde_json::Value = client
        .get(format!("{}/readyz", s.app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["idps_unavailable"], json!(["down"]));
    assert_eq!(ready["status"], "ready", "the other IdP still works");

    let res = client
        .get(format!("{}/login/nope", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn with_redis_a_broker_restart_keeps_people_signed_in() {
    let redis = crate::helpers::shared_redis();
    let session = format!(
        "store = \"redis\"\nredis_url = \"{redis}\"\nkey_prefix = \"{}\"",
        crate::helpers::unique_prefix("restart")
    );
    let mut s = crate::helpers::spawn_with_oidc_options(session, String::new()).await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    s.restart_broker().await;
    assert!(
        is_signed_in(&s, &client).await,
        "the session lives in Redis"
    );
}

#[tokio::test]
async fn with_the_memory_store_a_broker_restart_signs_everyone_out() {
    let mut s = spawn_with_oidc().await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    assert_eq!(client.get(&cb).send().await.unwrap().status(), 303);
    assert!(is_signed_in(&s, &client).await);
    s.restart_broker().await;
    assert!(
        !is_signed_in(&s, &client).await,
        "memory sessions die with the process"
    );
}

#[tokio::test]
async fn userinfo_claims_are_merged_and_a_different_userinfo_sub_is_refused() {
    let s = crate::helpers::spawn_with(crate::helpers::SetupOptions {
        corp_extra: "use_userinfo = true".into(),
        ..Default::default()
    })
    .await;
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    assert_eq!(
        client.get(&cb).send().await.unwrap().status(),
        303,
        "userinfo agrees with the ID token"
    );
    assert!(is_signed_in(&s, &client).await);

    // An ID token (validly signed by the IdP) naming another subject than userinfo does.
    let client = browser();
    let cb = login_until_callback(&s, &client, "alice", "alice-pw").await;
    tamper(&s, json!({ "claims": { "sub": "mallory" } })).await;
    let res = client.get(&cb).send().await.unwrap();
    assert_eq!(
        res.status(),
        403,
        "a verification failure, not a gateway error"
    );
    assert!(!is_signed_in(&s, &client).await);
    let failure = s
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "login")
        .unwrap();
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("userinfo is about another subject"),
        "{failure}"
    );
}
