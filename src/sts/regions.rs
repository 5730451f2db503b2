//! STS in more than one region (`[aws] sts_regions`): the order calls try the regions in,
//! and a circuit breaker per region.
//!
//! A call goes to the first region whose breaker lets it through and moves to the next on
//! a failure that another region may not have (connection errors, timeouts, 5xx,
//! throttling: [`super::IssueError::fails_over`]). A region's breaker opens on such a
//! failure, so the following calls go straight to the next region instead of each paying
//! the timeout; after `sts_region_retry_after` one call (and only one at a time) tries the
//! region again, and its success closes the breaker. When every breaker is open the calls
//! still try the regions in order: STS being down is not a reason to refuse without trying.
//! A region that answers at all (credentials, or a refusal such as `AccessDenied`, which
//! every region would give) counts as healthy.
//!
//! Each worker thread gets its own SDK client (and so its own connection pool) per region,
//! built from one configuration: a call and its connection then stay on the worker's
//! runtime instead of waking the runtime that happened to open the connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One region's breaker.
#[derive(Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    /// While set and in the future, the region is skipped.
    open_until: Option<Instant>,
    /// A call is trying the region again after the cool-down.
    trial: bool,
}

/// What a breaker says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go.
    Go,
    /// Open, its cool-down over: this call is the one trial.
    Trial,
    /// Open (or another call is the trial): skip unless nothing else is left.
    Skip,
}

impl Breaker {
    pub fn admit(&self, now: Instant) -> Admit {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.open_until {
            None => Admit::Go,
            Some(until) if now >= until && !s.trial => {
                s.trial = true;
                Admit::Trial
            }
            Some(_) => Admit::Skip,
        }
    }

    pub fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.open_until = None;
        s.trial = false;
    }

    /// Opens the breaker for `cool_down`; whether it was closed before (for one log line
    /// per opening, not one per call).
    pub fn failure(&self, now: Instant, cool_down: Duration) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was_closed = s.open_until.is_none();
        s.open_until = Some(now + cool_down);
        s.trial = false;
        was_closed
    }

    pub fn is_open(&self, now: Instant) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.open_until.is_some_and(|u| now < u)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CLIENTS: RefCell<HashMap<(u64, usize), aws_sdk_sts::Client>> =
        RefCell::new(HashMap::new());
}

/// The SDK clients of one broker, one per region and worker thread.
pub struct PerThreadClients {
    id: u64,
    configs: Vec<aws_sdk_sts::Config>,
}

impl PerThreadClients {
    pub fn new(configs: Vec<aws_sdk_sts::Config>) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            configs,
        }
    }

    /// This thread's client for region `i` (built on first use).
    pub fn get(&self, i: usize) -> aws_sdk_sts::Client {
        CLIENTS.with(|c| {
            c.borrow_mut()
                .entry((self.id, i))
                .or_insert_with(|| aws_sdk_sts::Client::from_conf(self.configs[i].clone()))
                .clone()
        })
    }
}

/// What [`in_order`] did: the region that answered (or failed last), its answer, and the
/// regions that failed before it (with whether that failure opened their breaker).
pub struct Outcome<T, E> {
    pub region: usize,
    pub result: Result<T, E>,
    pub failed: Vec<(usize, bool)>,
}

/// Runs `call` on the regions in order (see the module's rule) until one answers with
/// something other than a failure `fails_over` says another region may not have. When
/// every region failed over, the last failure.
pub async fn in_order<T, E, F, Fut>(
    breakers: &[&Breaker],
    cool_down: Duration,
    fails_over: impl Fn(&E) -> bool,
    mut call: F,
) -> Outcome<T, E>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let now = Instant::now();
    let mut skipped = Vec::new();
    let mut failed: Vec<(usize, bool)> = Vec::new();
    let mut last = None;
    // First the regions the breakers let through, in order (admitting lazily: a trial is
    // claimed only by a call that makes it); then, as a last resort, the skipped ones.
    let mut i = 0;
    let mut last_resort = false;
    loop {
        let region = if !last_resort {
            if i == breakers.len() {
                last_resort = true;
                skipped.reverse();
                continue;
            }
            i += 1;
            if breakers[i - 1].admit(now) == Admit::Skip {
                skipped.push(i - 1);
                continue;
            }
            i - 1
        } else {
            match skipped.pop() {
                Some(r) => r,
                None => break,
            }
        };
        let result = call(region).await;
        match &result {
            Err(e) if fails_over(e) => {
                failed.push((region, breakers[region].failure(Instant::now(), cool_down)));
                last = Some((region, result));
            }
            _ => {
                breakers[region].success();
                return Outcome {
                    region,
                    result,
                    failed,
                };
            }
        }
    }
    let (region, result) = last.expect("at least one region is configured");
    failed.pop();
    Outcome {
        region,
        result,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn a_failure_opens_the_breaker_until_one_trial_after_the_cool_down() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admit::Go);
        b.failure(t0, COOL);
        assert!(b.is_open(t0));
        assert_eq!(b.admit(t0 + Duration::from_secs(29)), Admit::Skip);
        let later = t0 + COOL;
        assert_eq!(b.admit(later), Admit::Trial);
        assert_eq!(b.admit(later), Admit::Skip, "one trial at a time");
        b.failure(later, COOL);
        assert_eq!(b.admit(later + Duration::from_secs(1)), Admit::Skip);
        assert_eq!(b.admit(later + COOL), Admit::Trial);
        b.success();
        assert_eq!(b.admit(later + COOL), Admit::Go);
        assert!(!b.is_open(later + COOL));
    }

    async fn run(
        breakers: &[&Breaker],
        answers: &[Result<&'static str, &'static str>],
        tried: &mut Vec<usize>,
    ) -> (usize, Result<&'static str, &'static str>) {
        let o = in_order(
            breakers,
            COOL,
            |e: &&str| *e == "down",
            |i| {
                tried.push(i);
                let a = answers[i];
                async move { a }
            },
        )
        .await;
        (o.region, o.result)
    }

    #[tokio::test]
    async fn calls_fail_over_in_order_skip_open_regions_and_stop_at_a_refusal() {
        let (a, b, c) = (Breaker::default(), Breaker::default(), Breaker::default());
        let mut tried = vec![];
        let got = run(
            &[&a, &b, &c],
            &[Err("down"), Ok("creds"), Ok("x")],
            &mut tried,
        )
        .await;
        assert_eq!((got, tried.clone()), ((1, Ok("creds")), vec![0, 1]));
        // The first region's breaker is open now: straight to the second.
        tried.clear();
        let got = run(&[&a, &b, &c], &[Ok("a"), Ok("b"), Ok("c")], &mut tried).await;
        assert_eq!((got, tried.clone()), ((1, Ok("b")), vec![1]));
        // A refusal is the answer: no other region is asked (every region would refuse).
        tried.clear();
        let got = run(
            &[&a, &b, &c],
            &[Ok("a"), Err("denied"), Ok("c")],
            &mut tried,
        )
        .await;
        assert_eq!((got, tried.clone()), ((1, Err("denied")), vec![1]));
        // Everything down: every region tried (open ones last), the last failure returned.
        tried.clear();
        let got = run(
            &[&a, &b, &c],
            &[Err("down"), Err("down"), Err("down")],
            &mut tried,
        )
        .await;
        assert_eq!((got, tried.clone()), ((0, Err("down")), vec![1, 2, 0]));
    }
}
