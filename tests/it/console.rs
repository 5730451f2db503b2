//! The console where people meant to go: a service and region from the role picker, the
//! JSON API and `rolegate console`; bookmarkable shortcut links that sign in first and
//! confirm before anything is issued; destinations only on the console or the configured
//! `console_destinations`, everything else a clear refusal and never a redirect.

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::cli_login::CLI_CONFIG;
use crate::helpers::{OidcSetup, SetupOptions, federation_url, spawn_with};
use crate::issuance::action;
use crate::oidc::{browser, location, sign_in_from, signed_in_as_alice};

async fn broker() -> OidcSetup {
    spawn_with(SetupOptions {
        aws_extra: "console_destinations = [\"https://example.awsapps.com/start\"]\n".into(),
        extra: CLI_CONFIG.into(),
        ..SetupOptions::default()
    })
    .await
}

/// The `Destination` of a federation `login` redirect.
fn destination_of(login: &str) -> String {
    url::Url::parse(login)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "Destination")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no Destination in {login}"))
}

fn issued(s: &OidcSetup) -> usize {
    s.audit_records()
        .iter()
        .filter(|r| r["event"] == "issuance" && r["outcome"] == "success")
        .count()
}

fn refusals_for_destination(s: &OidcSetup) -> usize {
    s.audit_records()
        .iter()
        .filter(|r| {
            r["event"] == "issuance"
                && r["outcome"] != "success"
                && r.to_string().contains("console_destination")
        })
        .count()
}

#[tokio::test]
async fn the_picker_lands_on_the_chosen_service_and_refuses_other_sites() {
    let s = broker().await;
    let (client, csrf) = signed_in_as_alice(&s).await;
    let picker = crate::helpers::page(&client, format!("{}/", s.app.address)).await;
    assert!(
        picker.contains("<datalist id=\"console-services\">")
            && picker.contains("value=\"lambda\""),
        "the picker offers services"
    );
    let console = format!("{}/console", federation_url());
    let res = action(
        &s,
        &client,
        "prod-admin",
        "console",
        &[("csrf", &csrf), ("service", "s3"), ("region", "eu-west-1")],
    )
    .await;
    assert_eq!(res.status(), 302);
    // The test console is on an IP address: no regional host names, the region in the query.
    assert_eq!(
        destination_of(&location(&res)),
        format!("{console}/s3/home?region=eu-west-1")
    );
    // Only a service: the broker's region.
    let res = action(
        &s,
        &client,
        "prod-admin",
        "console",
        &[("csrf", &csrf), ("service", "lambda")],
    )
    .await;
    assert_eq!(
        destination_of(&location(&res)),
        format!("{console}/lambda/home?region=us-east-1")
    );

    // Refused, with a page that says why, nothing issued, the refusal audited.
    let before = issued(&s);
    for (form, says) in [
        (
            vec![("service", "s4")],
            "is not a console service rolegate knows",
        ),
        (
            vec![("service", "s3"), ("region", "eu_west_1")],
            "is not an AWS region name",
        ),
        (
            vec![("destination", "https://evil.example/")],
            "is not on the AWS console",
        ),
        (
            vec![("destination", "//evil.example/x")],
            "is not on the AWS console",
        ),
    ] {
        let mut form = form;
        form.push(("csrf", &csrf));
        let res = action(&s, &client, "prod-admin", "console", &form).await;
        assert_eq!(res.status(), 400, "{form:?}");
        assert!(res.headers().get("location").is_none());
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Console destination not allowed") && html.contains(says),
            "{html}"
        );
    }
    assert_eq!(issued(&s), before, "nothing issued");
    assert_eq!(refusals_for_destination(&s), 4, "each refusal audited");
}

