//! Timers and retry pauses that FastDFS's configuration has no key for. The defaults are
//! what production runs; tests shorten them (they are milliseconds) so a suite waits on
//! conditions, not on seconds of wall clock.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The storage role's timers (`[timers]` in its TOML file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageTimers {
    /// First pause after a failed push session to a peer; it doubles while the peer
    /// stays away, up to `sync_retry_max_ms`.
    pub sync_retry_ms: u64,
    pub sync_retry_max_ms: u64,
    /// How often a push that waits for its peer's status looks again (it also wakes on
    /// every members list the trackers send).
    pub peer_status_poll_ms: u64,
    /// A caught-up push saves its mark and probes its connections after this quiet time.
    pub quiet_mark_save_ms: u64,
    /// How long a stopping push may take to finish its batch and save its mark.
    pub flush_grace_ms: u64,
    /// First pause after a failed tracker session; it grows up to five times as long.
    pub tracker_retry_ms: u64,
    /// How often tracker names are resolved again (a name may gain or lose addresses).
    pub tracker_resolve_ms: u64,
    /// How long a stopping storage waits for its last beat to a tracker.
    pub tracker_leave_ms: u64,
    /// Longest time between two reports of the push backlog.
    pub backlog_report_ms: u64,
    /// How long a stopping storage waits for its pushes to end before its last report.
    pub last_push_wait_ms: u64,
    /// First pause after a failed recovery attempt; it grows up to eight times as long.
    pub recovery_retry_ms: u64,
    /// How often the store paths' free space is read (uploads place files on it).
    pub disk_refresh_ms: u64,
    /// How long a stopping storage lets requests in flight finish on its protocol port.
    pub drain_ms: u64,
    /// The same for its HTTP port.
    pub http_drain_ms: u64,
}

impl Default for StorageTimers {
    fn default() -> Self {
        StorageTimers {
            sync_retry_ms: 1_000,
            sync_retry_max_ms: 4_000,
            peer_status_poll_ms: 1_000,
            quiet_mark_save_ms: 10_000,
            flush_grace_ms: 3_000,
            tracker_retry_ms: 2_000,
            tracker_resolve_ms: 30_000,
            tracker_leave_ms: 2_000,
            backlog_report_ms: 5_000,
            last_push_wait_ms: 7_000,
            recovery_retry_ms: 2_000,
            disk_refresh_ms: 1_000,
            drain_ms: 10_000,
            http_drain_ms: 5_000,
        }
    }
}

impl StorageTimers {
    /// Timers short enough for tests on one machine, long enough not to spin.
    pub fn quick() -> Self {
        StorageTimers {
            sync_retry_ms: 100,
            sync_retry_max_ms: 400,
            peer_status_poll_ms: 100,
            quiet_mark_save_ms: 1_000,
            tracker_retry_ms: 200,
            backlog_report_ms: 1_000,
            recovery_retry_ms: 200,
            ..Self::default()
        }
    }

