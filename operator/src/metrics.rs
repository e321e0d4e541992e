//! The operator's Prometheus metrics, held in a registry owned by the caller (no globals).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `FdfsCluster` or `StorageGroup`.
    pub kind: String,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `FdfsCluster` or `StorageGroup`.
    pub kind: String,
    /// [`crate::Error::reason`] of the error.
    pub reason: String,
}

/// Labels of the per-group gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub namespace: String,
    /// The `StorageGroup`'s name.
    pub storage_group: String,
}

/// Reconcile counters and timings, and what the last reconciles found.
#[derive(Clone, Debug)]
pub struct Metrics {
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    last_success: Family<KindLabels, Gauge>,
    replicas_desired: Family<GroupLabels, Gauge>,
    replicas_ready: Family<GroupLabels, Gauge>,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` with the `fdfs_operator` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            replicas_desired: Family::default(),
            replicas_ready: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("fdfs_operator");
        sub.register(
            "reconciles",
            "Reconciles run, by resource kind",
            metrics.reconciles.clone(),
        );
        sub.register(
            "reconcile_errors",
            "Reconciles that failed, by resource kind and error reason",
            metrics.errors.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by resource kind",
            metrics.duration.clone(),
        );
        sub.register(
            "last_successful_reconcile_timestamp_seconds",
            "When a reconcile of the kind last succeeded (unix seconds)",
            metrics.last_success.clone(),
        );
        sub.register(
            "group_replicas_desired",
            "Storages each StorageGroup asks for",
            metrics.replicas_desired.clone(),
        );
        sub.register(
            "group_replicas_ready",
            "Storages of each StorageGroup ACTIVE and caught up in every tracker",
            metrics.replicas_ready.clone(),
        );
        metrics
    }

    /// Notes a successful reconcile of `kind`.
    pub fn succeeded(&self, kind: &str) {
        let now = fdfs_node::unix_now();
        self.last_success
            .get_or_create(&KindLabels { kind: kind.into() })
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// Records what a group asks for and has.
    pub fn group_replicas(&self, namespace: &str, storage_group: &str, desired: i32, ready: i32) {
        let labels = GroupLabels {
            namespace: namespace.into(),
            storage_group: storage_group.into(),
        };
        self.replicas_desired
            .get_or_create(&labels)
            .set(i64::from(desired));
        self.replicas_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
    }

    /// Forgets a group that is gone.
    pub fn group_removed(&self, namespace: &str, storage_group: &str) {
        let labels = GroupLabels {
            namespace: namespace.into(),
            storage_group: storage_group.into(),
        };
        self.replicas_desired.remove(&labels);
        self.replicas_ready.remove(&labels);
    }

    /// Counts one reconcile of `kind` that took `took`.
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts one failed reconcile.
    pub fn failed(&self, kind: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn metrics_are_prefixed_and_labelled() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.reconciled("StorageGroup", Duration::from_millis(30));
        metrics.failed("StorageGroup", "KubeApiError");
        metrics.group_replicas("fdfs", "group1", 3, 2);
        metrics.group_replicas("fdfs", "group2", 1, 1);
        metrics.group_removed("fdfs", "group2");
        metrics.succeeded("FdfsCluster");
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("fdfs_operator_reconciles_total{kind=\"StorageGroup\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "fdfs_operator_reconcile_errors_total{kind=\"StorageGroup\",reason=\"KubeApiError\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fdfs_operator_reconcile_duration_seconds_count{kind=\"StorageGroup\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fdfs_operator_group_replicas_desired{namespace=\"fdfs\",storage_group=\"group1\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fdfs_operator_group_replicas_ready{namespace=\"fdfs\",storage_group=\"group1\"} 2"
            ),
            "{text}"
        );
        assert!(
            !text.contains("group2"),
            "a removed group is forgotten: {text}"
        );
        assert!(
            text.contains(
                "fdfs_operator_last_successful_reconcile_timestamp_seconds{kind=\"FdfsCluster\"} "
            ),
            "{text}"
        );
    }
}
