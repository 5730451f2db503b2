//! One log story per state-store outage instead of one ERROR line per refused request
//! (at modest load that was about 120 lines a second): the first failure is logged as an
//! ERROR, a WARN summary with counts follows every [`SUMMARY_EVERY`] while it lasts, and
//! its end is logged with the totals. Requests are refused (fail closed) either way; this
//! only decides what the log says.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;

/// How often a continuing outage is summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct OutageLog {
    /// Fast path for the common case: no lock on success while the store is up.
    down: AtomicBool,
    state: Mutex<Option<Outage>>,
}

struct Outage {
    since: Instant,
    failures: u64,
    failures_since_summary: u64,
    last_summary: Instant,
}

impl OutageLog {
    /// A store call failed because the backend is unavailable.
    pub fn failure(&self, error: &StoreError) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.as_mut() {
            None => {
                *state = Some(Outage {
                    since: now,
                    failures: 1,
                    failures_since_summary: 1,
                    last_summary: now,
                });
                self.down.store(true, Ordering::Relaxed);
                tracing::error!(%error, "state store unavailable: sign-ins, approvals and issuances are refused (503) until it is back; further failures are summarised every 30 s");
            }
            Some(o) => {
                o.failures += 1;
                o.failures_since_summary += 1;
                if now.duration_since(o.last_summary) >= SUMMARY_EVERY {
                    tracing::warn!(
                        %error,
                        down_for_s = now.duration_since(o.since).as_secs(),
                        failed_calls = o.failures_since_summary,
                        "state store still unavailable"
                    );
                    o.failures_since_summary = 0;
                    o.last_summary = now;
                }
            }
        }
    }

    /// A store call succeeded: ends an outage, if there was one.
    pub fn success(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = state.take() {
            self.down.store(false, Ordering::Relaxed);
            tracing::info!(
                down_for_s = o.since.elapsed().as_secs(),
                failed_calls = o.failures,
                "state store available again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_once_counts_and_ends() {
        let log = OutageLog::default();
        log.success();
        assert!(!log.down.load(Ordering::Relaxed));
        for _ in 0..100 {
            log.failure(&StoreError::Unavailable("connection refused".into()));
        }
        assert!(log.down.load(Ordering::Relaxed));
        assert_eq!(log.state.lock().unwrap().as_ref().unwrap().failures, 100);
        log.success();
        assert!(!log.down.load(Ordering::Relaxed));
        assert!(log.state.lock().unwrap().is_none());
    }
}
