//! Webhooks for elevation events: a Slack-compatible incoming-webhook message, or the
//! event as JSON signed with HMAC-SHA256. Sent by a background task with a timeout and
//! retries, never on a request's path: a receiver that hangs or fails delays and fails
//! nothing; its failures are logged and counted.
//!
//! The JSON form carries `X-Rolegate-Timestamp` (Unix seconds) and
//! `X-Rolegate-Signature: v1=HEX`, the HMAC-SHA256 with the webhook's secret of
//! `v1:TIMESTAMP:BODY`; a receiver recomputes it and refuses old timestamps.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::config::{Webhook, WebhookFormat};
use crate::metrics::{KindLabels, Metrics};
use crate::store::now_unix;

/// Events waiting to be sent, at most; past it, new ones are dropped (and counted).
const QUEUE: usize = 1000;
const ATTEMPTS: u32 = 3;

/// One event for the webhooks: its kind (`request`, `decision`, `start`, `end`,
/// `break_glass`) and its facts.
#[derive(Debug, Clone)]
pub struct Notice {
    pub event: &'static str,
    pub text: String,
    pub data: Json,
}

/// The sender side; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notice>>,
    metrics: Arc<Metrics>,
}

/// The signature of `body` sent at `timestamp` with `secret` (`v1=HEX`).
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("v1:{timestamp}:{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

impl Notifier {
    /// Starts the sender task (when any webhook is configured).
    pub fn start(hooks: Vec<Webhook>, metrics: Arc<Metrics>) -> Self {
        if hooks.is_empty() {
            return Self { tx: None, metrics };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(hooks, rx, metrics.clone()));
        Self {
            tx: Some(tx),
            metrics,
        }
    }

    /// Queues a notice; returns at once whatever the receivers do.
    pub fn send(&self, notice: Notice) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(notice).is_err() {
            tracing::warn!("webhook queue full: a notice was dropped");
            self.metrics
                .webhook_failures
                .get_or_create(&KindLabels {
                    kind: "dropped".into(),
                })
                .inc();
        }
    }
}

async fn run(hooks: Vec<Webhook>, mut rx: mpsc::Receiver<Notice>, metrics: Arc<Metrics>) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks disabled: no HTTP client");
            return;
        }
    };
    while let Some(notice) = rx.recv().await {
        for hook in hooks
            .iter()
            .filter(|h| h.events.is_empty() || h.events.iter().any(|e| e == notice.event))
        {
            // Each delivery on its own task: a slow receiver does not hold up the others.
            let (client, hook, notice, metrics) = (
                client.clone(),
                hook.clone(),
                notice.clone(),
                metrics.clone(),
            );
            tokio::spawn(async move { deliver(&client, &hook, &notice, &metrics).await });
        }
    }
}

async fn deliver(client: &reqwest::Client, hook: &Webhook, notice: &Notice, metrics: &Metrics) {
    let body = match hook.format {
        WebhookFormat::Slack => json!({ "text": notice.text }).to_string(),
        WebhookFormat::Json => json!({
            "event": notice.event,
            "text": notice.text,
            "time": now_unix(),
            "data": notice.data,
        })
        .to_string(),
    };
    for attempt in 1..=ATTEMPTS {
        let timestamp = now_unix();
        let mut req = client
            .post(hook.url.clone())
            .timeout(hook.timeout)
            .header("content-type", "application/json")
            .header("user-agent", "rolegate-webhook")
            .body(body.clone());
        if let (WebhookFormat::Json, Some(secret)) = (hook.format, &hook.secret) {
            req = req
                .header("x-rolegate-timestamp", timestamp.to_string())
                .header(
                    "x-rolegate-signature",
                    signature(secret.expose_secret(), timestamp, &body),
                );
        }
        let outcome = match req.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) if e.is_timeout() => "timed out".to_owned(),
            Err(_) => "unreachable".to_owned(),
        };
        tracing::warn!(
            host = hook.url.host_str().unwrap_or(""),
            event = notice.event,
            attempt,
            outcome,
            "webhook delivery failed"
        );
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
    }
    metrics
        .webhook_failures
        .get_or_create(&KindLabels {
            kind: notice.event.into(),
        })
        .inc();
    tracing::error!(
        host = hook.url.host_str().unwrap_or(""),
        event = notice.event,
        "webhook not delivered after {ATTEMPTS} attempts"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_version_time_and_body() {
        // echo -n 'v1:1700000000:{}' | openssl dgst -sha256 -hmac 'k'
        assert_eq!(
            super::signature("k", 1_700_000_000, "{}"),
            "v1=b7a618d594a8d858f87fe5764824cae5951987d832716b2d945d937926ab7b30"
        );
    }
}
