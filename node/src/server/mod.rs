//! The TCP plumbing both roles share: a listener with a connection cap and a
//! graceful stop, and a per-connection framed reader/writer.

pub mod acl;
mod connection;
pub mod http;
pub mod quickack;

pub use connection::{ConnError, Connection, send_file};

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How one role serves one connection.
pub trait Service: Send + Sync + 'static {
    /// Serves requests on `conn` until the peer leaves, a fatal error, or `stop`.
    fn serve(
        self: Arc<Self>,
        conn: Connection,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Whether `ip` is a cluster peer (a tracker, a member of the group, a storage of the
    /// cluster) that may use the slots kept back from clients.
    fn is_peer(&self, _ip: IpAddr) -> bool {
        false
    }
}

/// File descriptors connections may not use: files being read and written, binlogs, state
/// files, outgoing links to trackers and peers. Beyond them, each connection counts twice
/// (itself and the file it may have open).
fn fd_reserve(limit: u64) -> u64 {
    (limit / 4).max(256)
}

/// The process's connection budget, shared by every listener of every role (protocol and
/// HTTP), so running out of descriptors refuses connections instead of failing uploads,
/// binlog writes and state saves.
pub fn fd_budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(Semaphore::new(fd_budget_size())))
}

/// How many connections the budget holds, from the open-file limit at first use.
pub fn fd_budget_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let connections = limit.saturating_sub(fd_reserve(limit)) / 2;
        let connections = usize::try_from(connections)
            .unwrap_or(usize::MAX)
            .clamp(16, Semaphore::MAX_PERMITS);
        tracing::debug!(open_files = limit, connections, "connection budget");
        connections
    })
}

/// Logs refused connections at most once a second: a flood must not flood the log too.
#[derive(Debug, Default)]
struct Refusals {
    last_logged: AtomicU64,
}

impl Refusals {
    fn note(&self, log: impl FnOnce()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_logged.swap(now, Ordering::Relaxed) != now {
            log();
        }
    }
}

/// Slots a listener keeps for cluster peers beyond `max_connections`, so a flood of client
/// connections cannot cut heartbeats and replication.
fn peer_slots(max_connections: usize) -> usize {
    (max_connections / 8).clamp(1, 32)
}

/// Connections one client address may hold: half the listener's, so one address cannot
/// take them all (all of a very small limit).
fn per_address_cap(max_connections: usize) -> usize {
    (max_connections / 2).max(max_connections.min(4))
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerAddress(std::sync::Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    fn try_take(&self, ip: IpAddr, cap: usize) -> bool {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// A connection's claim on the listener's slots, given back when it ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    address: Option<(Arc<PerAddress>, IpAddr)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((open, ip)) = &self.address {
            open.give_back(*ip);
        }
    }
}

/// A listener's connection slots: `max_connections` shared by everyone, at most half of
/// them per client address, and a few more that only peers may use.
struct Slots {
    shared: Arc<Semaphore>,
    for_peers: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    cap: usize,
}

impl Slots {
    fn new(max_connections: usize) -> Self {
        let max_connections = max_connections.max(1);
        Slots {
            shared: Arc::new(Semaphore::new(max_connections)),
            for_peers: Arc::new(Semaphore::new(peer_slots(max_connections))),
            per_address: Arc::default(),
            cap: per_address_cap(max_connections),
        }
    }

    /// A slot for a connection from `ip`, or why there is none.
    fn claim(&self, ip: IpAddr, is_peer: bool) -> Result<Slot, &'static str> {
        if is_peer {
            let permit = (self.shared.clone().try_acquire_owned())
                .or_else(|_| self.for_peers.clone().try_acquire_owned())
                .map_err(|_| "every slot, the peers' included, is taken")?;
            return Ok(Slot {
                _permit: permit,
                address: None,
            });
        }
        let permit =
            (self.shared.clone().try_acquire_owned()).map_err(|_| "max_connections reached")?;
        if !self.per_address.try_take(ip, self.cap) {
            return Err("this address holds half of max_connections already");
        }
        Ok(Slot {
            _permit: permit,
            address: Some((self.per_address.clone(), ip)),
        })
    }
}

/// How long a connection may stall mid-packet, sit idle between packets, and take to
/// send its first request header.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub network: Duration,
    pub idle: Duration,
    pub header: Duration,
}

