//! SCIM provisioning with real components: scim2-tester (the RFC compliance checker from
//! PyPI) against the endpoint; the request sequences Okta and Entra ID send, as fixtures;
//! bad and hostile input; and the effects on access: alice, signed in through OIDC and
//! SAML with a browser session, a CLI login and an AWS SDK login on three instances
//! behind HAProxy on a Redis Cluster, deactivated by SCIM, refused everywhere at her next
//! request, then reactivated; a group removed in the directory takes its role away at her
//! next request.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use reqwest::Client;
use serde_json::{Value as Json, json};

use crate::helpers::{SetupOptions, spawn_with};

pub const CORP_TOKEN: &str = "corp-scim-test-token-0123456789abcdef0123456789abcdef";
const SSP_TOKEN: &str = "ssp-scim-test-token-fedcba9876543210fedcba9876543210";

/// `[idp.scim]` for "corp" (its token from the testbed), after `groups_from`.
pub fn corp_scim(groups_from: &str, more: &str) -> String {
    format!(
        "groups_from = \"{groups_from}\"\n[idp.scim]\ntoken = {{ file = \"../testbed/scim/corp-token\" }}\nrequests_per_minute = 100000\n{more}\n"
    )
}

/// A SCIM client of one IdP.
pub struct Scim {
    pub base: String,
    token: String,
    http: Client,
}

