//! rolegate's integration tests: one binary (fewer link steps), one module per feature.
//! Everything runs against real components started by `helpers` (redis-server on a free
//! loopback port) and the real `rolegate` binary or `Application` on port 0.

mod helpers;

mod accounts;

/// Three instances behind HAProxy: a rolling restart under load loses no request.
mod balancer;
/// The login page in real headless Chromium.
mod browser;
/// Checks only an attacker's request reaches, each guarded by a test.
mod checks;
/// `rolegate check-config`, `explain` and `serve` as a user runs them.
mod cli;
/// The CLI as a developer runs it: real login processes, Chromium approvals, AWS CLI.
mod cli_client;
/// The CLI at its edges: an unreachable broker, a piped device login, a forged loopback
/// callback, tokens in the Secret Service.
mod cli_edges;
/// The CLI login's broker side: loopback and device flows, tokens, the bearer API.
mod cli_login;
mod cli_tools;
/// Configuration errors: all reported, with origin, key path and line.
mod config;
mod console;
mod container;
/// DPoP (RFC 9449) item by item, and the challenges of a refused token.
mod dpop;
/// Just-in-time elevation: Chromium, the CLI, boto3, concurrency, webhooks, bad input.
mod elevation;
/// Token exchange (RFC 8693) for apps, with DPoP, rate limits and hostile subject tokens.
mod exchange;
/// One test per security check a mutation would otherwise survive.
mod guards;
/// The same for the OAuth server, the device flow, registered clients and subject tokens.
mod guards_oauth;
/// `/healthz`, `/readyz`, `/metrics`, security headers, error pages.
mod health;
/// STS issuance, console sign-in, CLI credentials, audit.
mod issuance;
/// The layer check: no module uses a module of its own or a higher layer.
mod layers;
/// The lifecycle of access: revoke in the admin area, locks, re-validation at the IdP.
mod lifecycle;
/// The mapping rules through the real config parser, and their properties.
mod mapping;
/// The OAuth endpoints at their edges: unreadable requests, authorization errors, code
/// replay, exchange refusals, the audit of apps, nothing usable in the store.
mod oauth_edges;
/// OIDC sign-in against a real OpenID Provider, and the hostile cases.
mod oidc;
/// ID-token checks beyond the crate's: nbf, max age, at_hash, malformed tokens, RFC 9207.
mod oidc_checks;
/// ID tokens presented by a client (an app's own login), verified for an audience.
mod presented_tokens;
/// Recalling issued credentials with moto's IAM (several accounts).
mod recall;
/// Requests the access core refuses before AWS: each answered, audited, nothing issued.
mod refusals;
/// SAML sign-in against a real IdP (SimpleSAMLphp).
mod saml;
/// The SAML attack suite (XSW, references, DTDs, replay, time, audience...).
mod saml_attacks;
/// Signed SAML test responses from templates (xmlsec1 with the tests' key).
mod saml_fixtures;
/// A mutation fuzzer over the SAML pre-parse and verification.
mod saml_fuzz;
/// Several instances on one Redis Cluster: every hop of a flow on another instance.
mod scale;
/// SCIM provisioning: compliance, Okta and Entra request shapes, bad input, effects.
mod scim;
/// The shell credential forms evaluated by real shells, then the real AWS CLI.
mod shells;
/// A single-page app in Chromium exchanging its token across origins (CORS).
mod spa;
/// The AWS SSO OIDC and portal APIs with boto3/botocore as the client.
mod sso;
/// The SSO OIDC authorization-code grant and the bearer rate limit.
mod sso_code;
/// The store contract, run against both backends.
mod store;
/// STS in two regions: failover under load, the breaker, the settings.
mod sts_regions;
