//! `fdfs`: command-line client for any FastDFS-protocol cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fdfs_node::bench::{self, BenchOptions};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::config;
use fdfs_node::fileid::FileId;
use fdfs_node::proto::StorageStatus;

#[derive(Debug, Parser)]
#[command(name = "fdfs", version, about = "FastDFS command-line client")]
struct Cli {
    /// Tracker `host:port` (repeatable).
    #[arg(long = "tracker", global = true)]
    trackers: Vec<String>,
    /// FastDFS client.conf to read `tracker_server` lines from.
    #[arg(long, global = true)]
    conf: Option<PathBuf>,
    /// Connect timeout in seconds.
    #[arg(long, global = true, default_value_t = 5)]
    connect_timeout: u64,
    /// Network (I/O) timeout in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    network_timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Upload a file; prints its file ID.
    Upload {
        file: PathBuf,
        #[arg(long)]
        group: Option<String>,
        /// Extension to record (default: the file's own).
        #[arg(long)]
        ext: Option<String>,
    },
    /// Download a file ID to a local path (`-` for stdout).
    Download {
        file_id: FileId,
        path: PathBuf,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Bytes to read; 0 = to the end.
        #[arg(long, default_value_t = 0)]
        length: u64,
    },
    /// Delete a file ID.
    Delete { file_id: FileId },
    /// Show groups and storages.
    Monitor,
    /// Measure upload and download throughput.
    Bench {
        #[arg(long, default_value_t = 1000)]
        files: usize,
        /// File size in bytes (suffixes K, M allowed).
        #[arg(long, default_value = "4K", value_parser = parse_size)]
        size: usize,
        #[arg(long, short = 'c', default_value_t = 1)]
        concurrency: usize,
        #[arg(long)]
        group: Option<String>,
        /// Downloads per uploaded file (0 skips downloads).
        #[arg(long, default_value_t = 1)]
        download_rounds: usize,
        /// Keep the uploaded files.
        #[arg(long)]
        keep: bool,
    },
}

fn parse_size(s: &str) -> Result<usize, String> {
    let u = s.to_ascii_uppercase();
    let (num, mult) = match u.strip_suffix('K').or(u.strip_suffix("KB")) {
        Some(n) => (n, 1024),
        None => match u.strip_suffix('M').or(u.strip_suffix("MB")) {
            Some(n) => (n, 1024 * 1024),
            None => (u.as_str(), 1),
        },
    };
    num.parse::<usize>()
        .map(|n| n * mult)
        .map_err(|_| format!("bad size {s:?}"))
}

async fn client(cli: &Cli) -> anyhow::Result<Client> {
    let mut trackers = cli.trackers.clone();
    if let Some(conf) = &cli.conf {
        trackers.extend(config::trackers_from_client_conf(conf)?);
    }
    if trackers.is_empty() {
        trackers.push("127.0.0.1:22122".into());
    }
    let mut cfg = ClientConfig::new(trackers);
    cfg.connect_timeout = Duration::from_secs(cli.connect_timeout.max(1));
    cfg.network_timeout = Duration::from_secs(cli.network_timeout.max(1));
    Ok(Client::new(cfg).await?)
}

fn status_name(status: u8) -> String {
    StorageStatus::from_byte(status)
        .map(|s| s.name().to_owned())
        .unwrap_or_else(|| status.to_string())
}

async fn monitor(c: &Client) -> anyhow::Result<()> {
    let groups = c.list_groups().await?;
    println!("{} group(s)", groups.len());
    for g in groups {
        println!(
            "\ngroup {}: {} storage(s), {} active, free {} MB of {} MB (reserved {} MB)",
            g.group, g.storage_count, g.writable_count, g.free_mb, g.total_mb, g.reserved_mb
        );
        println!(
            "  {:<16} {:<22} {:<10} {:>10} {:>10} {:>10} {:>10}",
            "ID", "ADDRESS", "STATUS", "FREE_MB", "TOTAL_MB", "UPLOADS", "DOWNLOADS"
        );
        for s in c.list_storages(&g.group).await? {
            println!(
                "  {:<16} {:<22} {:<10} {:>10} {:>10} {:>10} {:>10}",
                s.id,
                format!("{}:{}", s.ip, s.storage_port),
                status_name(s.status),
                s.free_mb,
                s.total_mb,
                s.stats.counters[fdfs_node::proto::monitor::counter::SUCCESS_UPLOAD],
                s.stats.counters[fdfs_node::proto::monitor::counter::SUCCESS_DOWNLOAD],
            );
        }
    }
    Ok(())
}

async fn download(
    c: &Client,
    id: &FileId,
    path: &Path,
    offset: u64,
    length: u64,
) -> anyhow::Result<u64> {
    if path == Path::new("-") {
        let mut out = tokio::io::stdout();
        let n = c.download_to(id, offset, length, &mut out).await?;
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        Ok(n)
    } else {
        Ok(c.download_file(id, path, offset, length).await?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let c = client(&cli).await?;
    match &cli.cmd {
        Cmd::Upload { file, group, ext } => {
            let id = c
                .upload_file(file, ext.as_deref(), group.as_deref())
                .await
                .with_context(|| format!("uploading {}", file.display()))?;
            println!("{id}");
        }
        Cmd::Download {
            file_id,
            path,
            offset,
            length,
        } => {
            let n = download(&c, file_id, path, *offset, *length).await?;
            eprintln!("downloaded {n} bytes of {file_id}");
        }
        Cmd::Delete { file_id } => {
            c.delete(file_id).await?;
            eprintln!("deleted {file_id}");
        }
        Cmd::Monitor => monitor(&c).await?,
        Cmd::Bench {
            files,
            size,
            concurrency,
            group,
            download_rounds,
            keep,
        } => {
            let opts = BenchOptions {
                files: *files,
                size: *size,
                concurrency: *concurrency,
                group: group.clone(),
                download_rounds: *download_rounds,
                cleanup: !keep,
            };
            println!("bench: {files} files of {size} bytes, {concurrency} connection(s)");
            for r in bench::run(Arc::new(c), &opts).await? {
                println!("{r}");
            }
        }
    }
    Ok(())
}
