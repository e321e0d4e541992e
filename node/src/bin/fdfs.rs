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
        /// Create an appender file (can be appended to, modified, truncated).
        #[arg(long)]
        appender: bool,
    },
    /// Append a local file's bytes to an appender file.
    Append { file_id: FileId, file: PathBuf },
    /// Overwrite an appender file's bytes at an offset with a local file's bytes.
    Modify {
        file_id: FileId,
        offset: u64,
        file: PathBuf,
    },
    /// Cut an appender file to a size.
    Truncate { file_id: FileId, size: u64 },
    /// Turn an appender file into a normal file; prints the new file ID.
    Regenerate { file_id: FileId },
    /// Upload a slave file (e.g. a thumbnail) named after its master; prints its ID.
    UploadSlave {
        master: FileId,
        file: PathBuf,
        /// Suffix added to the master's name, e.g. `_150x150`.
        #[arg(long)]
        prefix: String,
        /// Extension (default: the file's own; empty for none).
        #[arg(long)]
        ext: Option<String>,
    },
    /// Read or write a file's metadata.
    Meta {
        #[command(subcommand)]
        op: MetaCmd,
    },
    /// Show a file's size, creation time, CRC-32 and source storage.
    Info {
        file_id: FileId,
        /// Ask the storage instead of decoding the file ID.
        #[arg(long)]
        remote: bool,
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

#[derive(Debug, Subcommand)]
enum MetaCmd {
    /// Print `key=value` lines.
    Get { file_id: FileId },
    /// Set `key=value` pairs, replacing all metadata unless `--merge`.
    Set {
        file_id: FileId,
        pairs: Vec<String>,
        #[arg(long)]
        merge: bool,
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

async fn info(c: &Client, id: &FileId, remote: bool) -> anyhow::Result<()> {
    let core = id.remote.core()?;
    let kind = if core.is_appender() {
        "appender"
    } else if id.remote.is_slave()? {
        "slave"
    } else {
        "normal"
    };
    // Appender and slave names do not carry an authoritative size and CRC.
    if remote || kind != "normal" {
        let i = c.file_info(id).await?;
        println!(
            "file id:     {id}\nkind:        {kind}\nsource:      {}\nsize:        {}\ncreated:     {}\ncrc32:       {:08x}",
            i.source_ip, i.file_size, i.create_timestamp, i.crc32
        );
    } else {
        println!(
            "file id:     {id}\nkind:        {kind}\nsource:      {}\nsize:        {}\ncreated:     {}\ncrc32:       {:08x}",
            core.source,
            core.file_size(),
            core.timestamp,
            core.crc32
        );
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
        Cmd::Upload {
            file,
            group,
            ext,
            appender: true,
        } => {
            let f = tokio::fs::File::open(file)
                .await
                .with_context(|| format!("opening {}", file.display()))?;
            let size = f.metadata().await?.len();
            let ext = ext
                .clone()
                .or_else(|| file.extension().map(|e| e.to_string_lossy().into_owned()));
            let id = c
                .upload_appender_reader(
                    tokio::io::BufReader::new(f),
                    size,
                    ext.as_deref().unwrap_or(""),
                    group.as_deref(),
                )
                .await?;
            println!("{id}");
        }
        Cmd::Upload {
            file,
            group,
            ext,
            appender: false,
        } => {
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
        Cmd::Append { file_id, file } => {
            let data =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            c.append_bytes(file_id, &data).await?;
            eprintln!("appended {} bytes to {file_id}", data.len());
        }
        Cmd::Modify {
            file_id,
            offset,
            file,
        } => {
            let data =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            c.modify_bytes(file_id, *offset, &data).await?;
            eprintln!("wrote {} bytes at {offset} of {file_id}", data.len());
        }
        Cmd::Truncate { file_id, size } => {
            c.truncate(file_id, *size).await?;
            eprintln!("truncated {file_id} to {size} bytes");
        }
        Cmd::Regenerate { file_id } => println!("{}", c.regenerate_appender_name(file_id).await?),
        Cmd::UploadSlave {
            master,
            file,
            prefix,
            ext,
        } => {
            let data =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let ext = ext
                .clone()
                .or_else(|| file.extension().map(|e| e.to_string_lossy().into_owned()));
            println!(
                "{}",
                c.upload_slave_bytes(master, prefix, ext.as_deref().unwrap_or(""), &data)
                    .await?
            );
        }
        Cmd::Meta {
            op: MetaCmd::Get { file_id },
        } => {
            for (k, v) in fdfs_node::storage::meta::to_pairs(&c.get_metadata(file_id).await?) {
                println!("{k}={v}");
            }
        }
        Cmd::Meta {
            op:
                MetaCmd::Set {
                    file_id,
                    pairs,
                    merge,
                },
        } => {
            let mut kv = Vec::new();
            for p in pairs {
                let (k, v) = p
                    .split_once('=')
                    .with_context(|| format!("{p:?} is not key=value"))?;
                kv.push((k, v));
            }
            c.set_metadata(file_id, &fdfs_node::storage::meta::encode_pairs(kv), *merge)
                .await?;
            eprintln!(
                "metadata of {file_id} {}",
                if *merge { "merged" } else { "set" }
            );
        }
        Cmd::Info { file_id, remote } => info(&c, file_id, *remote).await?,
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
