//! The stylesheet, the icon and the one small script (copy buttons, local times),
//! compiled into the binary so a deployment is a single file. Pages work without the
//! script.

use actix_web::HttpResponse;
use actix_web::http::header::CACHE_CONTROL;

const STYLESHEET: &str = include_str!("../../../static/rolegate.css");

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

const COPY_SCRIPT: &str = include_str!("../../../static/copy.js");

pub async fn copy_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(COPY_SCRIPT)
}

const ICON: &str = include_str!("../../../static/favicon.svg");

/// `/favicon.ico` and `/static/favicon.svg`: the icon browsers ask for on every page.
pub async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((CACHE_CONTROL, "public, max-age=86400"))
        .body(ICON)
}
