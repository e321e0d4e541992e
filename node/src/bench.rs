//! `fdfs bench`: upload and download N files of one size over C connections and
//! report throughput and latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientError};
use crate::fileid::FileId;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub files: usize,
    pub size: usize,
    pub concurrency: usize,
    pub group: Option<String>,
    /// Download each uploaded file this many times.
    pub download_rounds: usize,
    /// Delete the files afterwards (not timed).
    pub cleanup: bool,
    /// A server process on this machine whose CPU time and memory each phase reports.
    pub server_pid: Option<u32>,
}

/// Figures for one operation.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub op: &'static str,
    pub count: usize,
    pub bytes: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// The watched server's CPU time during this phase, and its peak RSS after it.
    pub server: Option<ServerUsage>,
}

/// What a watched server process used in one phase.
#[derive(Debug, Clone, Copy)]
pub struct ServerUsage {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
}

/// CPU time (user + system) of a process so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces, start past its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_sec = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

/// Peak resident memory of a process (`VmHWM`).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Runs `phase`, measuring the watched server's CPU time over it.
async fn watched<T>(pid: Option<u32>, phase: impl Future<Output = T>) -> (T, Option<ServerUsage>) {
    let before = pid.and_then(cpu_time);
    let out = phase.await;
    let usage = pid.and_then(|p| {
        Some(ServerUsage {
            cpu: cpu_time(p)?.saturating_sub(before?),
            peak_rss_bytes: peak_rss(p)?,
        })
    });
    (out, usage)
}

impl BenchReport {
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<8} {:>7} ops in {:>7.2}s  {:>9.0} ops/s  {:>8.1} MB/s  p50 {:>8.3} ms  p99 {:>8.3} ms",
            self.op,
            self.count,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            self.mb_per_sec(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
        )?;
        if let Some(u) = self.server {
            write!(
                f,
                "  server {:>6.1} µs CPU/op {:>6.1}% CPU  peak RSS {:>5.1} MiB",
                u.cpu.as_secs_f64() * 1e6 / self.count.max(1) as f64,
                u.cpu.as_secs_f64() * 100.0 / self.elapsed.as_secs_f64().max(1e-9),
                u.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            )?;
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(
    op: &'static str,
    mut lat: Vec<Duration>,
    bytes: u64,
    elapsed: Duration,
    server: Option<ServerUsage>,
) -> BenchReport {
    lat.sort_unstable();
    BenchReport {
        op,
        count: lat.len(),
        bytes,
        elapsed,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        server,
    }
}

/// Runs `job(i)` for i in 0..n over `concurrency` workers, timing each call.
async fn drive<T, F>(
    n: usize,
    concurrency: usize,
    job: F,
) -> Result<(Vec<T>, Vec<Duration>, Duration), ClientError>
where
    T: Send + 'static,
    F: Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send>>
        + Send
        + Sync
        + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (job, next) = (job.clone(), next.clone());
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let v = job(i).await?;
                out.push((i, v, t.elapsed()));
            }
            Ok::<_, ClientError>(out)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = workers.join_next().await {
        all.extend(r??);
    }
    let elapsed = start.elapsed();
    all.sort_by_key(|(i, _, _)| *i);
    let lat = all.iter().map(|(_, _, d)| *d).collect();
    Ok((all.into_iter().map(|(_, v, _)| v).collect(), lat, elapsed))
}

/// Uploads, then downloads (verifying length), then optionally deletes.
pub async fn run(
    client: Arc<Client>,
    opts: &BenchOptions,
) -> Result<Vec<BenchReport>, ClientError> {
    let payload: Arc<Vec<u8>> = Arc::new((0..opts.size).map(|i| (i * 31 % 251) as u8).collect());
    let (c, p, g) = (client.clone(), payload.clone(), opts.group.clone());
    let (uploaded, server) = watched(
        opts.server_pid,
        drive(opts.files, opts.concurrency, move |_| {
            let (c, p, g) = (c.clone(), p.clone(), g.clone());
            Box::pin(async move { c.upload_bytes(&p, "bin", g.as_deref()).await })
        }),
    )
    .await;
    let (ids, lat, elapsed) = uploaded?;
    let mut reports = vec![report(
        "upload",
        lat,
        (opts.files * opts.size) as u64,
        elapsed,
        server,
    )];
    let ids: Arc<Vec<FileId>> = Arc::new(ids);
    if opts.download_rounds > 0 {
        let total = ids.len() * opts.download_rounds;
        let (c, i2, size) = (client.clone(), ids.clone(), opts.size as u64);
        let (downloaded, server) = watched(
            opts.server_pid,
            drive(total, opts.concurrency, move |i| {
                let (c, ids) = (c.clone(), i2.clone());
                Box::pin(async move {
                    let mut sink = tokio::io::sink();
                    let id = &ids[i % ids.len()];
                    let n = c.download_to(id, 0, 0, &mut sink).await?;
                    if n != size {
                        return Err(ClientError::LengthMismatch {
                            file: id.to_string(),
                            expected: size,
                            got: n,
                        });
                    }
                    Ok(())
                })
            }),
        )
        .await;
        let (_, lat, elapsed) = downloaded?;
        reports.push(report(
            "download",
            lat,
            total as u64 * opts.size as u64,
            elapsed,
            server,
        ));
    }
    if opts.cleanup {
        let (c, i2) = (client.clone(), ids.clone());
        drive(ids.len(), opts.concurrency, move |i| {
            let (c, ids) = (c.clone(), i2.clone());
            Box::pin(async move { c.delete(&ids[i]).await })
        })
        .await?;
    }
    Ok(reports)
}