    pub fn sync_retry(&self) -> (Duration, Duration) {
        (ms(self.sync_retry_ms), ms(self.sync_retry_max_ms))
    }
    pub fn peer_status_poll(&self) -> Duration {
        ms(self.peer_status_poll_ms)
    }
    pub fn quiet_mark_save(&self) -> Duration {
        ms(self.quiet_mark_save_ms)
    }
    pub fn flush_grace(&self) -> Duration {
        ms(self.flush_grace_ms)
    }
    pub fn tracker_retry(&self) -> Duration {
        ms(self.tracker_retry_ms)
    }
    pub fn tracker_resolve(&self) -> Duration {
        ms(self.tracker_resolve_ms)
    }
    pub fn tracker_leave(&self) -> Duration {
        ms(self.tracker_leave_ms)
    }
    pub fn backlog_report(&self) -> Duration {
        ms(self.backlog_report_ms)
    }
    pub fn last_push_wait(&self) -> Duration {
        ms(self.last_push_wait_ms)
    }
    pub fn recovery_retry(&self) -> Duration {
        ms(self.recovery_retry_ms)
    }
    pub fn disk_refresh(&self) -> Duration {
        ms(self.disk_refresh_ms)
    }
    pub fn drain(&self) -> Duration {
        ms(self.drain_ms)
    }
    pub fn http_drain(&self) -> Duration {
        ms(self.http_drain_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            ("sync_retry_ms", self.sync_retry_ms),
            ("sync_retry_max_ms", self.sync_retry_max_ms),
            ("peer_status_poll_ms", self.peer_status_poll_ms),
            ("quiet_mark_save_ms", self.quiet_mark_save_ms),
            ("flush_grace_ms", self.flush_grace_ms),
            ("tracker_retry_ms", self.tracker_retry_ms),
            ("tracker_resolve_ms", self.tracker_resolve_ms),
            ("tracker_leave_ms", self.tracker_leave_ms),
            ("backlog_report_ms", self.backlog_report_ms),
            ("last_push_wait_ms", self.last_push_wait_ms),
            ("recovery_retry_ms", self.recovery_retry_ms),
            ("disk_refresh_ms", self.disk_refresh_ms),
            ("drain_ms", self.drain_ms),
            ("http_drain_ms", self.http_drain_ms),
        ];
        positive(&all)?;
        if self.sync_retry_max_ms < self.sync_retry_ms {
            return Err(ConfigError::Invalid {
                key: "timers.sync_retry_max_ms",
                reason: "must not be below timers.sync_retry_ms".into(),
            });
        }
        Ok(())
    }
}

/// The tracker role's timers (`[timers]` in its TOML file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerTimers {
    /// How often the cluster state is saved when it changed (and storage ids reloaded).
    pub state_save_ms: u64,
    /// How long a stopping tracker lets open requests finish.
    pub drain_ms: u64,
    /// The same for its HTTP port.
    pub http_drain_ms: u64,
}

impl Default for TrackerTimers {
    fn default() -> Self {
        TrackerTimers {
            state_save_ms: 1_000,
            drain_ms: 5_000,
            http_drain_ms: 5_000,
        }
    }
}

impl TrackerTimers {
    pub fn state_save(&self) -> Duration {
        ms(self.state_save_ms)
    }
    pub fn drain(&self) -> Duration {
        ms(self.drain_ms)
    }
    pub fn http_drain(&self) -> Duration {
        ms(self.http_drain_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("state_save_ms", self.state_save_ms),
            ("drain_ms", self.drain_ms),
            ("http_drain_ms", self.http_drain_ms),
        ])
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Longest timer accepted: a day.
const MAX_MS: u64 = 86_400_000;

/// Every timer above 0 (0 would spin) and at most a day (a larger one is a typo).
fn positive(values: &[(&'static str, u64)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, v)| !(1..=MAX_MS).contains(v)) {
        Some((key, _)) => Err(ConfigError::Invalid {
            key,
            reason: format!("a timer takes 1 to {MAX_MS} ms"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_read_from_toml_refuse_zero_and_unknown_keys() {
        let t: StorageTimers =
            toml::from_str("sync_retry_ms = 50\nsync_retry_max_ms = 80").expect("reads");
        assert_eq!(t.sync_retry(), (ms(50), ms(80)));
        assert_eq!(t.flush_grace(), StorageTimers::default().flush_grace());
        t.validate().expect("reads");

        let zero: StorageTimers = toml::from_str("peer_status_poll_ms = 0").expect("reads");
        let err = zero.validate().expect_err("refused").to_string();
        assert!(err.contains("peer_status_poll_ms"), "{err}");
        let huge: StorageTimers =
            toml::from_str("tracker_retry_ms = 18446744073709551615").expect("reads");
        let err = huge.validate().expect_err("refused").to_string();
        assert!(err.contains("tracker_retry_ms"), "{err}");

        let inverted: StorageTimers =
            toml::from_str("sync_retry_ms = 500\nsync_retry_max_ms = 100").expect("reads");
        assert!(inverted.validate().is_err());
        StorageTimers::quick().validate().expect("reads");

        assert!(toml::from_str::<StorageTimers>("sync_retry = 1").is_err());
        let t: TrackerTimers = toml::from_str("drain_ms = 250").expect("reads");
        assert_eq!(t.drain(), ms(250));
        assert!(
            TrackerTimers {
                state_save_ms: 0,
                ..t
            }
            .validate()
            .is_err()
        );
    }
}
