//! The controllers of `FdfsCluster` and `StorageGroup`, and what they share.
//!
//! Each reconcile is a pipeline (fetch → validate → build → apply → status); the steps that
//! talk to the API server live in [`fetch`], [`apply`] and [`status`], the pure ones in
//! [`crate::validate`], [`crate::build`] and [`crate::scale`].

pub mod apply;
pub mod cluster;
pub mod conditions;
pub mod deletion;
pub mod fetch;
pub mod group;
mod group_status;
pub mod replace;
pub mod status;
pub mod volume;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use crate::build::BuildOptions;
use crate::crd::{FdfsCluster, StorageGroup};
use crate::fastdfs::{self, TrackerView};
use crate::health::WatchHealth;
use crate::metrics::Metrics;
use crate::naming;
use crate::{Error, Result};

/// Where the operator finds a cluster's trackers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrackerDirectory {
    /// The tracker headless Service's DNS name, which resolves to every tracker Pod, and the
    /// cluster's external trackers. The operator runs inside the Kubernetes cluster.
    #[default]
    Dns,
    /// Fixed `host:port` endpoints per cluster, keyed by `namespace/name`: for an operator
    /// outside the cluster network (through tunnels), and for tests.
    Static(BTreeMap<String, Vec<String>>),
}

impl TrackerDirectory {
    /// The `host:port` names of a cluster's trackers.
    pub fn endpoints(&self, cluster: &FdfsCluster, build: &BuildOptions) -> Vec<String> {
        let namespace = cluster.namespace().unwrap_or_default();
        let name = cluster.name_any();
        match self {
            Self::Dns => crate::build::conf::tracker_endpoints(cluster, build),
            Self::Static(map) => map
                .get(&format!("{namespace}/{name}"))
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// Settings of the operator.
#[derive(Clone, Debug)]
pub struct Config {
    /// Node image for clusters that do not name one.
    pub default_image: Option<String>,
    /// Options of the build step.
    pub build: BuildOptions,
    /// Where the trackers are.
    pub trackers: TrackerDirectory,
    /// Reconcile interval of a settled resource, to follow what only the trackers know.
    pub resync: Duration,
    /// Reconcile interval while something is in progress (scaling, syncing, waiting).
    pub progress_interval: Duration,
    /// Reconcile interval of a resource with an invalid spec (it is also reconciled on every
    /// change): slow, so an invalid spec causes no retry storm.
    pub invalid_interval: Duration,
    /// First delay after a failed reconcile; it doubles with each further failure.
    pub backoff_base: Duration,
    /// Longest delay after failed reconciles.
    pub backoff_max: Duration,
    /// How long converging work may go without progress before it is `Stalled`.
    pub stall_after: Duration,
    /// How long a reconcile waits for the trackers' answers, all asked at once.
    pub tracker_deadline: Duration,
    /// How long watches must fail without a break before `/healthz` fails.
    pub watch_failure_window: Duration,
    /// Seconds a remaining storage may lag behind its peers for a scale-down step to go on.
    pub scale_down_lag_tolerance: u64,
    /// Age in seconds of the oldest change that may still wait between a restarted storage
    /// and its peers for a rollout to move to the next storage.
    pub rollout_backlog_tolerance: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_image: None,
            build: BuildOptions::default(),
            trackers: TrackerDirectory::Dns,
            resync: Duration::from_secs(60),
            progress_interval: Duration::from_secs(5),
            invalid_interval: Duration::from_secs(300),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            stall_after: Duration::from_secs(900),
            tracker_deadline: Duration::from_secs(5),
            watch_failure_window: crate::health::DEFAULT_WATCH_FAILURE_WINDOW,
            scale_down_lag_tolerance: 0,
            rollout_backlog_tolerance: crate::rollout::DEFAULT_BACKLOG_TOLERANCE_SECONDS,
        }
    }
}

/// Per-object exponential backoff after failed reconciles, reset by a successful one.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before the next try.
    pub fn failed(&self, key: &str, base: Duration, max: Duration) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        let delay = base.saturating_mul(1u32 << (*n).min(16)).min(max);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// An Event a reconcile wants published: type, reason, action and note.
pub(super) type EventSpec = (EventType, String, &'static str, String);

/// How far a StatefulSet has got in applying its latest spec.
pub(super) struct SetProgress {
    /// The StatefulSet controller has seen the latest spec.
    pub observed: bool,
    pub updated: i32,
    pub replicas: i32,
    /// Some Pods still run the previous revision.
    pub revisions_differ: bool,
}

impl SetProgress {
    /// Reads `sts`'s spec and status; `replicas` defaults to `default_replicas`.
    pub fn of(sts: &StatefulSet, default_replicas: i32) -> SetProgress {
        let replicas = sts
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(default_replicas);
        let status = sts.status.clone().unwrap_or_default();
        SetProgress {
            observed: status.observed_generation >= sts.metadata.generation,
            updated: status.updated_replicas.unwrap_or(0),
            replicas,
            revisions_differ: status.update_revision.is_some()
                && status.current_revision != status.update_revision,
        }
    }
}

/// Why a StatefulSet's rollout is not visible yet.
pub(super) const NOT_OBSERVED: &str = "the StatefulSet controller has not seen the latest spec yet";

/// State shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Operator settings.
    pub config: Config,
    /// Reconcile metrics.
    pub metrics: Metrics,
    recorder: Recorder,
    backoff: Arc<Backoff>,
    /// The StorageGroups each watch scope (a namespace, or `None` for all) keeps in memory,
    /// so reconciles read them there instead of listing them from the API server.
    group_stores: GroupStores,
    /// Whether the watches work, for `/healthz`.
    pub watches: Arc<WatchHealth>,
}

/// Per watch scope, its in-memory StorageGroups.
type GroupStores = Arc<Mutex<Vec<(Option<String>, Store<StorageGroup>)>>>;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the trackers of a cluster answered, each on its own.
#[derive(Clone, Debug, Default)]
pub struct TrackerAnswers {
    /// Why the tracker names could not be resolved, if they could not.
    pub unresolved: Option<String>,
    /// Each tracker's answer or error.
    pub views: Vec<(SocketAddr, Result<TrackerView, String>)>,
}

impl TrackerAnswers {
    /// The first tracker that answered.
    pub fn first_view(&self) -> Option<&TrackerView> {
        self.views.iter().find_map(|(_, v)| v.as_ref().ok())
    }

