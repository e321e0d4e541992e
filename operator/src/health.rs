//! Whether the operator's watches work. A watch that keeps failing (the API server
//! unreachable, permissions taken away) leaves the controllers blind while the process looks
//! alive; `/healthz` then fails, and the kubelet restarts the operator.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long watches must fail without a break before `/healthz` fails.
pub const DEFAULT_WATCH_FAILURE_WINDOW: Duration = Duration::from_secs(120);

/// A failure older than this ends the streak: a failing watch retries (and fails again)
/// at least every 30 s, kube's longest watch backoff.
const QUIET_AFTER: Duration = Duration::from_secs(60);

/// Watch outcomes as the controllers report them.
#[derive(Debug)]
pub struct WatchHealth {
    window: Duration,
    state: Mutex<Streak>,
}

#[derive(Debug, Default)]
struct Streak {
    failing_since: Option<Instant>,
    last_failure: Option<Instant>,
    last_error: String,
}

impl WatchHealth {
    /// `/healthz` fails once watches have failed for `window` without a delivery between.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::new(Streak::default()),
        }
    }

    fn streak(&self) -> std::sync::MutexGuard<'_, Streak> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch failed at `now`.
    pub fn failed(&self, now: Instant, error: &str) {
        let mut s = self.streak();
        if s.last_failure
            .is_none_or(|last| now.saturating_duration_since(last) > QUIET_AFTER)
        {
            s.failing_since = Some(now);
        }
        s.last_failure = Some(now);
        s.last_error = error.to_owned();
    }

    /// A watch delivered an object (a reconcile ran): watches work.
    pub fn delivered(&self) {
        *self.streak() = Streak::default();
    }

    /// `Err` with the last watch error when watches have failed for the whole window.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        let s = self.streak();
        match (s.failing_since, s.last_failure) {
            (Some(since), Some(last))
                if now.saturating_duration_since(last) <= QUIET_AFTER
                    && now.saturating_duration_since(since) >= self.window =>
            {
                Err(format!(
                    "watches failing for {} s: {}",
                    now.saturating_duration_since(since).as_secs(),
                    s.last_error
                ))
            }
            _ => Ok(()),
        }
    }
}

impl Default for WatchHealth {
    fn default() -> Self {
        Self::new(DEFAULT_WATCH_FAILURE_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_streak_of_failures_as_long_as_the_window_is_unhealthy() {
        let health = WatchHealth::new(Duration::from_secs(120));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(health.check(t0).is_ok(), "nothing reported");
        // Failing every 30 s: healthy until the streak is 120 s long.
        for s in [0, 30, 60, 90] {
            health.failed(at(s), "403 Forbidden");
            assert!(health.check(at(s)).is_ok(), "{s} s into the streak");
        }
        health.failed(at(120), "403 Forbidden");
        let err = health.check(at(120)).expect_err("a 120 s streak");
        assert!(err.contains("120 s") && err.contains("403"), "{err}");
        // Watches recover: a delivery ends the streak.
        health.delivered();
        assert!(health.check(at(121)).is_ok());
        // A failure long after the last one starts a new streak...
        health.failed(at(200), "timeout");
        health.failed(at(300), "timeout");
        assert!(health.check(at(300)).is_ok(), "100 s apart: two streaks");
        // ...and a streak that goes quiet (the watch came back without a delivery, nothing
        // to deliver) is over.
        health.failed(at(330), "timeout");
        health.failed(at(360), "timeout");
        health.failed(at(420), "timeout");
        assert!(health.check(at(420)).is_err(), "300..420 is one streak");
        assert!(health.check(at(481)).is_ok(), "quiet for over a minute");
    }
}
