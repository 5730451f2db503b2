//! Prometheus metrics, exposed as text at `/metrics`: HTTP requests, credential
//! issuances and STS latency.
//!
//! Routes are labelled by their pattern (`/saml/{idp}/acs`), never the raw path, so a
//! scanner probing random URLs cannot blow up the label cardinality.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuanceLabels {
    pub role: String,
    pub mode: String,
    pub path: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub idp: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: String,
}

/// One STS call's region and how it ended: `success`, `refused` (answered, no
/// credentials), `failed_over` (the next region was tried).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StsRegionLabels {
    pub region: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    /// Credential issuances by role, STS mode, client path and outcome.
    pub issuances: Family<IssuanceLabels, Counter>,
    /// STS calls by region and outcome (failovers show as `failed_over`).
    pub sts_regions: Family<StsRegionLabels, Counter>,
    /// STS call latency (retries included) by mode.
    pub sts_latency: Family<ModeLabels, Histogram>,
    /// Refused SAML responses by IdP and reason.
    pub saml_rejections: Family<ReasonLabels, Counter>,
    /// Failed OIDC sign-ins by IdP and reason (verification failures apart from transport).
    pub oidc_rejections: Family<ReasonLabels, Counter>,
    /// Token exchanges by app and outcome (`success` or the refusal's error code).
    pub token_exchanges: Family<AppLabels, Counter>,
    /// Live access in the index by kind and client path (from the directory, refreshed
    /// every 30 s).
    pub live: Family<LiveLabels, Gauge>,
    /// Items revoked, by who ended them (`admin`, `cli`, `idp`, `scim`).
    pub revocations: Family<SourceLabels, Counter>,
    /// Active locks.
    pub locks: Gauge,
    /// Requests refused because a lock applies, by what was locked (`person`, `role`).
    pub lock_refusals: Family<KindLabels, Counter>,
    /// Re-validations at the IdP by outcome.
    pub revalidations: Family<OutcomeLabels, Counter>,
    /// Recalls of issued credentials on a role by outcome (`applied`, `widened`,
    /// `failed`), and statements swept (`swept`).
    pub recalls: Family<OutcomeLabels, Counter>,
    /// Recalls not applied yet (failed and waiting for a retry).
    pub recalls_pending: Gauge,
    /// SCIM changes by resource and operation.
    pub provisioning: Family<KindLabels, Counter>,
    /// Just-in-time events (`request`, `approved`, `denied`, `start`, `end`,
    /// `break_glass`, `refused`).
    pub elevations: Family<KindLabels, Counter>,
    /// Webhook notices not delivered (by event; `dropped` when the queue was full).
    pub webhook_failures: Family<KindLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LiveLabels {
    pub kind: String,
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rolegate");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let issuances = Family::<IssuanceLabels, Counter>::default();
        let sts_latency = Family::<ModeLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register("issuances", "AWS credential issuances", issuances.clone());
        let sts_regions = Family::<StsRegionLabels, Counter>::default();
        registry.register(
            "sts_region_calls",
            "AWS STS calls by region and outcome",
            sts_regions.clone(),
        );
        registry.register(
            "sts_call_duration_seconds",
            "AWS STS call latency",
            sts_latency.clone(),
        );
        let saml_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "saml_rejections",
            "Refused SAML responses",
            saml_rejections.clone(),
        );
        let oidc_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "oidc_rejections",
            "Failed OIDC sign-ins (verification failures and IdP or transport errors, by reason)",
            oidc_rejections.clone(),
        );
        let token_exchanges = Family::<AppLabels, Counter>::default();
        registry.register(
            "token_exchanges",
            "Token exchanges by app and outcome",
            token_exchanges.clone(),
        );
        let live = Family::<LiveLabels, Gauge>::default();
        registry.register(
            "live_access",
            "Live sessions, logins and pending approvals by kind and client path",
            live.clone(),
        );
        let revocations = Family::<SourceLabels, Counter>::default();
        registry.register(
            "revocations",
            "Items of access revoked, by who ended them",
            revocations.clone(),
        );
        let locks = Gauge::default();
        registry.register("locks_active", "Active locks", locks.clone());
        let lock_refusals = Family::<KindLabels, Counter>::default();
        registry.register(
            "lock_refusals",
            "Requests refused by a lock, by what was locked",
            lock_refusals.clone(),
        );
        let revalidations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "revalidations",
            "Re-validations at the IdP by outcome",
            revalidations.clone(),
        );
        let recalls = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "recalls",
            "Recalls of issued credentials on a role, by outcome",
            recalls.clone(),
        );
        let recalls_pending = Gauge::default();
        registry.register(
            "recalls_pending",
            "Recalls not applied yet (waiting for a retry)",
            recalls_pending.clone(),
        );
        let provisioning = Family::<KindLabels, Counter>::default();
        registry.register(
            "provisioning_changes",
            "SCIM changes to the IdPs' directories, by resource and operation",
            provisioning.clone(),
        );
        let elevations = Family::<KindLabels, Counter>::default();
        registry.register(
            "elevations",
            "Just-in-time access events",
            elevations.clone(),
        );
        let webhook_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "webhook_failures",
            "Webhook notices not delivered",
            webhook_failures.clone(),
        );
        Self {
            elevations,
            webhook_failures,
            recalls,
            recalls_pending,
            provisioning,
            live,
            revocations,
            locks,
            lock_refusals,
            revalidations,
            registry,
            requests,
            latency,
            issuances,
            sts_latency,
            sts_regions,
            saml_rejections,
            oidc_rejections,
            token_exchanges,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
