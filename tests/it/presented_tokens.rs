//! ID tokens a client presents (the entry point token exchange uses): an app signs the
//! person in at the real OpenID Provider itself (code + PKCE as a public client) and
//! hands rolegate the ID token. `idp::verify_id_token` accepts it for the app's audience
//! only, with the same checks as a login's ID token.

use base64::Engine as _;
use reqwest::Client;

use crate::helpers::{OidcProvider, config_with_aws};
use crate::oidc::{browser, location};

/// What the app does: the authorization code flow with PKCE at the OP, its login form,
/// and the token request; returns the ID token (audience "app").
pub async fn app_id_token(op: &OidcProvider, user: &str, password: &str) -> String {
    let client: Client = browser();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let redirect = "http://127.0.0.1/app/callback";
    let res = client
        .get(format!("{}/auth", op.issuer()))
        .query(&[
            ("client_id", "app"),
            ("response_type", "code"),
            ("scope", "openid email profile groups"),
            ("redirect_uri", redirect),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "app-state"),
            ("nonce", &format!("n{:x}", rand::random::<u64>())),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let interaction = format!("{}{}", op.issuer(), location(&res));
    let res = client
        .post(format!("{interaction}/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // Follow the OP's own redirects (resume, interaction) to the app's redirect URI.
    let base = url::Url::parse(&op.issuer()).unwrap();
    let mut next = base.join(&location(&res)).unwrap();
    for _ in 0..5 {
        if next.as_str().starts_with(redirect) {
            break;
        }
        let res = client.get(next.clone()).send().await.unwrap();
        assert_eq!(
            res.status(),
            303,
            "{}",
            res.text().await.unwrap_or_default()
        );
        next = base.join(&location(&res)).unwrap();
    }
    let cb = next;
    assert!(cb.as_str().starts_with(redirect), "{cb}");
    let code = cb
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("a code")
        .1
        .into_owned();
    let res = client
        .post(format!("{}/token", op.issuer()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "app"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    body["id_token"].as_str().expect("an ID token").to_owned()
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

async fn provider(op: &OidcProvider) -> rolegate::idp::oidc::OidcProvider {
    let config = config_with_aws(
        "store = \"memory\"",
        "",
        &format!(
            "[[idp]]\nid = \"corp\"\nkind = \"oidc\"\nissuer = \"{}\"\nclient_id = \"broker\"\nscopes = [\"email\", \"groups\"]\n",
            op.issuer()
        ),
    );
    let idp = config.idps[0].clone();
    let rolegate::config::IdpProtocol::Oidc(settings) = idp.protocol.clone() else {
        unreachable!()
    };
    let p = rolegate::idp::oidc::OidcProvider::new(idp, settings, &config.server.public_url);
    p.discover().await.expect("discovery");
    p
}

#[tokio::test]
async fn an_apps_id_token_is_verified_for_the_apps_audience_only() {
    let op = OidcProvider::start("http://127.0.0.1:1/oidc/corp/callback");
    let p = provider(&op).await;
    let token = app_id_token(&op, "alice", "alice-pw").await;

    let identity = rolegate::idp::verify_id_token(&p, &token, "app")
        .await
        .expect("the app's token verifies for the app");
    let c = identity.claims();
    assert_eq!(c.subject, "alice");
    assert_eq!(c.idp.as_str(), "corp");
    let groups: Vec<&str> = c.groups.iter().map(|g| g.as_str()).collect();
    assert_eq!(groups, ["aws-admins", "developers"]);

    // Issued to the app, so not a token for the broker's own client (nor any other).
    for audience in ["broker", "other-app"] {
        let err = rolegate::idp::verify_id_token(&p, &token, audience)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audience") || err.contains("aud"),
            "{audience}: {err}"
        );
    }
    // A changed payload breaks the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["sub"] = "mallory".into();
    parts[1] =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let forged = parts.join(".");
    assert!(
        rolegate::idp::verify_id_token(&p, &forged, "app")
            .await
            .is_err()
    );
    assert!(
        rolegate::idp::verify_id_token(&p, "not-a-jwt", "app")
            .await
            .is_err()
    );
}
