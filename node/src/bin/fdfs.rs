//! `fdfs`: command-line client for any FastDFS-protocol cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fdfs_node::bench::{self, BenchOptions};
use fdfs_node::client::{Client, ClientConfig, WriteProfile, migrate};
use fdfs_node::config;
use fdfs_node::fileid::FileId;
use fdfs_node::proto::StorageStatus;
use fdfs_node::proto::monitor::SyncDelay;

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
    /// How requests are written: `single` (one write, TCP_NODELAY), or `split` as FastDFS's
    /// C and Java clients do (Nagle on, an upload's header and body in separate writes).
    #[arg(long, global = true, value_enum, default_value_t = ClientProfile::Single)]
    client_profile: ClientProfile,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClientProfile {
    Single,
    Split,
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
    /// Show groups and storages like fdfs_monitor, or delete a storage or group.
    Monitor {
        #[command(subcommand)]
        op: Option<MonitorOp>,
    },
    /// Retire group members safely (moving a group off old storages, or shrinking it).
    Migrate {
        #[command(subcommand)]
        op: MigrateOp,
    },
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
        /// A server process on this machine whose CPU time per operation and peak RSS
        /// each phase reports (e.g. the `fdfs-node local` being measured).
        #[arg(long)]
        server_pid: Option<u32>,
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

#[derive(Debug, Subcommand)]
enum MigrateOp {
    /// For every member of a group (or of every group), on every tracker: whether each file
    /// it took is on the other members, so that it may be retired.
    Status { group: Option<String> },
    /// Wait until member ID (server id, or IP address without storage ids) is stopped and
    /// every file it took is on the others, on every tracker; then delete it from them all.
    Retire {
        group: String,
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        wait_seconds: u64,
    },
    /// Lift the fence `retire` puts on a member, on every tracker: uploads may go to it
    /// again (the way back from a retirement that did not finish).
    Unfence { group: String, id: String },
}

#[derive(Debug, Subcommand)]
enum MonitorOp {
    /// List every group (or one) with its storages (the default).
    List { group: Option<String> },
    /// Delete a stopped storage (93), or an empty group (108) when no id is given,
    /// on every tracker.
    Delete { group: String, id: Option<String> },
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

fn client_config(cli: &Cli) -> anyhow::Result<ClientConfig> {
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
    cfg.write_profile = match cli.client_profile {
        ClientProfile::Single => WriteProfile::Single,
        ClientProfile::Split => WriteProfile::Split,
    };
    Ok(cfg)
}

fn status_name(status: u8) -> String {
    StorageStatus::from_byte(status)
        .map(|s| s.name().to_owned())
        .unwrap_or_else(|| status.to_string())
}

fn rw_name(rw_mode: u8) -> &'static str {
    match rw_mode {
        6 => "both",
        4 => "readonly",
        2 => "writeonly",
        _ => "none",
    }
}

/// `fdfs migrate status`: one line per member and tracker.
async fn migrate_status(
    c: &Client,
    config: &ClientConfig,
    group: Option<&str>,
) -> anyhow::Result<()> {
    let groups: Vec<String> = match group {
        Some(g) => vec![g.to_owned()],
        None => c
            .list_groups()
            .await?
            .into_iter()
            .map(|g| g.group)
            .collect(),
    };
    for group in groups {
        println!("group {group}");
        for s in c.list_storages(&group).await? {
            if s.status == StorageStatus::Deleted as u8 {
                continue;
            }
            for &tracker in c.trackers() {
                let line = match migrate::standing(config, tracker, &group, &s.id, None).await? {
                    migrate::Standing::Gone => "not listed".to_owned(),
                    migrate::Standing::Running {
                        held_elsewhere: Ok(()),
                        ..
                    } => "serving; every file it took is on the others: may be stopped and \
                          retired"
                        .to_owned(),
                    migrate::Standing::Stopped {
                        held_elsewhere: Ok(()),
                    } => "stopped; every file it took is on the others: may be retired".to_owned(),
                    migrate::Standing::Running {
                        held_elsewhere: Err(why),
                        ..
                    } => format!("serving; not yet: {why}"),
                    migrate::Standing::Stopped {
                        held_elsewhere: Err(why),
                    } => format!("stopped; not yet: {why} (start it again to finish)"),
                };
                println!("  {} {} (tracker {tracker}): {line}", s.id, s.ip);
            }
        }
    }
    Ok(())
}

/// `N MB` below a gigabyte, else `x.yz GB`, as fdfs_monitor prints space.
fn human_mb(mb: u64) -> String {
    if mb < 1024 {
        format!("{mb} MB")
    } else if mb < 1024 * 1024 {
        format!("{:.2} GB", mb as f64 / 1024.0)
    } else {
        format!("{:.2} TB", mb as f64 / (1024.0 * 1024.0))
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC; empty for 0.
fn datetime(ts: u64) -> String {
    if ts == 0 {
        return String::new();
    }
    let days = (ts / 86400) as i64;
    let secs = ts % 86400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The same listing as `fdfs_monitor <conf> list [group]`.
async fn monitor_list(c: &Client, only: Option<&str>) -> anyhow::Result<()> {
    let groups = c.list_groups().await?;
    println!("tracker server count={}", c.trackers().len());
    if let Ok(leader) = c.leader().await {
        println!("\ntracker server is {leader}\n");
    }
    if only.is_none() {
        println!("group count: {}", groups.len());
    }
    let mut n = 0;
    for g in groups.iter().filter(|g| only.is_none_or(|o| o == g.group)) {
        n += 1;
        if only.is_none() {
            println!("\nGroup {n}:");
        }
        println!("group name = {}", g.group);
        println!("disk total space     = {:>7}", human_mb(g.total_mb));
        println!("disk free space      = {:>7}", human_mb(g.free_mb));
        println!("disk reserved space  = {:>7}", human_mb(g.reserved_mb));
        println!(
            "disk available space = {:>7}",
            human_mb(g.free_mb.saturating_sub(g.reserved_mb))
        );
        println!("trunk free space     = {:>7}", human_mb(g.trunk_free_mb));
        println!("storage server count = {}", g.storage_count);
        println!("readable server count = {}", g.readable_count);
        println!("writable server count = {}", g.writable_count);
        println!("storage server port = {}", g.storage_port);
        println!("store path count = {}", g.store_path_count);
        println!("subdir count per path = {}", g.subdir_count_per_path);
        println!("current write server index = {}", g.current_write_server);
        println!(
            "current trunk file id = {}\n",
            g.current_trunk_file_id.max(0)
        );
        let storages = c.list_storages(&g.group).await?;
        // Bytes behind come from this project's trackers only; a FastDFS tracker has none.
        let backlog = c.sync_backlog(&g.group).await.ok().flatten();
        for (k, s) in storages.iter().enumerate() {
            println!("\tStorage {}:", k + 1);
            println!("\t\tid = {}", s.id);
            println!(
                "\t\thost = {}:{}  {}",
                s.ip,
                s.storage_port,
                status_name(s.status)
            );
            println!("\t\tread write mode = {}", rw_name(s.rw_mode));
            println!("\t\tversion = {}", s.version);
            println!("\t\tjoin time = {}", datetime(s.join_time));
            println!("\t\tup time = {}", datetime(s.up_time));
            println!("\t\tdisk total space     = {:>7}", human_mb(s.total_mb));
            println!("\t\tdisk free space      = {:>7}", human_mb(s.free_mb));
            println!("\t\tdisk reserved space  = {:>7}", human_mb(s.reserved_mb));
            println!(
                "\t\tdisk available space = {:>7}",
                human_mb(s.free_mb.saturating_sub(s.reserved_mb))
            );
            println!("\t\tupload priority = {}", s.upload_priority);
            println!("\t\tstore_path_count = {}", s.store_path_count);
            println!("\t\tsubdir_count_per_path = {}", s.subdir_count_per_path);
            println!("\t\tcurrent_write_path = {}", s.current_write_path);
            println!("\t\tsource storage id = {}", s.src_id);
            println!("\t\tif_trunk_server = {}", u8::from(s.if_trunk_server));
            let [alloc, current, max] = s.stats.connections;
            println!("\t\tconnection.alloc_count = {alloc}");
            println!("\t\tconnection.current_count = {current}");
            println!("\t\tconnection.max_count = {max}");
            for (name, v) in fdfs_node::proto::monitor::COUNTER_NAMES
                .iter()
                .zip(s.stats.counters)
            {
                println!("\t\t{name} = {v}");
            }
            println!(
                "\t\tlast_heart_beat_time = {}",
                datetime(s.stats.last_heart_beat_time)
            );
            println!(
                "\t\tlast_source_update = {}",
                datetime(s.stats.last_source_update)
            );
            println!(
                "\t\tlast_sync_update = {}",
                datetime(s.stats.last_sync_update)
            );
            let delay = SyncDelay::of_member(s, &storages);
            println!(
                "\t\tlast_synced_timestamp = {} {delay}",
                datetime(s.stats.last_synced_timestamp)
            );
            for r in backlog
                .iter()
                .flatten()
                .filter(|r| r.backlog.peer_id == s.id)
            {
                println!(
                    "\t\tsync backlog from {} = {} bytes ({}s)",
                    r.source_id, r.backlog.bytes, r.backlog.seconds
                );
            }
        }
    }
    if let Some(o) = only
        && n == 0
    {
        anyhow::bail!("group {o} not found");
    }
    Ok(())
}

/// `fdfs_monitor <conf> delete <group> [<id>]`: on every tracker.
async fn monitor_delete(c: &Client, group: &str, id: Option<&str>) -> anyhow::Result<()> {
    let (what, results) = match id {
        Some(id) => (
            format!("storage server {group}::{id}"),
            c.delete_storage(group, id).await,
        ),
        None => (format!("group: {group}"), c.delete_group(group).await),
    };
    let mut failures = Vec::new();
    for (tracker, r) in results {
        match r {
            Ok(fdfs_node::proto::Status::Ok) => {
                println!("delete {what} success ({tracker})")
            }
            Ok(status) => failures.push(format!("{tracker}: {status}")),
            Err(e) => failures.push(format!("{tracker}: {e}")),
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "delete {what} fail: {}",
        failures.join("; ")
    );
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
    let config = client_config(&cli)?;
    let c = Client::new(config.clone()).await?;
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
        Cmd::Monitor { op } => match op {
            None => monitor_list(&c, None).await?,
            Some(MonitorOp::List { group }) => monitor_list(&c, group.as_deref()).await?,
            Some(MonitorOp::Delete { group, id }) => {
                monitor_delete(&c, group, id.as_deref()).await?
            }
        },
        Cmd::Migrate {
            op: MigrateOp::Status { group },
        } => migrate_status(&c, &config, group.as_deref()).await?,
        Cmd::Migrate {
            op:
                MigrateOp::Retire {
                    group,
                    id,
                    wait_seconds,
                },
        } => {
            let mut last = String::new();
            migrate::retire(
                &c,
                &config,
                group,
                id,
                Duration::from_secs(*wait_seconds),
                |why| {
                    if why != last {
                        eprintln!("waiting: {why}");
                        last = why.to_owned();
                    }
                },
            )
            .await?;
            println!("retired {id} from {group} on every tracker");
        }
        Cmd::Migrate {
            op: MigrateOp::Unfence { group, id },
        } => {
            for (tracker, outcome) in c.fence_storage(group, id, false).await {
                match outcome? {
                    fdfs_node::proto::Status::Ok => {
                        println!("{tracker}: uploads may go to {id} again")
                    }
                    status => println!("{tracker}: {status}"),
                }
            }
        }
        Cmd::Bench {
            files,
            size,
            concurrency,
            group,
            download_rounds,
            keep,
            server_pid,
        } => {
            let opts = BenchOptions {
                files: *files,
                size: *size,
                concurrency: *concurrency,
                group: group.clone(),
                download_rounds: *download_rounds,
                cleanup: !keep,
                server_pid: *server_pid,
            };
            println!(
                "bench: {files} files of {size} bytes, {concurrency} connection(s), {:?} writes",
                cli.client_profile
            );
            for r in bench::run(Arc::new(c), &opts).await? {
                println!("{r}");
            }
        }
    }
    Ok(())
}
