//! One log story per state-store outage instead of one ERROR line per refused request
//! (at modest load that was about 120 lines a second): the first failure is logged as an
//! ERROR, a WARN summary with counts follows every [`SUMMARY_EVERY`] while it lasts, and
//! its end is logged with the totals. An outage ends only once the store has answered
//! without a failure for [`RECOVERED_AFTER`]: during a failover the store flaps (some calls
//! succeed, the next fail), and each flap is counted in the summary instead of starting a
//! new story. Requests are refused (fail closed) either way; this only decides what the log
//! says.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;

/// How often a continuing outage is summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// How long the store must answer without a failure before an outage is over.
pub const RECOVERED_AFTER: Duration = Duration::from_secs(5);

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
    /// Since when calls have succeeded (no failure since); `None` while failing.
    healthy_since: Option<Instant>,
    /// Times the store answered again and then failed again within this outage.
    flaps: u64,
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
                    healthy_since: None,
                    flaps: 0,
                });
                self.down.store(true, Ordering::Relaxed);
                tracing::error!(%error, "state store unavailable: sign-ins, approvals and issuances are refused (503) until it is back; further failures are summarised every 30 s");
            }
            Some(o) => {
                o.failures += 1;
                o.failures_since_summary += 1;
                if o.healthy_since.take().is_some() {
                    o.flaps += 1;
                }
                if now.duration_since(o.last_summary) >= SUMMARY_EVERY {
                    tracing::warn!(
                        %error,
                        down_for_s = now.duration_since(o.since).as_secs(),
                        failed_calls = o.failures_since_summary,
                        flaps = o.flaps,
                        "state store still unavailable"
                    );
                    o.failures_since_summary = 0;
                    o.last_summary = now;
                }
            }
        }
    }

    /// A store call succeeded: ends an outage once the store has stayed healthy for
    /// [`RECOVERED_AFTER`].
    pub fn success(&self) {
        self.success_at(Instant::now());
    }

    fn success_at(&self, now: Instant) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(o) = state.as_mut() else {
            return;
        };
        let since = *o.healthy_since.get_or_insert(now);
        if now.duration_since(since) < RECOVERED_AFTER {
            return;
        }
        if let Some(o) = state.take() {
            self.down.store(false, Ordering::Relaxed);
            tracing::info!(
                down_for_s = since.duration_since(o.since).as_secs(),
                failed_calls = o.failures,
                flaps = o.flaps,
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
        let t0 = Instant::now();
        log.success_at(t0);
        assert!(
            log.down.load(Ordering::Relaxed),
            "one success does not end it"
        );
        log.success_at(t0 + RECOVERED_AFTER);
        assert!(!log.down.load(Ordering::Relaxed));
        assert!(log.state.lock().unwrap().is_none());
    }

    #[test]
    fn a_flapping_store_is_one_outage_with_its_flaps_counted() {
        let log = OutageLog::default();
        let e = StoreError::Unavailable("connection refused".into());
        log.failure(&e);
        let t0 = Instant::now();
        for n in 0..10u64 {
            // Answers for a moment, then fails again: still the same outage.
            log.success_at(t0 + Duration::from_millis(n * 20));
            log.failure(&e);
            assert!(log.down.load(Ordering::Relaxed));
        }
        assert_eq!(log.state.lock().unwrap().as_ref().unwrap().flaps, 10);
        let t1 = Instant::now();
        log.success_at(t1);
        log.success_at(t1 + RECOVERED_AFTER - Duration::from_millis(1));
        assert!(log.down.load(Ordering::Relaxed));
        log.success_at(t1 + RECOVERED_AFTER);
        assert!(!log.down.load(Ordering::Relaxed));
    }
}
