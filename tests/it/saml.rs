//! SAML sign-in against a real IdP (SimpleSAMLphp), hop by hop, ending in the same
//! session, role picker and credential issuance as OIDC.

use reqwest::Client;

use crate::helpers::{OidcSetup, SetupOptions, spawn_with};
use crate::oidc::{browser, is_signed_in, location};

fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at..];
    let v = rest.find("value=\"").unwrap() + 7;
    let end = rest[v..].find('"').unwrap();
    crate::issuance::unescape(&rest[v..v + end])
}

/// Walks an SP-initiated SAML login through SimpleSAMLphp's own login form and returns
/// the IdP's auto-post form fields (SAMLResponse, RelayState) and the ACS it posts to.
pub async fn saml_login_until_acs(
    s: &OidcSetup,
    client: &Client,
    user: &str,
    password: &str,
) -> (String, String, String) {
    let res = client
        .get(format!("{}/login/ssp", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let sso = location(&res);
    let ssp = s.ssp.as_ref().unwrap();
    assert!(
        sso.starts_with(&format!(
            "http://127.0.0.1:{}/saml2/idp/SSOService.php?SAMLRequest=",
            ssp.port
        )),
        "{sso}"
    );
    assert!(sso.contains("RelayState="));
    let res = client.get(&sso).send().await.unwrap();
    assert_eq!(
        res.status(),
        302,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let login = location(&res);
    let login = if login.starts_with("http") {
        login
    } else {
        format!("http://127.0.0.1:{}{login}", ssp.port)
    };
    let form = crate::helpers::page(client, &login).await;
    let auth_state = hidden(&form, "AuthState");
    let res = client
        .post(format!(
            "http://127.0.0.1:{}/module.php/core/loginuserpass.php",
            ssp.port
        ))
        .form(&[
            ("username", user),
            ("password", password),
            ("AuthState", &auth_state),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let action = page
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (
        hidden(&page, "SAMLResponse"),
        hidden(&page, "RelayState"),
        crate::issuance::unescape(&action),
    )
}

#[tokio::test]
async fn a_person_signs_in_through_simplesamlphp_and_gets_roles_from_saml_groups() {
    let s = spawn_with(SetupOptions {
        saml: true,
        ..SetupOptions::default()
    })
    .await;
    let client = browser();
    let (response, relay, acs) = saml_login_until_acs(&s, &client, "alice", "alice-pw").await;
    assert_eq!(acs, format!("{}/saml/ssp/acs", s.app.address));
    let res = client
        .post(&acs)
        .form(&[("SAMLResponse", &response), ("RelayState", &relay)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let finish = location(&res);
    assert!(finish.starts_with("/saml/ssp/finish?k="), "{finish}");
    let res = client
        .get(format!("{}{finish}", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/");
    let html = crate::helpers::page(&client, format!("{}/", s.app.address)).await;
    assert!(html.contains("Hello, alice@example.test"), "{html}");
    assert!(html.contains("Signed in through Test SAML IdP"), "{html}");
    assert!(
        html.contains("/roles/prod-admin/console"),
        "roles mapped from the SAML groups attribute"
    );

    // The same credential path as OIDC.
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let res = client
        .post(format!("{}/roles/prod-admin/credentials", s.app.address))
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let creds = crate::issuance::credentials_from_page(&res.text().await.unwrap());
    let who = crate::issuance::aws_caller_identity(&creds, crate::helpers::moto_url());
    assert_eq!(
        who["Arn"],
        "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.test"
    );
    let login = s
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "login")
        .unwrap();
    assert_eq!(login["idp"], "ssp");
    assert_eq!(login["subject"], "alice", "NameID exactly as sent");

    // The same response again: the relay state is used up (and the assertion id cached).
    let res = client
        .post(&acs)
        .form(&[("SAMLResponse", &response), ("RelayState", &relay)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn sp_metadata_names_the_acs_and_entity_id() {
    let s = spawn_with(SetupOptions {
        saml: true,
        ..SetupOptions::default()
    })
    .await;
    let res = s.app.get("/saml/ssp/metadata").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/samlmetadata+xml"
    );
    let xml = res.text().await.unwrap();
    let md: samael::metadata::EntityDescriptor = xml.parse().expect("SP metadata parses");
    assert_eq!(
        md.entity_id.as_deref(),
        Some(format!("{}/saml/ssp/metadata", s.app.address).as_str())
    );
    assert!(
        xml.contains(&format!("{}/saml/ssp/acs", s.app.address)),
        "{xml}"
    );
    assert!(
        xml.contains("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"),
        "{xml}"
    );
}

#[tokio::test]
async fn a_saml_login_finished_in_another_browser_is_refused() {
    let s = spawn_with(SetupOptions {
        saml: true,
        ..SetupOptions::default()
    })
    .await;
    let client = browser();
    let (response, relay, acs) = saml_login_until_acs(&s, &client, "bob", "bob-pw").await;
    let other = browser();
    let res = other
        .post(&acs)
        .form(&[("SAMLResponse", &response), ("RelayState", &relay)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the assertion itself is valid");
    let res = other
        .get(format!("{}{}", s.app.address, location(&res)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        400,
        "but this browser did not start the login"
    );
    assert!(!is_signed_in(&s, &other).await);
    assert!(!is_signed_in(&s, &client).await);
}
