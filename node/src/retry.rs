//! Waiting between attempts at something that failed (a tracker session, a push to a
//! peer, a disk recovery): the wait doubles after each failure up to a cap, is spread by
//! a random share so peers that failed together do not retry together, and starts over
//! after a success.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Largest share of a wait added or taken away at random.
const JITTER: f64 = 0.25;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Waits of `base` at first, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            step: base,
        }
    }

    /// After a success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.step = self.base;
    }

    /// The wait before the next attempt; the one after it is twice as long, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let spread = 1.0 + JITTER * (rand::random::<f64>() * 2.0 - 1.0);
        let wait = self.step.mul_f64(spread);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// Sleeps the next wait; `false` when `stop` fires first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let wait = self.next_wait();
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_within_the_jitter_and_start_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let within = |wait: Duration, step: u64| {
            let s = Duration::from_secs(step);
            wait >= s.mul_f64(1.0 - JITTER) && wait <= s.mul_f64(1.0 + JITTER)
        };
        for step in [1, 2, 4, 8, 8, 8] {
            let wait = b.next_wait();
            assert!(within(wait, step), "{wait:?} for a step of {step} s");
        }
        b.reset();
        assert!(within(b.next_wait(), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { b.wait(&stop).await }
        });
        stop.cancel();
        assert!(!waiting.await.expect("wait"));
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(10));
        assert!(
            b.wait(&CancellationToken::new()).await,
            "an ordinary wait ends"
        );
    }
}
