//! Helpers the test suites of the workspace share (the node's, the operator's and the e2e
//! tests): one way to wait for a condition, polled, with a bound and a name for the failure;
//! one way to start trackers and storages in process ([`cluster`]), and a disk that takes
//! only part of a write ([`full_disk`]).

pub mod cluster;
pub mod full_disk;

use std::time::Duration;

/// How often a condition is asked again.
const POLL: Duration = Duration::from_millis(20);

/// A condition that did not come true in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {limit:?} waiting for {what}")]
pub struct TimedOut {
    pub what: String,
    pub limit: Duration,
}

/// Asks `check` every 20 ms until it holds; `TimedOut` once `limit` has passed.
pub async fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Result<(), TimedOut> {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                limit,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// [`wait_for`] for a test: a condition that does not come true in time fails the test,
/// naming it.
pub async fn wait_until(what: &str, limit: Duration, check: impl AsyncFnMut() -> bool) {
    if let Err(e) = wait_for(what, limit, check).await {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_comes_true_ends_the_wait_and_one_that_does_not_is_named() {
        let mut asked = 0;
        wait_for("the third ask", Duration::from_secs(1), async || {
            asked += 1;
            asked == 3
        })
        .await
        .expect("comes true");
        assert_eq!(asked, 3);
        let err = wait_for("never", Duration::from_millis(100), async || false)
            .await
            .expect_err("times out");
        assert_eq!(err.what, "never");
        assert_eq!(err.to_string(), "timed out after 100ms waiting for never");
    }
}