/// Accepts connections until `stop` fires, then waits up to `drain` for them to end.
///
/// Clients share `max_connections`, at most half of it per address; peers
/// (`Service::is_peer`) use those slots or, when they are gone, a few of their own.
pub async fn run_listener<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    max_connections: usize,
    timeouts: Timeouts,
    stop: CancellationToken,
    drain: Duration,
) {
    let slots = Slots::new(max_connections);
    let refusals = Refusals::default();
    let mut tasks = JoinSet::new();
    while let Some((stream, peer)) = accept(&listener, &stop, &refusals).await {
        let is_peer = service.is_peer(peer.ip());
        // Peers are not held to the budget: replication and heartbeats go on.
        let fds = if is_peer {
            None
        } else {
            match fd_budget().clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    refusals.note(|| {
                        tracing::warn!(%peer, "connection refused: the process's file descriptor budget is spent")
                    });
                    continue;
                }
            }
        };
        let slot = match slots.claim(peer.ip(), is_peer) {
            Ok(slot) => slot,
            Err(why) => {
                refusals.note(
                    || tracing::warn!(%peer, max_connections, why, "connection refused; closing"),
                );
                drop(stream);
                continue;
            }
        };
        // Replies go out whole; small ones must not wait for the peer's ACK.
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let conn = Connection::new(stream, peer, local, timeouts);
        let service = service.clone();
        // A token of the connection's own: waiting on it for every request takes only its
        // lock, not the one all connections of the listener share.
        let stop = stop.child_token();
        tasks.spawn(async move {
            service.serve(conn, stop).await;
            drop((slot, fds));
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    drain_connections(tasks, drain).await;
}

/// The next connection `listener` accepts, or `None` once `stop` fires. Failed accepts
/// (usually EMFILE) back off instead of spinning.
async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
    refusals: &Refusals,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(x) => return Some(x),
            Err(e) => {
                refusals.note(|| tracing::warn!(error = %e, "accept failed"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Lets the connections of a stopped listener finish for up to `drain`, then ends them.
async fn drain_connections(mut tasks: JoinSet<()>, drain: Duration) {
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

/// Binds `addr`, returning the listener and its actual address (for port 0).
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Command, HEADER_LEN, Header, Status};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each request with one byte: whether the socket was in quick-ACK mode
    /// once the server had waited for the request's body.
    struct ReportQuickAck;

    impl Service for ReportQuickAck {
        async fn serve(self: Arc<Self>, mut conn: Connection, _stop: CancellationToken) {
            while let Ok(Some(header)) = conn.read_header(64).await {
                if conn.read_body(header.body_len).await.is_err() {
                    return;
                }
                let armed = conn.quickack().expect("getsockopt");
                if conn.reply(Status::Ok, &[u8::from(armed)]).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Sends requests the way the C client does (Nagle on, pooled connection, header and
    /// body in separate writes) and reads the server side's quick-ACK state after each.
    async fn quickack_states(addr: SocketAddr, requests: usize) -> Vec<u8> {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.set_nodelay(false).expect("nagle on");
        let mut states = Vec::new();
        for _ in 0..requests {
            let header = Header::request(Command::ActiveTest, 8).encode();
            client.write_all(&header).await.expect("send the header");
            client.write_all(&[7; 8]).await.expect("send the body");
            let mut reply = [0u8; HEADER_LEN + 1];
            client.read_exact(&mut reply).await.expect("reply");
            states.push(reply[HEADER_LEN]);
        }
        states
    }

    #[tokio::test]
    async fn accepted_connections_are_in_quickack_mode_while_a_request_is_incomplete() {
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let stop = CancellationToken::new();
        let timeouts = Timeouts {
            network: Duration::from_secs(5),
            idle: Duration::from_secs(5),
            header: Duration::from_secs(5),
        };
        let served = tokio::spawn(run_listener(
            listener,
            Arc::new(ReportQuickAck),
            8,
            timeouts,
            stop.clone(),
            Duration::from_secs(1),
        ));
        // After the first reply Linux treats the connection as interactive and would
        // delay ACKs; only TCP_QUICKACK re-armed while the server waits for the body reads
        // 1 on the later requests.
        assert_eq!(quickack_states(addr, 5).await, [1, 1, 1, 1, 1]);
        stop.cancel();
        served.await.expect("listener");
    }

    #[tokio::test]
    async fn http_connections_are_in_quickack_mode_after_every_read() {
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.set_nodelay(false).expect("nagle on");
        // The HTTP listener wraps each accepted stream so.
        let (accepted, _) = listener.accept().await.expect("accept");
        let mut server = quickack::QuickAckStream::new(accepted);
        let mut states = Vec::new();
        for _ in 0..5 {
            client.write_all(b"ping").await.expect("send");
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.expect("read");
            states.push(server.quickack().expect("getsockopt"));
            server.write_all(b"pong").await.expect("reply");
            client.read_exact(&mut got).await.expect("pong");
        }
        assert_eq!(states, [true; 5]);
    }
}
