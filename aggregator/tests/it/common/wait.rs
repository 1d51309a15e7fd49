//! Bounded waits: a test waiting for an alert, an observation, a connection
//! or a state waits a few seconds at most, then fails saying what it waited
//! for (never hangs until an outer timeout, e.g. under a cargo-mutants
//! mutant that stops the alert from being raised).

use std::future::Future;
use std::time::Duration;

/// The usual bound: generous for a loaded 2-core machine, short for a human.
pub const SOON: Duration = Duration::from_secs(5);

/// Awaits `fut` for at most `limit`; panics naming `what` otherwise.
#[track_caller]
pub fn within<F: Future>(what: &str, limit: Duration, fut: F) -> impl Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        match tokio::time::timeout(limit, fut).await {
            Ok(v) => v,
            Err(_) => panic!("{caller}: waited {limit:?} for {what}: it never came"),
        }
    }
}

/// Polls `check` every 20 ms until it gives a value or `limit` passes;
/// panics naming `what` then.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> impl Future<Output = T> {
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{caller}: waited {limit:?} for {what}: it never came");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// The helpers' own tests run in real (short) time: tokio's `test-util`
// (paused clocks) is not enabled in this workspace, and no test here
// simulates time (detection runs on the events' own timestamps).
#[tokio::test]
async fn a_wait_that_never_ends_fails_at_its_bound_with_what_it_waited_for() {
    let bound = Duration::from_millis(150);
    let t0 = std::time::Instant::now();
    let r = tokio::spawn(within("an alert", bound, std::future::pending::<()>())).await;
    let msg = *r.unwrap_err().into_panic().downcast::<String>().unwrap();
    assert!(
        msg.contains("waited 150ms for an alert: it never came"),
        "{msg}"
    );
    assert!(msg.contains("wait.rs"), "names the caller: {msg}");
    assert!(t0.elapsed() >= bound);
    let r = tokio::spawn(wait_for("a flag", bound, || None::<()>)).await;
    let msg = *r.unwrap_err().into_panic().downcast::<String>().unwrap();
    assert!(msg.contains("for a flag"), "{msg}");
}

#[tokio::test]
async fn a_wait_returns_as_soon_as_the_value_is_there() {
    let mut n = 0;
    let v = wait_for("the third poll", SOON, || {
        n += 1;
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(v, 3);
    assert_eq!(within("a ready value", SOON, async { 7 }).await, 7);
}
