//! `fdfs-node`: run a tracker, a storage, or a whole local cluster.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fdfs_node::config::{self, StorageConfig, TrackerConfig};
use fdfs_node::local::{LocalCluster, LocalConfig, LocalOptions};
use fdfs_node::{storage, tracker};

#[derive(Debug, Parser)]
#[command(
    name = "fdfs-node",
    version,
    about = "FastDFS-compatible tracker and storage node"
)]
struct Cli {
    /// Seconds a stopping node (SIGTERM, Ctrl-C) lets requests in flight finish and saves
    /// its sync marks before it exits; keep it below Kubernetes' grace period (30 s).
    #[arg(long, global = true, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    drain_timeout: u64,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run a tracker.
    Tracker {
        /// TOML config, or FastDFS's tracker.conf (by extension .conf).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address, overriding the config.
        #[arg(long)]
        bind: Option<String>,
        #[arg(long)]
        base_path: Option<PathBuf>,
        /// HTTP status address (/api/v1/cluster, /healthz, /readyz, /metrics).
        #[arg(long)]
        http: Option<String>,
    },
    /// Run a storage.
    Storage {
        /// TOML config, or FastDFS's storage.conf (by extension .conf).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        bind: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        base_path: Option<PathBuf>,
        /// Tracker `host:port` (repeatable), overriding the config's list.
        #[arg(long = "tracker")]
        trackers: Vec<String>,
        /// Added to the FastDFS port: each Pod of a StatefulSet listens on the base port
        /// plus its index (`apps.kubernetes.io/pod-index`), so that a NodePort can carry
        /// the same number outside the cluster.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=255))]
        port_offset: u16,
    },
    /// Run trackers and storages on loopback until Ctrl-C or SIGTERM.
    Local {
        #[arg(long, default_value_t = 1)]
        groups: usize,
        /// Storages per group (members past the first wait for group replication).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Trackers; tracker N listens on the tracker port + N − 1.
        #[arg(long, default_value_t = 1)]
        trackers: usize,
        #[arg(long, default_value = "fdfs-local-data")]
        data_dir: PathBuf,
        /// TOML with optional [tracker] and [storage] tables applied to every node.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:22122")]
        tracker_addr: String,
        /// Address of group1's first storage; later storages take the following addresses.
        #[arg(long, default_value = "127.0.0.2")]
        storage_ip: Ipv4Addr,
        #[arg(long, default_value_t = 23000)]
        storage_port: u16,
        /// HTTP port of each storage on its address (0 disables HTTP).
        #[arg(long, default_value_t = 8888)]
        http_port: u16,
        /// HTTP port of tracker 1 on the tracker address (/api/v1/cluster, /metrics);
        /// tracker N takes this port + N − 1; 0 disables it.
        #[arg(long, default_value_t = 8080)]
        tracker_http_port: u16,
        /// A second port of tracker 1 answering with 45-byte IP fields (for clients of
        /// FastDFS V6.11+ built for IPv6); tracker N takes this port + N − 1; 0: none.
        #[arg(long, default_value_t = 22222)]
        ip45_port: u16,
    },
}

/// An HTTP address on all interfaces moves to the IP given with `--bind`.
fn follow_bind_ip(http: &str, bind: &str) -> String {
    match (http.strip_prefix("0.0.0.0:"), bind.rsplit_once(':')) {
        (Some(port), Some((ip, _))) if ip != "0.0.0.0" => format!("{ip}:{port}"),
        _ => http.to_owned(),
    }
}

/// `ip:port` with `offset` added to the port.
fn offset_port(bind: &str, offset: u16) -> anyhow::Result<String> {
    let (ip, port) = bind
        .rsplit_once(':')
        .with_context(|| format!("bind address {bind:?} has no port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in bind address {bind:?}"))?;
    let port = port
        .checked_add(offset)
        .with_context(|| format!("port {port} + offset {offset} exceeds 65535"))?;
    Ok(format!("{ip}:{port}"))
}

fn is_fastdfs_conf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "conf")
}

fn load_tracker(path: Option<&Path>) -> anyhow::Result<TrackerConfig> {
    Ok(match path {
        None => TrackerConfig::default(),
        Some(p) if is_fastdfs_conf(p) => config::tracker_from_fastdfs(p)?,
        Some(p) => config::load_toml(p)?,
    })
}

fn load_storage(path: Option<&Path>) -> anyhow::Result<StorageConfig> {
    Ok(match path {
        None => StorageConfig::default(),
        Some(p) if is_fastdfs_conf(p) => config::storage_from_fastdfs(p)?,
        Some(p) => config::load_toml(p)?,
    })
}

/// Resolves when Ctrl-C or SIGTERM arrives.
async fn shutdown_signal() {
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
}

