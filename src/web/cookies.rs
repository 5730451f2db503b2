//! Cookies: the session cookie (an opaque id; the record is server-side in the access
//! core) and the short-lived login cookie that binds a sign-in to the browser that
//! started it. Both are `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with the
//! `__Host-` prefix when the public URL is https.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};

use crate::config::Config;

pub fn session_cookie_name(config: &Config) -> &'static str {
    // `__Host-` binds the cookie to this exact origin; browsers only accept it over https.
    if config.server.is_https() {
        "__Host-rolegate"
    } else {
        "rolegate_session"
    }
}

pub fn login_cookie_name(config: &Config) -> &'static str {
    if config.server.is_https() {
        "__Host-rolegate_login"
    } else {
        "rolegate_login"
    }
}

/// A cookie with rolegate's flags: HttpOnly, SameSite=Lax, Path=/, Secure on https.
pub fn cookie(
    config: &Config,
    name: &'static str,
    value: String,
    max_age: Option<Duration>,
) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.server.is_https())
        .finish();
    if let Some(age) = max_age {
        c.set_max_age(CookieDuration::seconds(age.as_secs() as i64));
    }
    c
}

pub fn removal_cookie(config: &Config, name: &'static str) -> Cookie<'static> {
    let mut c = cookie(config, name, String::new(), None);
    c.make_removal();
    c
}

/// The session id the request's cookie carries, if any.
pub fn session_id(req: &HttpRequest, config: &Config) -> Option<String> {
    req.cookie(session_cookie_name(config))
        .map(|c| c.value().to_owned())
}

/// The browser-binding value of the request's login cookie, if any.
pub fn login_binding(req: &HttpRequest, config: &Config) -> Option<String> {
    req.cookie(login_cookie_name(config))
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(public_url: &str) -> Config {
        let text = format!(
            "[server]\npublic_url = \"{public_url}\"\n[[idp]]\nid = \"corp\"\nkind = \"oidc\"\nissuer = \"https://idp.example.com\"\nclient_id = \"broker\"\n[[account]]\nid = \"a\"\nnumber = \"111122223333\"\n"
        );
        crate::config::from_str(&text, std::path::Path::new("t.toml"), Vec::new()).unwrap()
    }

    /// On https both cookies carry the `__Host-` prefix: the browser then accepts them
    /// only from this host, Secure, with Path=/ (no sibling subdomain can plant one).
    #[test]
    fn cookie_names_carry_the_host_prefix_on_https() {
        let https = config("https://aws.example.com");
        assert_eq!(session_cookie_name(&https), "__Host-rolegate");
        assert_eq!(login_cookie_name(&https), "__Host-rolegate_login");
        let http = config("http://127.0.0.1:8080");
        assert_eq!(session_cookie_name(&http), "rolegate_session");
        assert_eq!(login_cookie_name(&http), "rolegate_login");
        let c = cookie(&https, login_cookie_name(&https), "v".into(), None);
        assert_eq!(c.secure(), Some(true));
        assert_eq!(c.path(), Some("/"));
    }
}
