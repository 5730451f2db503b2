//! Askama page structs. Templates live in `templates/`; every value is HTML-escaped by
//! askama. Secrets are never fields of a page struct.

use askama::Template;

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub request_id: &'a str,
    pub status: u16,
}
