//! End-to-end harness: starts real `fdfs-node` processes on loopback addresses,
//! waits for the lines they print, and runs real clients against them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Path of a binary built from this workspace (`fdfs-node`, `fdfs`).
///
/// Tests run from `target/<profile>/deps/`, so the binaries sit one level up.
/// `FDFS_BIN_DIR` overrides the directory.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("FDFS_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe()?;
            let deps = exe
                .parent()
                .context("test binary has no parent directory")?;
            deps.parent().context("no target directory")?.to_path_buf()
        }
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Root of the repository (for scripts under `e2e/py`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A running `fdfs-node local` process, stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct LocalProcess {
    child: Child,
    /// The first tracker's main address.
    pub tracker: SocketAddr,
    /// Every tracker's main address.
    pub trackers: Vec<SocketAddr>,
    /// Extra tracker ports: (address, profile name).
    pub extra_ports: Vec<(SocketAddr, String)>,
    /// (group, address) of each storage.
    pub storages: Vec<(String, SocketAddr)>,
    /// HTTP address of each storage that has one, in the order of `storages`.
    pub storage_http: Vec<SocketAddr>,
    /// Every line printed before `ready`.
    pub lines: Vec<String>,
}

impl LocalProcess {
    /// Starts `fdfs-node local` with extra arguments and waits for `ready`.
    pub fn start(data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(Command::new(workspace_binary("fdfs-node")?), data_dir, args)
    }

    /// [`LocalProcess::start`] under an open-file limit (`prlimit --nofile`), as a systemd
    /// unit or a container runtime may set it.
    pub fn start_with_open_files(
        data_dir: &Path,
        args: &[&str],
        open_files: u64,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={open_files}:{open_files}"))
            .arg("--")
            .arg(workspace_binary("fdfs-node")?);
        Self::spawn(command, data_dir, args)
    }

    fn spawn(mut command: Command, data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = command
            .arg("local")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning fdfs-node local")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(l) if l == "ready" => break,
                Ok(l) => lines.push(l),
                Err(_) => {
                    let _ = child.kill();
                    bail!("fdfs-node local did not print `ready`; got {lines:?}");
                }
            }
        }
        let mut trackers = Vec::new();
        let mut extra_ports = Vec::new();
        let mut storages = Vec::new();
        let mut storage_http = Vec::new();
        for l in &lines {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                ["tracker", addr, rest @ ..] => {
                    match rest.iter().find_map(|w| w.strip_prefix("profile=")) {
                        Some(profile) => extra_ports.push((addr.parse()?, profile.to_owned())),
                        None => trackers.push(addr.parse()?),
                    }
                }
                ["storage", group, addr, rest @ ..] => {
                    storages.push(((*group).to_owned(), addr.parse()?));
                    if let Some(http) = rest.iter().find_map(|w| w.strip_prefix("http=")) {
                        storage_http.push(http.parse()?);
                    }
                }
                _ => bail!("unexpected line from fdfs-node local: {l:?}"),
            }
        }
        Ok(LocalProcess {
            child,
            tracker: *trackers.first().context("no tracker line")?,
            trackers,
            extra_ports,
            storages,
            storage_http,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = self.stop()?;
        Ok(status)
    }

    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        match sigterm_and_wait(&mut self.child, Duration::from_secs(15))? {
            Some(status) => Ok(status),
            None => {
                self.child.kill()?;
                bail!("fdfs-node local ignored SIGTERM for 15 s")
            }
        }
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM and waits up to `limit` for the process to exit; `None` if it did not.
fn sigterm_and_wait(
    child: &mut Child,
    limit: Duration,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).context("bad pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
}

/// One `fdfs-node tracker` or `fdfs-node storage` process; killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// The lines it printed once it was serving.
    pub lines: Vec<String>,
}