    /// Why some tracker could not be asked, if one could not.
    pub fn problem(&self) -> Option<String> {
        if let Some(why) = &self.unresolved {
            return Some(why.clone());
        }
        if self.views.is_empty() {
            return Some("no tracker address is known".into());
        }
        self.views
            .iter()
            .find_map(|(addr, v)| v.as_ref().err().map(|e| format!("tracker {addr}: {e}")))
    }
}

impl Context {
    /// A context for the controllers; `instance` names this operator replica in Events.
    pub fn new(client: Client, config: Config, metrics: Metrics, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: naming::MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            watches: Arc::new(WatchHealth::new(config.watch_failure_window)),
            config,
            metrics,
            backoff: Arc::default(),
            group_stores: Arc::default(),
        }
    }

    /// Lets reconciles in `scope` read StorageGroups from `store`.
    pub fn share_group_store(&self, scope: Option<String>, store: Store<StorageGroup>) {
        self.group_stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((scope, store));
    }

    /// The StorageGroups of `namespace`: from the watch scope's store once it has listed
    /// everything, else from the API server.
    pub async fn storage_groups(&self, namespace: &str) -> Result<Vec<StorageGroup>> {
        let store = self
            .group_stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))
            .map(|(_, store)| store.clone());
        if let Some(store) = store
            && let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_secs(5), store.wait_until_ready()).await
        {
            return Ok(store
                .state()
                .iter()
                .filter(|sg| sg.namespace().as_deref() == Some(namespace))
                .map(|sg| sg.as_ref().clone())
                .collect());
        }
        fetch::storage_groups(&self.client, namespace).await
    }

    /// Publishes an Event about `obj`. Failing to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %err, reason, "cannot publish Event");
        }
    }

    /// Asks each tracker of `cluster` about `groups` (every group when `None`).
    pub async fn ask_trackers(
        &self,
        cluster: &FdfsCluster,
        groups: Option<&[&str]>,
    ) -> TrackerAnswers {
        let endpoints = self.config.trackers.endpoints(cluster, &self.config.build);
        let addrs = match fastdfs::resolve(&endpoints).await {
            Ok(addrs) => addrs,
            Err(err) => {
                return TrackerAnswers {
                    unresolved: Some(format!("cannot resolve {}: {err}", endpoints.join(", "))),
                    views: Vec::new(),
                };
            }
        };
        // Every tracker at once, all within one deadline: a reconcile never waits on
        // trackers one after another.
        let deadline = self.config.tracker_deadline;
        let views = futures::future::join_all(addrs.into_iter().map(|addr| async move {
            let view = match tokio::time::timeout(deadline, fastdfs::query(addr, groups)).await {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {deadline:?}")),
            };
            (addr, view)
        }))
        .await;
        TrackerAnswers {
            unresolved: None,
            views,
        }
    }

    /// Runs one reconcile with metrics, an Event for a failure, and backoff bookkeeping.
    async fn observe<K>(
        &self,
        obj: &K,
        reconcile: impl Future<Output = Result<Action>>,
    ) -> Result<Action>
    where
        K: Resource<DynamicType = ()>,
    {
        let kind = K::kind(&());
        let started = Instant::now();
        // Every log line of one reconcile names the object.
        let span = tracing::info_span!("reconcile", kind = %kind, object = %key(obj));
        let result = tracing::Instrument::instrument(reconcile, span).await;
        self.metrics.reconciled(&kind, started.elapsed());
        match &result {
            Ok(_) => {
                self.backoff.succeeded(&key(obj));
                self.metrics.succeeded(&kind);
            }
            Err(err) => {
                self.metrics.failed(&kind, err.reason());
                tracing::warn!(kind = %kind, object = %key(obj), error = %err, "reconcile failed");
                self.event(
                    obj,
                    EventType::Warning,
                    err.reason(),
                    "Reconcile",
                    error_chain(err),
                )
                .await;
            }
        }
        result
    }

    fn backoff_after_failure<K: Resource<DynamicType = ()>>(&self, obj: &K) -> Action {
        Action::requeue(self.backoff.failed(
            &key(obj),
            self.config.backoff_base,
            self.config.backoff_max,
        ))
    }
}

