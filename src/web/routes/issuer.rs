//! The broker as an OIDC issuer for `web_identity` mode: discovery document and JWKS,
//! which AWS fetches from the public URL. Served only when `[web_identity]` is configured.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};

use crate::web::AppState;

pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    match state.access.web_identity_documents() {
        Some((discovery, _)) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "public, max-age=300"))
            .json(discovery),
        None => HttpResponse::NotFound().finish(),
    }
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    match state.access.web_identity_documents() {
        Some((_, jwks)) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "public, max-age=300"))
            .json(jwks),
        None => HttpResponse::NotFound().finish(),
    }
}