impl NodeProcess {
    /// Starts `fdfs-node <args>` and waits for its first line (printed once it listens).
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(workspace_binary("fdfs-node")?);
        command.args(args).stderr(Stdio::inherit());
        Self::spawn(command, args)
    }

    /// Starts `fdfs-node <args>` in a mount namespace of its own where `disk` is a tmpfs of
    /// `megabytes` (a small disk that fills up), its log going to `log`. Needs root, as the
    /// machines the suite runs on have. The tmpfs goes away with the process; the test reaches
    /// it through `/proc/<pid>/root`.
    pub fn start_on_small_disk(
        args: &[&str],
        disk: &Path,
        megabytes: u32,
        log: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(disk)?;
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={megabytes}m tmpfs \"$1\" && shift && exec \"$@\""
            ))
            .arg("sh")
            .arg(disk)
            .arg(workspace_binary("fdfs-node")?)
            .args(args)
            .stderr(std::fs::File::create(log)?);
        Self::spawn(command, args)
    }

    /// Starts `fdfs-node <args>` inside network namespace `netns` (`ip netns exec`).
    pub fn start_in_netns(netns: &str, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(workspace_binary("fdfs-node")?)
            .args(args)
            .stderr(Stdio::inherit());
        Self::spawn(command, args)
    }

    /// The process id, to reach its view of the file system under `/proc/<pid>/root`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(mut command: Command, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning fdfs-node")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(first) => {
                let mut lines = vec![first];
                while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                    lines.push(l);
                }
                Ok(NodeProcess { child, lines })
            }
            Err(_) => {
                let _ = child.kill();
                bail!("fdfs-node {args:?} printed nothing")
            }
        }
    }

    /// SIGTERM, as an operator stops a node, and waits up to 30 s for it to exit.
    pub fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        sigterm_and_wait(&mut self.child, Duration::from_secs(30))?
            .context("fdfs-node ignored SIGTERM for 30 s")
    }

    /// SIGKILL: the process gets no chance to say goodbye.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates (or reuses) the venv with the third-party Python clients; returns its python.
pub fn python_venv() -> anyhow::Result<PathBuf> {
    let script = repo_root().join("e2e/py/setup-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .context("running setup-venv.sh")?;
    if !out.status.success() {
        bail!("setup-venv.sh failed with {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let python = text
        .lines()
        .last()
        .context("setup-venv.sh printed nothing")?
        .trim();
    Ok(PathBuf::from(python))
}

/// Runs a workspace binary to completion, returning stdout or failing with stderr.
pub fn run_binary(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(workspace_binary(name)?).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{name} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Polls `check` until it holds, for up to `limit` (the workspace's one wait).
pub use fdfs_test_support::wait_for;

/// One HTTP/1.1 GET on a fresh connection: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: fdfs\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await??;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response header")?;
    let status = std::str::from_utf8(reply.get(9..12).context("no status line")?)?.parse()?;
    Ok((status, reply[split + 4..].to_vec()))
}

/// Members of `group` the trackers list as ACTIVE (0 when none answers).
pub async fn active_count(client: &fdfs_node::client::Client, group: &str) -> usize {
    client
        .list_storages(group)
        .await
        .map(|l| {
            l.iter()
                .filter(|m| m.status == fdfs_node::proto::StorageStatus::Active as u8)
                .count()
        })
        .unwrap_or(0)
}

/// Uploads `data` straight to the storage at `storage`, which picks the store path (no
/// tracker involved).
pub async fn upload_to(
    client: &fdfs_node::client::Client,
    storage: SocketAddr,
    data: &[u8],
) -> anyhow::Result<fdfs_node::fileid::FileId> {
    let head = fdfs_node::proto::storage::UploadHead {
        store_path_index: 0xFF,
        file_size: data.len() as u64,
        ext: "bin".into(),
    };
    Ok(client.upload_to(storage, head, &mut &data[..]).await?)
}

/// Runs `ip` (iproute2) with `args`.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .context("running ip")?;
    anyhow::ensure!(status.success(), "ip {args:?} failed");
    Ok(())
}

/// Runs `work` on a thread inside network namespace `netns` (one `ip netns add` made), with
/// a runtime of its own. Processes the work starts are in that namespace too.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl AsyncFnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    use std::os::fd::AsFd;
    let ns = std::fs::File::open(format!("/var/run/netns/{netns}"))?;
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(work())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread in network namespace {netns} panicked"))?
}
