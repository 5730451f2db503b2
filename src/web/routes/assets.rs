//! The stylesheet and the one small script (copy buttons), compiled into the binary so a
//! deployment is a single file. Pages work without the script.

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