/// `Kind/namespace/name`, the backoff key of an object.
fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// An error with its causes, for Events and conditions.
pub fn error_chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the `fdfs.dev/reconcile: paused` annotation is set.
pub fn is_paused<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(naming::RECONCILE_ANNOTATION))
        .is_some_and(|v| v == "paused")
}

/// Reconciles an `FdfsCluster`.
pub async fn reconcile_cluster(obj: Arc<FdfsCluster>, ctx: Arc<Context>) -> Result<Action> {
    ctx.observe(obj.as_ref(), cluster::reconcile(&obj, &ctx))
        .await
}

/// Reconciles a `StorageGroup`.
pub async fn reconcile_group(obj: Arc<StorageGroup>, ctx: Arc<Context>) -> Result<Action> {
    ctx.observe(obj.as_ref(), group::reconcile(&obj, &ctx))
        .await
}

/// What to do after a failed reconcile: try again after a per-object exponential backoff.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    _err: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.backoff_after_failure(obj.as_ref())
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = ()>,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers over `namespaces` (every namespace when empty) until `shutdown`
/// resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut controllers = Vec::new();
    for scope in scopes {
        let ns = scope.as_deref();
        let client = &ctx.client;
        let wc = watcher::Config::default();
        // Only the objects this operator made: not every ConfigMap and Service around.
        let owned = watcher::Config::default()
            .labels(&format!("app.kubernetes.io/managed-by={}", naming::MANAGER));

        let clusters = Controller::new(api::<FdfsCluster>(client, ns), wc.clone())
            .owns(api::<StatefulSet>(client, ns), owned.clone())
            .owns(api::<Service>(client, ns), owned.clone())
            .owns(api::<ConfigMap>(client, ns), owned.clone())
            .watches(api::<StorageGroup>(client, ns), wc.clone(), |sg| {
                Some(
                    ObjectRef::<FdfsCluster>::new(&sg.spec.cluster_ref)
                        .within(&sg.namespace().unwrap_or_default()),
                )
            })
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_cluster, error_policy, ctx.clone())
            .for_each(watch_outcome(ctx.watches.clone(), "FdfsCluster"));

        let groups = Controller::new(api::<StorageGroup>(client, ns), wc.clone());
        let store = groups.store();
        ctx.share_group_store(scope.clone(), store.clone());
        let groups = groups
            .owns(api::<StatefulSet>(client, ns), owned.clone())
            .owns(api::<Service>(client, ns), owned.clone())
            .owns(api::<ConfigMap>(client, ns), owned.clone())
            .owns(api::<PodDisruptionBudget>(client, ns), owned.clone())
            .watches(api::<FdfsCluster>(client, ns), wc, move |cluster| {
                let namespace = cluster.namespace();
                let name = cluster.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(move |sg| sg.spec.cluster_ref == name && sg.namespace() == namespace)
                    .map(|sg| ObjectRef::from_obj(sg.as_ref()))
            })
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_group, error_policy, ctx.clone())
            .for_each(watch_outcome(ctx.watches.clone(), "StorageGroup"));
        controllers.push(tokio::spawn(clusters));
        controllers.push(tokio::spawn(groups));
    }
    for c in controllers {
        let _ = c.await;
    }
}

/// What each controller result says of the watches: a queue error is a failed watch (kube
/// retries it with backoff); anything else means the watches delivered.
fn watch_outcome<T, E: std::error::Error, Q: std::error::Error>(
    health: Arc<WatchHealth>,
    kind: &'static str,
) -> impl FnMut(std::result::Result<T, kube::runtime::controller::Error<E, Q>>) -> std::future::Ready<()>
{
    move |result| {
        match result {
            Err(kube::runtime::controller::Error::QueueError(err)) => {
                tracing::warn!(error = %err, kind, "watch failed");
                health.failed(std::time::Instant::now(), &err.to_string());
            }
            Err(err) => {
                tracing::debug!(error = %err, kind, "controller");
                health.delivered();
            }
            Ok(_) => health.delivered(),
        }
        std::future::ready(())
    }
}

/// The configuration hash a Pod template was rendered with.
fn config_hash(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Option<String> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(crate::naming::CONFIG_HASH_ANNOTATION)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_object_and_resets() {
        let b = Backoff::default();
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(20));
        let delays: Vec<u64> = (0..5).map(|_| b.failed("a", base, max).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 20]);
        assert_eq!(
            b.failed("b", base, max).as_secs(),
            2,
            "other objects start over"
        );
        b.succeeded("a");
        assert_eq!(b.failed("a", base, max).as_secs(), 2);
    }
}
