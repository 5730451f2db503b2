//! Answers for requests no route matched: a page for browsers, JSON for programs.

use actix_web::http::StatusCode;
use actix_web::http::header::ACCEPT;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::web::{ApiError, PageError, RequestId};

pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// Whether the client is a browser (asks for HTML) rather than a program.
pub fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let id = request_id(&req);
    // HEAD has no body to carry a page or JSON: the status says it all.
    if req.method() == actix_web::http::Method::HEAD {
        return HttpResponse::NotFound()
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .finish();
    }
    if wants_html(&req) {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
            &id,
        )
        .error_response()
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint", &id).error_response()
    }
}
