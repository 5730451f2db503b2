//! Errors at the HTTP edge: an HTML page for people, RFC 6749-style JSON for APIs.
//!
//! Both carry a human message and the request id, never internals: the cause is logged
//! (with the request id) where the error is created, not rendered.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::pages::ErrorPage;

/// An error shown to a person as a page.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub request_id: String,
}

impl PageError {
    pub fn new(
        status: StatusCode,
        title: impl Into<String>,
        message: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Self {
            status,
            title: title.into(),
            message: message.into(),
            request_id: request_id.to_owned(),
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.title)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let page = ErrorPage {
            title: &self.title,
            message: &self.message,
            request_id: &self.request_id,
            status: self.status.as_u16(),
        };
        match page.render() {
            Ok(html) => HttpResponse::build(self.status)
                .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
                .insert_header((CACHE_CONTROL, "no-store"))
                .body(html),
            // A template that fails to render is a bug; still answer with the status.
            Err(_) => HttpResponse::build(self.status)
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body(format!("{} (request id {})", self.title, self.request_id)),
        }
    }
}

/// An error answered to a program, as `{"error": CODE, "error_description": TEXT}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    pub request_id: String,
    /// Sent as `Retry-After` (rate limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            request_id: request_id.to_owned(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((CACHE_CONTROL, "no-store"));
        if let Some(secs) = self.retry_after {
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        res.json(serde_json::json!({
            "error": self.code,
            "error_description": self.description,
            "request_id": self.request_id,
        }))
    }
}