#[tokio::test]
async fn a_shortcut_link_signs_in_confirms_and_only_then_issues() {
    let s = broker().await;
    let console = format!("{}/console", federation_url());
    let link = format!(
        "/console/prod-admin?destination={}",
        url::form_urlencoded::byte_serialize(format!("{console}/rds/home").as_bytes())
            .collect::<String>()
    );

    // Not signed in: to the IdP and back to the link.
    let b = browser();
    let res = b
        .get(format!("{}{link}", s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    assert!(login.starts_with("/login/corp?return_to="), "{login}");
    let cb = sign_in_from(&s, &b, &login, "alice", "alice-pw").await;
    let res = b.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), link, "back to the link after signing in");

    // The link shows a confirmation; the GET issues nothing.
    let before = issued(&s);
    let html = crate::helpers::page(&b, format!("{}{link}", s.app.address)).await;
    assert!(html.contains("Open the AWS console?"), "{html}");
    assert!(html.contains(&format!("{console}/rds/home")), "{html}");
    assert_eq!(issued(&s), before, "a GET never issues credentials");
    let csrf = crate::cli_login::field(&html, "csrf").to_owned();
    let destination = format!("{console}/rds/home");
    let res = b
        .post(format!("{}/roles/prod-admin/console", s.app.address))
        .form(&[
            ("csrf", csrf.as_str()),
            ("destination", &destination),
            ("service", ""),
            ("region", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(destination_of(&location(&res)), destination);
    assert_eq!(issued(&s), before + 1);

    // A link to anywhere else: a 400 page, no form, no redirect, nothing issued.
    for bad in [
        "/console/prod-admin?destination=https%3A%2F%2Fevil.example%2F",
        "/console/prod-admin?destination=https://console.aws.amazon.com.evil.example/",
        "/console/prod-admin?service=s3&region=mars-1",
    ] {
        let res = b
            .get(format!("{}{bad}", s.app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.headers().get("location").is_none());
        let html = res.text().await.unwrap();
        assert!(html.contains("Console destination not allowed"), "{html}");
        assert!(!html.contains("<form"), "{bad}: no button to press");
    }
    // A role not granted: the confirmation shows, the post is refused as any other.
    let html = crate::helpers::page(&b, format!("{}/console/no-such-role", s.app.address)).await;
    let csrf = crate::cli_login::field(&html, "csrf").to_owned();
    let res = action(&s, &b, "no-such-role", "console", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(issued(&s), before + 1);
}

#[tokio::test]
async fn the_api_and_the_cli_take_a_service_or_an_allowed_destination() {
    let s = broker().await;
    let t = crate::cli_login::logged_in_cli(&s).await;
    let token = t["access_token"].as_str().unwrap();
    let api = |body: Option<Json>| {
        let mut req = Client::new()
            .post(format!("{}/api/v1/roles/prod-admin/console", s.app.address))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Json>().await.unwrap())
        }
    };
    let (status, body) = api(None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        destination_of(body["url"].as_str().unwrap()),
        format!("{}/console/ec2/home", federation_url()),
        "the role's own destination"
    );
    let (status, body) = api(Some(
        json!({ "destination": "https://example.awsapps.com/start/#/" }),
    ))
    .await;
    assert_eq!(status, 200, "a configured destination: {body}");
    assert_eq!(
        destination_of(body["url"].as_str().unwrap()),
        "https://example.awsapps.com/start/#/"
    );
    for (bad, says) in [
        (json!({ "service": "s4" }), "not a console service"),
        (
            json!({ "service": "s3", "region": "EU-WEST-1" }),
            "not an AWS region name",
        ),
        (
            json!({ "destination": "https://example.awsapps.com/other" }),
            "not on the AWS console",
        ),
        (json!({ "destination": 5 }), "must be a string"),
    ] {
        let (status, body) = api(Some(bad.clone())).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
        assert!(
            body["error_description"].as_str().unwrap().contains(says),
            "{body}"
        );
    }

    // rolegate console --service/--region/--destination --print.
    let machine = crate::container::logged_in_machine(&s).await;
    let home = machine.path().to_owned();
    let run = |args: Vec<&'static str>| {
        let mut cmd = crate::container::rolegate(&home, &args);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = run(vec![
        "console",
        "--role",
        "prod-admin",
        "--service",
        "s3",
        "--region",
        "eu-west-1",
        "--print",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        destination_of(out.trim()),
        format!("{}/console/s3/home?region=eu-west-1", federation_url())
    );
    let (code, _, err) = run(vec![
        "console",
        "--role",
        "prod-admin",
        "--destination",
        "https://evil.example/",
        "--print",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("is not on the AWS console"), "{err}");
    let (code, _, err) = run(vec![
        "console",
        "--role",
        "prod-admin",
        "--region",
        "eu-west-1",
    ])
    .await;
    assert_eq!(code, 2, "--region needs --service: {err}");
}