/// glibc's malloc gives threads arenas of their own, up to eight per CPU, and memory freed in
/// one arena serves no other. As tokio hands a worker's tasks to other threads
/// (`block_in_place`, for a lone request's small write), buffers spread over more arenas:
/// peak RSS over a series of upload benchmarks went from 43–51 MB to 66 MB. With one arena
/// per CPU it was 42 MB, no slower. `MALLOC_ARENA_MAX` or a `GLIBC_TUNABLES` arena limit,
/// when set, wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_malloc_arena_per_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(arenas) = arena_limit(
        std::env::var_os("MALLOC_ARENA_MAX").is_some(),
        std::env::var("GLIBC_TUNABLES").ok().as_deref(),
        cpus,
    ) else {
        return;
    };
    // SAFETY: mallopt only tunes the allocator, and no other thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

/// The arena limit to set: one per CPU, or none when the environment chose one already
/// (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn arena_limit(arena_max_set: bool, tunables: Option<&str>, cpus: usize) -> Option<i32> {
    let tuned = arena_max_set
        || tunables.is_some_and(|t| {
            t.split(':')
                .any(|kv| kv.starts_with("glibc.malloc.arena_max="))
        });
    (!tuned).then(|| i32::try_from(cpus.max(1)).unwrap_or(i32::MAX))
}

fn main() -> anyhow::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    one_malloc_arena_per_cpu();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run());
    // Blocking work still running after the drain must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let drain = Duration::from_secs(cli.drain_timeout);
    match cli.role {
        Role::Tracker {
            config,
            bind,
            base_path,
            http,
        } => {
            let mut cfg = load_tracker(config.as_deref())?;
            if let Some(b) = bind {
                cfg.http_bind = follow_bind_ip(&cfg.http_bind, &b);
                cfg.bind = b;
            }
            if let Some(p) = base_path {
                cfg.base_path = p;
            }
            if let Some(h) = http {
                cfg.http_bind = h;
            }
            let t = tracker::start(cfg).await.context("starting tracker")?;
            for line in fdfs_node::local::tracker_lines(&t) {
                println!("{line}");
            }
            shutdown_signal().await;
            t.stop(drain).await;
        }
        Role::Storage {
            config,
            bind,
            group,
            base_path,
            trackers,
            port_offset,
        } => {
            let mut cfg = load_storage(config.as_deref())?;
            if let Some(b) = bind {
                cfg.http.bind = follow_bind_ip(&cfg.http.bind, &b);
                cfg.bind = b;
            }
            if port_offset > 0 {
                cfg.bind = offset_port(&cfg.bind, port_offset)?;
            }
            if let Some(g) = group {
                cfg.group_name = g;
            }
            if let Some(p) = base_path {
                cfg.base_path = p;
            }
            if !trackers.is_empty() {
                cfg.tracker_servers = trackers;
            }
            anyhow::ensure!(
                !cfg.tracker_servers.is_empty(),
                "no tracker configured (tracker_servers or --tracker)"
            );
            let s = storage::start(cfg).await.context("starting storage")?;
            println!("storage {} {}", s.node.config.group_name, s.addr);
            shutdown_signal().await;
            s.stop(drain).await;
        }
        Role::Local {
            groups,
            replicas,
            trackers,
            data_dir,
            config,
            tracker_addr,
            storage_ip,
            storage_port,
            http_port,
            tracker_http_port,
            ip45_port,
        } => {
            let config: LocalConfig = match config {
                Some(p) => config::load_toml(&p)?,
                None => LocalConfig::default(),
            };
            let opts = LocalOptions {
                groups,
                replicas,
                trackers,
                data_dir,
                tracker_addr,
                first_storage_ip: storage_ip,
                storage_port,
                http_port,
                tracker_http_port,
                ip45_port,
                config,
            };
            let cluster = tokio::select! {
                c = LocalCluster::start(opts) => c.context("starting local cluster")?,
                _ = shutdown_signal() => return Ok(()),
            };
            for line in cluster.describe() {
                println!("{line}");
            }
            println!("ready");
            shutdown_signal().await;
            tracing::info!(?drain, "stopping");
            cluster.stop(drain).await;
            tracing::info!("stopped");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::arena_limit;

    #[test]
    fn one_arena_per_cpu_unless_the_environment_chose_a_limit() {
        assert_eq!(arena_limit(false, None, 2), Some(2));
        assert_eq!(arena_limit(false, None, 0), Some(1));
        assert_eq!(
            arena_limit(false, Some("glibc.malloc.tcache_count=0"), 4),
            Some(4)
        );
        assert_eq!(arena_limit(true, None, 2), None);
        assert_eq!(
            arena_limit(
                false,
                Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=8"),
                2
            ),
            None
        );
    }
}
