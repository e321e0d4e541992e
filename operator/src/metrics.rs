//! The operator's Prometheus metrics, held in a registry owned by the caller (no globals).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// Reconcile counters and timings.
#[derive(Clone, Debug)]
pub struct Metrics {
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
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
        metrics
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
    }
}
