//! The server skeleton as a client sees it.

use crate::helpers::{RedisServer, config_from, spawn_app, unique_prefix};

#[tokio::test]
async fn healthz_and_readyz_answer_on_the_memory_store() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;

    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "alive"
    );

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"]["backend"], "memory");
}

#[tokio::test]
async fn readyz_follows_redis_going_away_and_coming_back_while_healthz_stays_up() {
    let mut redis = RedisServer::start();
    let session = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"",
        redis.url(),
        unique_prefix("ready")
    );
    let app = spawn_app(config_from(&session, "")).await;
    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "ready with Redis up"
    );

    redis.stop();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503, "not ready with Redis down");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["store"]["status"], "unavailable");
    assert_eq!(app.get("/healthz").await.status(), 200, "still alive");
}

#[tokio::test]
async fn a_broker_whose_redis_is_down_at_start_still_starts_but_is_not_ready() {
    let port = crate::helpers::free_port();
    let session = format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/\"");
    let app = spawn_app(config_from(&session, "")).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 503);
}

#[tokio::test]
async fn readyz_fails_once_shutdown_begins() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;
    let client = app.client.clone();
    let url = format!("{}/readyz", app.address);
    app.stop().await;
    // The listener is closed after stop; either refused or 503 shows we are not ready.
    match client.get(&url).send().await {
        Ok(res) => assert_eq!(res.status(), 503),
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;
    app.get("/healthz").await;
    app.get("/healthz").await;
    app.get("/no/such/page").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"rolegate_http_requests_total{method="GET",route="/healthz",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404""#),
        "unknown paths share one label: {text}"
    );
    assert!(
        text.contains("rolegate_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_security_headers() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;
    let res = app.get_html("/nowhere").await;
    assert_eq!(res.status(), 404);
    let h = res.headers();
    let id = h["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS on plain http"
    );
    let html = res.text().await.unwrap();
    assert!(html.contains("Page not found"), "{html}");
    assert!(html.contains(&id), "the error page shows the request id");
    assert!(html.contains("href=\"/\""), "offers a way back");
}

#[tokio::test]
async fn hsts_is_sent_when_the_public_url_is_https() {
    let extra = "";
    let mut cfg = config_from("store = \"memory\"", extra);
    cfg.server.public_url = "https://broker.example.com".parse().unwrap();
    let app = spawn_app(cfg).await;
    let res = app.get("/healthz").await;
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[tokio::test]
async fn programs_get_json_errors_and_browsers_get_pages() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;
    let res = app.get("/api/nothing").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["request_id"].as_str().is_some_and(|s| s.len() == 32));
    let res = app.get_html("/api/nothing").await;
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn the_stylesheet_is_served() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;
    let res = app.get("/static/rolegate.css").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn head_is_answered_like_get_and_the_icon_is_served() {
    let app = spawn_app(config_from("store = \"memory\"", "")).await;
    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/static/rolegate.css", 200),
    ] {
        let res = app
            .client
            .head(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "HEAD {path}");
        assert!(res.text().await.unwrap().is_empty(), "HEAD {path}: no body");
    }
    // An unknown path: a plain 404, not a JSON body.
    let res = app
        .client
        .head(format!("{}/nowhere", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        res.headers()
            .get("content-type")
            .is_none_or(|c| !c.to_str().unwrap().contains("json"))
    );
    for path in ["/favicon.ico", "/static/favicon.svg"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "image/svg+xml");
    }
}

#[tokio::test]
async fn the_csp_names_each_form_target_once() {
    // The test broker's federation endpoint and console share one origin (as the demo's).
    let s = crate::helpers::spawn_with_oidc().await;
    let res = s.app.get("/healthz").await;
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let form_action = csp
        .split(';')
        .find(|d| d.trim().starts_with("form-action"))
        .unwrap()
        .trim()
        .to_owned();
    let sources: Vec<&str> = form_action.split_whitespace().skip(1).collect();
    let mut unique = sources.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(sources.len(), unique.len(), "{form_action}");
}

#[tokio::test]
async fn the_csp_lets_forms_reach_the_federation_endpoint_and_the_console() {
    // Separate origins, so that a missing (or wrong) one cannot hide behind the other.
    let config = crate::helpers::config_with_aws(
        "store = \"memory\"",
        "federation_url = \"https://signin.example.test/federation\"\nconsole_url = \"https://console.example.test/console/\"",
        "",
    );
    let app = crate::helpers::spawn_app(config).await;
    let res = app.get("/healthz").await;
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    let form_action: Vec<&str> = csp
        .split(';')
        .find(|d| d.trim().starts_with("form-action"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    for origin in [
        "https://signin.example.test",
        "https://console.example.test",
    ] {
        assert!(form_action.contains(&origin), "{origin} in {form_action:?}");
    }
}