impl Scim {
    pub fn new(broker: &str, token: &str) -> Self {
        Self {
            base: format!("{broker}/scim/v2"),
            token: token.to_owned(),
            http: Client::new(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&Json>) -> (u16, Json) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Json::Null))
    }

    /// Creates a user `name` (active) and returns its id.
    pub async fn user(&self, name: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/Users",
                Some(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name, "active": true,
                    "emails": [{ "value": name, "primary": true }],
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a group with these members and returns its id.
    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Json> = members.iter().map(|m| json!({ "value": m })).collect();
        let (status, body) = self
            .call(
                "POST",
                "/Groups",
                Some(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name, "members": members,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// `PATCH` with one or more operations; asserts 200.
    pub async fn patch(&self, path: &str, ops: Json) -> Json {
        let (status, body) = self
            .call(
                "PATCH",
                path,
                Some(&json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": ops,
                })),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

/// Replaces `{name}` with what earlier steps captured.
fn fill(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Plays one fixture file's steps, asserting each status and expected value.
async fn play(scim: &Scim, file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/scim")
        .join(file);
    let fixture: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut vars: HashMap<String, String> = HashMap::new();
    for (i, step) in fixture["steps"].as_array().unwrap().iter().enumerate() {
        let method = step["method"].as_str().unwrap();
        let path = fill(step["path"].as_str().unwrap(), &vars);
        let body = step
            .get("body")
            .map(|b| serde_json::from_str::<Json>(&fill(&b.to_string(), &vars)).unwrap());
        let (status, got) = scim.call(method, &path, body.as_ref()).await;
        let want = step["status"].as_u64().unwrap() as u16;
        assert_eq!(status, want, "{file} step {i}: {method} {path}\n{got:#}");
        for (name, pointer) in step["capture"].as_object().into_iter().flatten() {
            let v = got
                .pointer(pointer.as_str().unwrap())
                .and_then(Json::as_str);
            vars.insert(name.clone(), v.expect("captured").to_owned());
        }
        for (pointer, expected) in step["expect"].as_object().into_iter().flatten() {
            let expected: Json = serde_json::from_str(&fill(&expected.to_string(), &vars)).unwrap();
            assert_eq!(
                got.pointer(pointer),
                Some(&expected),
                "{file} step {i}: {method} {path}: {pointer}\n{got:#}"
            );
        }
        for pointer in step["absent"].as_array().into_iter().flatten() {
            let pointer = pointer.as_str().unwrap();
            assert!(
                got.pointer(pointer).is_none(),
                "{file} step {i}: {pointer} should be absent\n{got:#}"
            );
        }
        if status >= 400 {
            assert_eq!(
                got["schemas"],
                json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
                "{file} step {i}: a SCIM error"
            );
        }
    }
}

#[tokio::test]
async fn okta_and_entra_request_sequences_provision_users_and_groups() {
    let s = spawn_with(SetupOptions {
        corp_extra: corp_scim("both", ""),
        ..SetupOptions::default()
    })
    .await;
    let scim = Scim::new(&s.app.address, CORP_TOKEN);
    play(&scim, "okta.json").await;
    play(&scim, "entra.json").await;
    let records = s.audit_records();
    let changes: Vec<&Json> = records
        .iter()
        .filter(|r| r["event"] == "provisioning" && r["outcome"] == "success")
        .collect();
    assert!(changes.len() >= 20, "{}", changes.len());
    assert!(changes.iter().all(|r| r["idp"] == "corp"));
    assert!(changes.iter().any(|r| {
        r["effects"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("deactivated")))
    }));
    let log = std::fs::read_to_string(s.audit_path()).unwrap();
    assert!(
        !log.contains(CORP_TOKEN) && !log.contains("1mz050nq"),
        "no token or password audited"
    );
}

/// scim2-tester, the SCIM compliance checker, finds nothing wrong.
#[tokio::test]
async fn scim2_tester_finds_every_check_passing() {
    let s = spawn_with(SetupOptions {
        corp_extra: corp_scim("token", ""),
        ..SetupOptions::default()
    })
    .await;
    let scim2 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testbed/.venv-scim/bin/scim2"
    );
    let out = Command::new(scim2)
        .args(["--url", &format!("{}/scim/v2", s.app.address), "test"])
        .env(
            "SCIM_CLI_HEADERS",
            format!("Authorization: Bearer {CORP_TOKEN}"),
        )
        .output()
        .expect("scim2 runs (tests/testbed/install.sh scim)");
    let report = String::from_utf8_lossy(&out.stdout);
    let passed = report.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let failed: Vec<&str> = report
        .lines()
        .filter(|l| {
            // scim2-tester's statuses: SUCCESS, COMPLIANT, ACCEPTABLE and SKIPPED pass;
            // DEVIATION (from a SHOULD), ERROR (a MUST) and CRITICAL do not.
            let word = l.split_whitespace().next().unwrap_or("");
            matches!(word, "DEVIATION" | "ERROR" | "CRITICAL")
        })
        .collect();
    assert!(
        passed >= 100,
        "{passed} checks passed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(failed.is_empty(), "checks that did not pass:\n{report}");
}

#[tokio::test]
async fn bad_scim_input_is_refused_in_scim_form_and_changes_nothing() {
    let s = spawn_with(SetupOptions {
        corp_extra: corp_scim("directory", ""),
        ..SetupOptions::default()
    })
    .await;
    let scim = Scim::new(&s.app.address, CORP_TOKEN);
    let alice = scim.user("alice@example.com").await;
    let group = scim.group("aws-admins", &[&alice]).await;
    let snapshot = async || {
        let (_, users) = scim.call("GET", "/Users", None).await;
        let (_, groups) = scim.call("GET", "/Groups", None).await;
        (users, groups)
    };
    let before = snapshot().await;
    let http = Client::new();
    let url = |p: &str| format!("{}{p}", scim.base);

    // No token, a wrong one, another scheme: 401 with a challenge, nothing said of tokens.
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&*format!("Basic {CORP_TOKEN}")),
        Some("Bearer "),
    ] {
        let mut req = http.get(url("/Users"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body: Json = res.json().await.unwrap();
        assert_eq!(body["status"], "401");
    }
    let wrong = Scim::new(&s.app.address, SSP_TOKEN);
    assert_eq!(
        wrong
            .call("DELETE", &format!("/Users/{alice}"), None)
            .await
            .0,
        401
    );

    let post_raw = |path: &str, ct: &str, body: Vec<u8>| {
        http.post(url(path))
            .bearer_auth(CORP_TOKEN)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    // Malformed, oversized, not JSON.
    let res = post_raw(
        "/Users",
        "application/scim+json",
        b"{\"schemas\": [".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Json>().await.unwrap()["scimType"],
        "invalidSyntax"
    );
    let huge = format!(
        "{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let res = post_raw("/Users", "application/scim+json", huge.into_bytes())
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res = post_raw("/Users", "text/plain", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.headers()["content-type"],
        "application/scim+json",
        "errors are SCIM JSON"
    );

    // Unknown attributes and schemas, wrong types, missing required values, read-only
    // attributes, a duplicate name.
    let user = |extra: Json| {
        let mut u = json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "eve@example.com" });
        for (k, v) in extra.as_object().unwrap() {
            u[k] = v.clone();
        }
        u
    };
    for (body, scim_type) in [
        (user(json!({ "favouriteColour": "blue" })), "invalidValue"),
        (
            user(json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:evil"] })),
            "invalidValue",
        ),
        (
            user(json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"] })),
            "invalidValue",
        ),
        (user(json!({ "active": "perhaps" })), "invalidValue"),
        (user(json!({ "userName": "" })), "invalidValue"),
        (user(json!({ "emails": 42 })), "invalidValue"),
        (
            user(json!({ "userName": "ALICE@example.com" })),
            "uniqueness",
        ),
        (json!(["not", "an", "object"]), "invalidSyntax"),
    ] {
        let (status, got) = scim.call("POST", "/Users", Some(&body)).await;
        assert!(status == 400 || status == 409, "{body}: {status} {got}");
        assert_eq!(got["scimType"], scim_type, "{body}: {got}");
        assert_eq!(
            got["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
    }

    // Filters: syntax errors and injection attempts are invalidFilter, never a match-all.
    for filter in [
        "userName eq",
        "userName eq \"a\" or",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "userName eq \"a\") or (1 eq 1",
        "userName eq \"*\" ; DROP",
        "emails[type eq \"work\"",
        &"(".repeat(50),
        &format!("{}userName eq \"a\"{}", "(".repeat(30), ")".repeat(30)),
        &format!("userName eq \"{}\"", "a".repeat(1100)),
    ] {
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let (status, got) = scim.call("GET", &format!("/Users?filter={q}"), None).await;
        assert_eq!(status, 400, "{filter}: {got}");
        assert_eq!(got["scimType"], "invalidFilter", "{filter}: {got}");
    }
    // A quote smuggled into a value stays in the value.
    let smuggled: String =
        url::form_urlencoded::byte_serialize(br#"userName eq "a\" or userName pr \"""#).collect();
    let (status, got) = scim
        .call("GET", &format!("/Users?filter={smuggled}"), None)
        .await;
    assert_eq!((status, &got["totalResults"]), (200, &json!(0)), "{got}");
    let (status, got) = scim
        .call(
            "GET",
            "/Users?filter=userName%20eq%20%22a%22%20or%20userName%20pr",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["totalResults"], 1, "or with pr is a real filter: {got}");
    assert_eq!(scim.call("GET", "/Users?count=ten", None).await.0, 400);

    // PATCH on a missing user; a PATCH whose second operation is bad changes nothing.
    let (status, got) = scim
        .call(
            "PATCH",
            "/Users/no-such-id",
            Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{ "op": "replace", "path": "active", "value": false }] })),
        )
        .await;
    assert_eq!(status, 404, "{got}");
    assert_eq!(got["status"], "404");
    let (status, got) = scim
        .call(
            "PATCH",
            &format!("/Users/{alice}"),
            Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                { "op": "replace", "path": "active", "value": false },
                { "op": "replace", "path": "shoeSize", "value": 44 },
            ] })),
        )
        .await;
    assert_eq!(status, 400, "{got}");
    let (status, got) = scim
        .call(
            "PATCH",
            &format!("/Groups/{group}"),
            Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                { "op": "remove", "path": "members" },
                { "op": "remove", "path": "displayName" },
            ] })),
        )
        .await;
    assert_eq!(status, 400, "displayName is required: {got}");
    let (status, _) = scim
        .call(
            "PUT",
            &format!("/Users/{alice}"),
            Some(&json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"] })),
        )
        .await;
    assert_eq!(status, 400, "userName is required");
    assert_eq!(scim.call("DELETE", "/Groups/no-such-id", None).await.0, 404);
    assert_eq!(scim.call("GET", "/Nope", None).await.0, 404);
    assert_eq!(scim.call("POST", "/Bulk", Some(&json!({}))).await.0, 501);
    assert_eq!(scim.call("DELETE", "/Schemas", None).await.0, 405);

    assert_eq!(snapshot().await, before, "nothing was partly applied");
    let (_, u) = scim.call("GET", &format!("/Users/{alice}"), None).await;
    assert_eq!(u["active"], true);
    assert_eq!(u["groups"][0]["value"], group);

    // Every refusal is audited, without the token.
    let records = s.audit_records();
    let refused = records
        .iter()
        .filter(|r| r["event"] == "provisioning" && r["outcome"] == "refused")
        .count();
    assert!(refused >= 25, "{refused} refusals audited");
    let log = std::fs::read_to_string(s.audit_path()).unwrap();
    assert!(!log.contains(CORP_TOKEN));
}

