//! A container-credentials endpoint on the developer's machine (`rolegate serve-credentials`,
//! `rolegate exec --ecs-server`), the way aws-vault's and weep's ECS servers work.
//!
//! Every AWS SDK reads credentials from `AWS_CONTAINER_CREDENTIALS_FULL_URI`, sending
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or the file `…_TOKEN_FILE` names) as the
//! `Authorization` header, and refreshes them itself before they expire. This endpoint
//! answers `GET /role/NAME` for the roles it was started for, from the CLI's credential
//! cache ([`super::commands::credentials_json_for_sdk`]), so SDK processes, containers and
//! `credential_process` profiles on one machine share one set of credentials per role.
//!
//! The token is random per run and compared in constant time (as SHA-256 digests: the
//! client build has no constant-time primitive of its own). Requests without it, with
//! another, for another path or method are refused with a JSON body the SDKs show.
//! Browsers cannot use the endpoint from a web page: the token header needs a CORS
//! preflight, which is never answered.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::CliError;
use super::commands::credentials_json_for_sdk;

/// Worker threads answering requests (each blocks on the broker only when a role's
/// credentials must be fetched; the cache's file lock makes that happen once).
const WORKERS: usize = 4;

/// What a request gets, decided without I/O (so every refusal is a unit test).
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Credentials for this role.
    Serve(&'a str),
    /// A refusal: HTTP status, a code and a message for the SDK's error.
    Refuse(u16, &'static str, String),
}

/// The roles one endpoint serves and the token its clients must send.
pub struct EndpointRules {
    roles: Vec<String>,
    token_digest: [u8; 32],
}

impl EndpointRules {
    pub fn new(roles: Vec<String>, token: &str) -> Self {
        Self {
            roles,
            token_digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// The decision for one request: the token first (nothing about roles is told to a
    /// caller without it), then the method, then the path.
    pub fn route<'a>(&'a self, method: &str, path: &str, authorization: Option<&str>) -> Route<'a> {
        let presented = authorization.map(|a| <[u8; 32]>::from(Sha256::digest(a.trim())));
        if presented != Some(self.token_digest) {
            return Route::Refuse(
                401,
                "Unauthorized",
                "send the endpoint's token in the Authorization header (AWS_CONTAINER_AUTHORIZATION_TOKEN)"
                    .into(),
            );
        }
        if method != "GET" {
            return Route::Refuse(405, "MethodNotAllowed", "only GET is answered".into());
        }
        let path = path.split('?').next().unwrap_or("");
        match path.strip_prefix("/role/") {
            Some(name) => match self.roles.iter().find(|r| r.as_str() == name) {
                Some(r) => Route::Serve(r),
                None => Route::Refuse(
                    404,
                    "NotFound",
                    format!(
                        "this endpoint serves {}; start it with --role {name} for that role",
                        self.served()
                    ),
                ),
            },
            None => Route::Refuse(
                404,
                "NotFound",
                format!("ask for /role/NAME; this endpoint serves {}", self.served()),
            ),
        }
    }

    fn served(&self) -> String {
        self.roles
            .iter()
            .map(|r| format!("/role/{r}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A random token for one run of the endpoint (32 bytes, URL-safe base64).
pub fn random_token() -> String {
    super::login::random_b64(32)
}

/// The container-credentials body of the broker's credentials JSON.
pub fn container_body(j: &Json) -> Json {
    json!({
        "AccessKeyId": j["AccessKeyId"],
        "SecretAccessKey": j["SecretAccessKey"],
        "Token": j["SessionToken"],
        "Expiration": j["Expiration"],
    })
}

/// A running endpoint; stops (its threads end) when dropped.
pub struct CredentialEndpoint {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    token: String,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl CredentialEndpoint {
    /// Binds `listen` and answers for `roles` (credentials of `duration`, else the role's
    /// maximum) until dropped.
    pub fn start(
        listen: SocketAddr,
        roles: Vec<String>,
        duration: Option<String>,
    ) -> Result<Self, CliError> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| CliError::Login(format!("cannot listen on {listen}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| CliError::Login(format!("cannot listen on {listen}")))?;
        let server = Arc::new(server);
        let token = random_token();
        let rules = Arc::new(EndpointRules::new(roles, &token));
        let duration = Arc::new(duration);
        let workers = (0..WORKERS)
            .map(|_| {
                let (server, rules, duration) = (server.clone(), rules.clone(), duration.clone());
                std::thread::spawn(move || {
                    for request in server.incoming_requests() {
                        answer(request, &rules, duration.as_deref());
                    }
                })
            })
            .collect();
        Ok(Self {
            server,
            addr,
            token,
            workers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URI an SDK uses for `role`, with `host` (default: the address listened on).
    pub fn uri(&self, role: &str, host: Option<&str>) -> String {
        let host = host.map_or_else(|| self.addr.ip().to_string(), str::to_owned);
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        format!("http://{host}:{}/role/{role}", self.addr.port())
    }

    /// Serves until the process is stopped.
    pub fn wait(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for CredentialEndpoint {
    fn drop(&mut self) {
        for _ in 0..WORKERS {
            self.server.unblock();
        }
    }
}

fn answer(request: tiny_http::Request, rules: &EndpointRules, duration: Option<&str>) {
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let (status, body) = match rules.route(&method, request.url(), authorization.as_deref()) {
        Route::Serve(role) => match credentials_json_for_sdk(role, duration) {
            Ok(j) => (200, container_body(&j)),
            Err(e) => {
                let status = match e {
                    CliError::NotLoggedIn => 401,
                    CliError::Unreachable { .. } => 502,
                    _ => 403,
                };
                eprintln!("rolegate: credentials for {role}: {e}");
                (
                    status,
                    json!({ "code": "CredentialsUnavailable", "message": e.to_string() }),
                )
            }
        },
        Route::Refuse(status, code, message) => {
            eprintln!("rolegate: refused {method} {}: {message}", request.url());
            (status, json!({ "code": code, "message": message }))
        }
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("a static header is valid");
    let response = tiny_http::Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header);
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EndpointRules {
        EndpointRules::new(vec!["dev".into(), "prod-readonly".into()], "secret-token")
    }

    #[test]
    fn only_the_token_opens_the_endpoint() {
        let r = rules();
        for auth in [
            None,
            Some(""),
            Some("secret-tokeN"),
            Some("Bearer secret-token"),
        ] {
            assert!(
                matches!(r.route("GET", "/role/dev", auth), Route::Refuse(401, ..)),
                "{auth:?}"
            );
        }
        assert_eq!(
            r.route("GET", "/role/dev", Some("secret-token")),
            Route::Serve("dev")
        );
        // Without the token, nothing about the roles is told.
        let Route::Refuse(_, _, msg) = r.route("GET", "/role/other", None) else {
            panic!()
        };
        assert!(!msg.contains("dev"), "{msg}");
    }

    #[test]
    fn one_role_per_path_and_only_get() {
        let r = rules();
        let t = Some("secret-token");
        assert_eq!(
            r.route("GET", "/role/prod-readonly?x=1", t),
            Route::Serve("prod-readonly")
        );
        assert!(matches!(
            r.route("POST", "/role/dev", t),
            Route::Refuse(405, ..)
        ));
        for path in ["/", "/role/", "/role/admin", "/role/dev/x", "/dev"] {
            let Route::Refuse(404, _, msg) = r.route("GET", path, t) else {
                panic!("{path}")
            };
            assert!(msg.contains("/role/dev, /role/prod-readonly"), "{msg}");
        }
    }

    #[test]
    fn the_body_has_the_container_credentials_fields() {
        let j = json!({"AccessKeyId": "AK", "SecretAccessKey": "S", "SessionToken": "T",
            "Expiration": "2026-01-01T00:00:00Z", "RoleArn": "arn:aws:iam::1:role/R", "Region": "x"});
        let b = container_body(&j);
        assert_eq!(b["Token"], "T");
        assert_eq!(b["AccessKeyId"], "AK");
        assert!(b.get("Region").is_none());
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
