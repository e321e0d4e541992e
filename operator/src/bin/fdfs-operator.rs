//! `fdfs-operator`: reconciles `FdfsCluster` and `StorageGroup` resources.
//!
//! Every flag can also be set through the environment variable shown in `--help`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use fdfs_operator::build::BuildOptions;
use fdfs_operator::controller::{self, Config, Context, TrackerDirectory};
use fdfs_operator::leader::{self, LeaseConfig};
use fdfs_operator::metrics::Metrics;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use prometheus_client::registry::Registry;

/// Kubernetes operator for FastDFS-compatible clusters.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Namespaces to watch (repeatable or comma-separated); every namespace when unset.
    #[arg(
        long = "namespace",
        env = "FDFS_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Node image for clusters whose spec names none.
    #[arg(long, env = "FDFS_DEFAULT_IMAGE")]
    default_image: Option<String>,
    /// Log format.
    #[arg(long, env = "FDFS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address of the `/metrics` and `/healthz` endpoints.
    #[arg(long, env = "FDFS_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// DNS domain of the Kubernetes cluster.
    #[arg(long, env = "FDFS_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Seconds converging work (a rollout, a scale step, a wait for members) may go without
    /// progress before its resource reports `Stalled`.
    #[arg(
        long,
        env = "FDFS_STALL_TIMEOUT_SECONDS",
        default_value_t = 900,
        value_parser = clap::value_parser!(u64).range(60..=86_400)
    )]
    stall_timeout_seconds: u64,
    /// Seconds a remaining storage may lag behind its peers for a scale-down to stop the
    /// next storage (0: the remaining ones hold every file).
    #[arg(
        long,
        env = "FDFS_SCALE_DOWN_LAG_TOLERANCE_SECONDS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    scale_down_lag_tolerance_seconds: u64,
    /// Age in seconds of the oldest change that may still wait between a restarted storage and
    /// its peers for a rollout to restart the next storage.
    #[arg(
        long,
        env = "FDFS_ROLLOUT_BACKLOG_TOLERANCE_SECONDS",
        default_value_t = fdfs_operator::rollout::DEFAULT_BACKLOG_TOLERANCE_SECONDS,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    rollout_backlog_tolerance_seconds: u64,
    /// Run without leader election (a single replica only).
    #[arg(long, env = "FDFS_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Namespace of the leader Lease; the operator's own (POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "FDFS_LEASE_NAME", default_value = "fdfs-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in Events (POD_NAME).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Resolves on SIGTERM or Ctrl-C; cloneable, so every part of the operator can wait on it.
fn shutdown_signal() -> Shared<BoxFuture<'static, ()>> {
    async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
    }
    .boxed()
    .shared()
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| "fdfs-operator".into()));
    let config = Config {
        default_image: args.default_image.clone(),
        build: BuildOptions {
            cluster_domain: args.cluster_domain.clone(),
        },
        trackers: TrackerDirectory::Dns,
        stall_after: Duration::from_secs(args.stall_timeout_seconds),
        scale_down_lag_tolerance: args.scale_down_lag_tolerance_seconds,
        rollout_backlog_tolerance: args.rollout_backlog_tolerance_seconds,
        ..Config::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        config,
        metrics,
        Some(identity.clone()),
    ));
    let shutdown = shutdown_signal();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, "serving /metrics and /healthz");
    let http = tokio::spawn(fdfs_operator::http::serve(
        listener,
        registry,
        ctx.watches.clone(),
        shutdown.clone(),
    ));

    let namespaces = args.namespaces.clone();
    let run = controller::run(ctx, namespaces, shutdown.clone());
    if args.no_leader_election {
        run.await;
    } else {
        let lease = LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        tokio::select! {
            led = leader::lead(&client, &lease, run) => {
                led.context("leader election")?;
            }
            () = shutdown.clone() => {}
        }
    }
    http.await
        .context("HTTP server task")?
        .context("HTTP server")?;
    Ok(())
}