/// A rate limit per IdP: past it, 429 with Retry-After, in SCIM form.
#[tokio::test]
async fn an_idp_over_its_scim_rate_limit_is_told_to_slow_down() {
    let s = spawn_with(SetupOptions {
        corp_extra: "[idp.scim]\ntoken = { file = \"../testbed/scim/corp-token\" }\nrequests_per_minute = 5\n".into(),
        ..SetupOptions::default()
    })
    .await;
    let scim = Scim::new(&s.app.address, CORP_TOKEN);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(scim.call("GET", "/Users", None).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let res = Client::new()
        .get(format!("{}/Users", scim.base))
        .bearer_auth(CORP_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.json::<Json>().await.unwrap()["status"], "429");
}

/// The roles on the role picker of `browser` at `base` (their ids), or the status.
async fn picker_roles(browser: &Client, base: &str) -> Result<Vec<String>, u16> {
    let res = browser.get(format!("{base}/")).send().await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let html = res.text().await.unwrap();
    let mut roles: Vec<String> = html
        .split("/roles/")
        .skip(1)
        .filter_map(|s| s.split('/').next())
        .map(str::to_owned)
        .collect();
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// alice, provisioned by SCIM into both IdPs' directories, holds a browser session (OIDC
/// and SAML), a CLI login and an AWS SDK login through three instances behind HAProxy on
/// a Redis Cluster. With `groups_from = "directory"` her roles follow the directory's
/// groups at every request; deactivated, every one of her holdings is refused at its
/// next request on every instance and a new sign-in is refused; reactivated, she signs
/// in again.
#[tokio::test]
async fn deprovisioning_ends_every_holding_everywhere_and_directory_groups_decide_roles() {
    use crate::lifecycle::{
        ADMIN, SdkLogin, cli_login, rolegate, sdk_login, signed_in, sso_client,
    };
    let session = format!(
        "store = \"redis-cluster\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
        crate::helpers::shared_cluster().seed(),
        crate::helpers::unique_prefix("scim-e2e")
    );
    let b = crate::balancer::balanced_opts(
        SetupOptions {
            session,
            corp_extra: corp_scim("directory", ""),
            ssp_extra: "[idp.scim]\ntoken = { file = \"../testbed/scim/ssp-token\" }\nrequests_per_minute = 100000\n".into(),
            extra: ADMIN.into(),
            ..SetupOptions::default()
        },
        "0s",
        "  retries 3\n  option redispatch 1\n",
    )
    .await;
    let public = b.s.app.address.clone();
    let instances: Vec<String> = b
        .ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let corp = Scim::new(&public, CORP_TOKEN);
    let ssp = Scim::new(&public, SSP_TOKEN);

    // The directory has alice in "developers" only; her ID token says "aws-admins" too,
    // but this IdP's groups come from the directory.
    let alice = corp.user("alice@example.com").await;
    corp.group("developers", &[&alice]).await;
    let admins = corp.group("aws-admins", &[]).await;
    let browser = signed_in(&b.s, "alice").await;
    assert_eq!(
        picker_roles(&browser, &public).await,
        Ok(vec!["dev-admin".to_owned()])
    );

    // Okta adds her to aws-admins: her next request, on any instance, has its roles.
    corp.patch(&format!("/Groups/{admins}"), json!([{ "op": "add", "path": "members", "value": [{ "value": alice, "display": "alice@example.com" }] }])).await;
    for base in &instances {
        let roles = picker_roles(&browser, base).await.unwrap();
        assert!(
            roles.contains(&"prod-admin".to_owned()),
            "{base}: {roles:?}"
        );
    }
    // `rolegate explain` with the directory's groups (the token's say nothing here).
    let claims = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        claims.path(),
        r#"{"sub": "alice", "email": "alice@example.com", "groups": []}"#,
    )
    .unwrap();
    let explain = |claims: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_rolegate"))
            .args([
                "explain",
                "--config",
                b.config.to_str().unwrap(),
                "--idp",
                "corp",
                "--claims",
            ])
            .arg(claims)
            .args(["--groups-from-directory", "--format", "json"])
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (out, err) = explain(claims.path());
    assert!(
        err.contains("directory groups: aws-admins, developers")
            || err.contains("directory groups: developers, aws-admins"),
        "{err}"
    );
    assert!(out.contains("prod-admin"), "{out}");
    let home = tempfile::tempdir().unwrap();
    cli_login(home.path(), &public, &browser).await;
    // Each call asks the broker (what credential_process cached is not looked at).
    let creds = |role: &str| {
        let _ = std::fs::remove_dir_all(home.path().join("rolegate/cache"));
        rolegate(
            home.path(),
            &[
                "credentials",
                "--role",
                role,
                "--format",
                "credential-process",
            ],
        )
    };
    let (code, out, err) = creds("prod-admin");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("AccessKeyId"));
    let SdkLogin {
        dir: sdk,
        token: sso_token,
        refresh: sso_refresh,
    } = sdk_login(&public, &browser).await;
    let sdk_creds = |role: &str, account: &str| {
        sso_client(
            sdk.path(),
            &["call", "credentials", &public, &sso_token, role, account],
        )
    };
    assert_eq!(sdk_creds("prod-admin", "111122223333"), "ok");

    // Entra removes her from aws-admins (a list of values): the role is gone at the next
    // request of the browser, the CLI and the SDK, on every instance.
    corp.patch(
        &format!("/Groups/{admins}"),
        json!([{ "op": "Remove", "path": "members", "value": [{ "$ref": null, "value": alice }] }]),
    )
    .await;
    for base in &instances {
        assert_eq!(
            picker_roles(&browser, base).await,
            Ok(vec!["dev-admin".to_owned()]),
            "{base}"
        );
    }
    let (code, _, err) = creds("prod-admin");
    assert_eq!(code, 1, "the CLI is refused prod-admin");
    assert!(
        err.contains("not granted") || err.contains("access_denied") || err.contains("denied"),
        "{err}"
    );
    assert_ne!(
        sdk_creds("prod-admin", "111122223333"),
        "ok",
        "the SDK is refused prod-admin"
    );
    assert_eq!(sdk_creds("dev-admin", "444455556666"), "ok");

    // A SAML session through SimpleSAMLphp, alice provisioned in that IdP's directory.
    let saml_alice = ssp.user("alice@example.test").await;
    let saml_browser = crate::oidc::browser();
    let (response, relay, acs) =
        crate::saml::saml_login_until_acs(&b.s, &saml_browser, "alice", "alice-pw").await;
    let res = saml_browser
        .post(&acs)
        .form(&[("SAMLResponse", &response), ("RelayState", &relay)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let finish = crate::oidc::location(&res);
    let res = saml_browser
        .get(format!("{public}{finish}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(picker_roles(&saml_browser, &public).await.is_ok());

    // Deactivated: Okta's form at corp, Entra's at ssp.
    corp.patch(
        &format!("/Users/{alice}"),
        json!([{ "op": "replace", "value": { "active": false } }]),
    )
    .await;
    ssp.patch(
        &format!("/Users/{saml_alice}"),
        json!([{ "op": "Replace", "path": "active", "value": "False" }]),
    )
    .await;
    for base in &instances {
        assert!(
            picker_roles(&browser, base).await.is_err(),
            "the OIDC session on {base}"
        );
        assert!(
            picker_roles(&saml_browser, base).await.is_err(),
            "the SAML session on {base}"
        );
        let res = Client::new()
            .get(format!("{base}/sso-portal/assignment/accounts"))
            .header("x-amz-sso_bearer_token", &sso_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "the SSO portal on {base}");
    }
    assert_eq!(
        sdk_creds("dev-admin", "444455556666"),
        "UnauthorizedException"
    );
    let start_file = sdk.path().join("start.json");
    assert_eq!(
        sso_client(
            sdk.path(),
            &[
                "call",
                "refresh",
                &public,
                &sso_refresh,
                start_file.to_str().unwrap()
            ]
        ),
        "InvalidGrantException"
    );
    let (code, _, err) = creds("dev-admin");
    assert_eq!(code, 1);
    assert!(err.contains("not logged in"), "{err}");
    let (_, err) = explain(claims.path());
    assert!(err.contains("DEACTIVATED"), "{err}");
    // A new sign-in is refused while she is deactivated.
    let fresh = crate::oidc::browser();
    let cb = crate::oidc::sign_in_from(&b.s, &fresh, "/login/corp", "alice", "alice-pw").await;
    let res = fresh.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("deactivated"));

    let audit: Vec<Json> = std::fs::read_to_string(b.s.audit_path())
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let revoked: Vec<&Json> = audit
        .iter()
        .filter(|r| r["event"] == "revocation" && r["source"] == "scim")
        .collect();
    assert!(
        revoked
            .iter()
            .any(|r| r["by"] == "scim:corp" && r["subject"] == "alice"),
        "{revoked:#?}"
    );
    assert!(
        revoked.iter().any(|r| r["by"] == "scim:ssp"),
        "{revoked:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r["event"] == "access_locked" && r["lock_id"] == "scim:deactivated")
    );
    let mut metrics = String::new();
    for base in &instances {
        metrics += &crate::helpers::page(&Client::new(), format!("{base}/metrics")).await;
    }
    assert!(
        metrics.contains("kind=\"deactivated\""),
        "lock refusals by kind"
    );

    // Reactivated: she signs in again (and holds only what she signs in to now).
    corp.patch(
        &format!("/Users/{alice}"),
        json!([{ "op": "replace", "value": { "active": true } }]),
    )
    .await;
    let again = signed_in(&b.s, "alice").await;
    assert_eq!(
        picker_roles(&again, &public).await,
        Ok(vec!["dev-admin".to_owned()])
    );
}

/// With `require_provisioned`, a person the directory does not know is refused at
/// sign-in (and a known, active one is let in).
#[tokio::test]
async fn require_provisioned_refuses_people_the_directory_does_not_know() {
    let s = spawn_with(SetupOptions {
        corp_extra: corp_scim("both", "require_provisioned = true"),
        ..SetupOptions::default()
    })
    .await;
    let scim = Scim::new(&s.app.address, CORP_TOKEN);
    scim.user("alice@example.com").await;
    let alice = crate::lifecycle::signed_in(&s, "alice").await;
    assert!(picker_roles(&alice, &s.app.address).await.is_ok());
    let bob = crate::oidc::browser();
    let cb = crate::oidc::sign_in_from(&s, &bob, "/login/corp", "bob", "bob-pw").await;
    let res = bob.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("identity provider"));
    assert!(
        s.audit_records()
            .iter()
            .any(|r| r["event"] == "access_locked"
                && r["lock_id"] == "scim:not-provisioned"
                && r["subject"] == "bob")
    );
}
