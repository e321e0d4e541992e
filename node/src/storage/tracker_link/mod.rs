//! The one owner of this storage's connections to its trackers: the report session with
//! each tracker (`session`: join, beats, disk and sync reports, the changelog, a move to a
//! new address) and the short calls sync and recovery make (`calls`: 86, 76, 71, 92), with
//! the tracker addresses resolved in one place. Bodies are `proto` types both ways.
//!
//! A short call travels on the report session's connection to that tracker when one
//! stands ([`Sessions`]); only before a session stands (a recovery asks first) or while it
//! stops does a call open a connection of its own.

mod calls;
mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::proto::{Command, Status};

use crate::client::conn::resolve;
use crate::storage::StorageNode;
pub(super) use calls::Trackers;
pub(super) use session::{init_flag_path_in, run};

/// Every address the configured tracker names resolve to, sorted, without repeats (a name
/// that resolves to several addresses is several trackers). Names that do not resolve
/// now are logged and left out.
pub(super) async fn resolve_all(node: &StorageNode) -> Vec<SocketAddr> {
    let mut trackers = Vec::new();
    for t in &node.config.tracker_servers {
        match resolve(t).await {
            Ok(a) => trackers.extend(a),
            Err(e) => tracing::warn!(tracker = %t, error = %e, "cannot resolve tracker"),
        }
    }
    trackers.sort();
    trackers.dedup();
    trackers
}

/// Who this storage is, as the first tracker that answers says.
pub(super) struct Identified {
    pub id: String,
    pub ip: String,
    /// Every tracker address, for the calls that follow.
    pub trackers: Vec<SocketAddr>,
}

/// Learns this storage's address (the one its connections leave from) and id from the
/// first tracker that answers, before any report session stands (a recovery asks first).
pub(super) async fn identify(node: &StorageNode) -> Option<Identified> {
    let trackers = resolve_all(node).await;
    for &t in &trackers {
        let mut conn = match node.connect(t).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(tracker = %t, error = %e, "tracker unreachable");
                continue;
            }
        };
        let Some(local) = conn.local_addr() else {
            continue;
        };
        node.identity.learn_source_ip(local.ip());
        let ip = local.ip().to_string();
        let id = match session::learn_identity(node, &mut conn, t, &ip).await {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(tracker = %t, error = %e, "tracker did not answer");
                continue;
            }
        };
        conn.quit().await;
        let id = if id.is_empty() { ip.clone() } else { id };
        return Some(Identified { id, ip, trackers });
    }
    None
}

/// A short call handed to a report session, and where its answer goes.
#[derive(Debug)]
struct Call {
    cmd: Command,
    body: Vec<u8>,
    max_reply: u64,
    /// `None` when the call failed on the session's connection (which then ends).
    answer: oneshot::Sender<Option<(Status, Vec<u8>)>>,
}

/// The report sessions that stand now, each taking short calls on its connection.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<BTreeMap<SocketAddr, (u64, mpsc::Sender<Call>)>>,
    opened: AtomicU64,
    /// Held by the session that makes a new storage's first join: one tracker is asked
    /// for the source to copy the group from, and the others are told that one.
    pub(crate) first_join: tokio::sync::Mutex<()>,
}

/// Calls waiting for one session; a caller beyond them waits for room.
const CALLS_QUEUED: usize = 16;

/// The calls one report session takes, from its registration to its end (dropping it
/// takes the session off the list).
#[derive(Debug)]
struct Inbox<'a> {
    sessions: &'a Sessions,
    tracker: SocketAddr,
    id: u64,
    calls: mpsc::Receiver<Call>,
}

impl Inbox<'_> {
    async fn next(&mut self) -> Option<Call> {
        self.calls.recv().await
    }

    /// Takes no more calls; those queued get no answer, so their callers use a connection
    /// of their own.
    fn close(&mut self) {
        let mut open = self.sessions.lock();
        if open
            .get(&self.tracker)
            .is_some_and(|(id, _)| *id == self.id)
        {
            open.remove(&self.tracker);
        }
        drop(open);
        self.calls.close();
        while self.calls.try_recv().is_ok() {}
    }
}

impl Drop for Inbox<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

impl Sessions {
    /// Registers the session with `tracker` (joined, ready for calls).
    fn open(&self, tracker: SocketAddr) -> Inbox<'_> {
        let (send, calls) = mpsc::channel(CALLS_QUEUED);
        let id = self.opened.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(tracker, (id, send));
        Inbox {
            sessions: self,
            tracker,
            id,
            calls,
        }
    }

    /// Makes a call on the session with `tracker`: `None` when no session stands (or it
    /// ended before answering), `Some(None)` when the call failed on it.
    async fn call(
        &self,
        tracker: SocketAddr,
        cmd: Command,
        body: &[u8],
        max_reply: u64,
    ) -> Option<Option<(Status, Vec<u8>)>> {
        let session = self.lock().get(&tracker).map(|(_, s)| s.clone())?;
        let (answer, answered) = oneshot::channel();
        let call = Call {
            cmd,
            body: body.to_vec(),
            max_reply,
            answer,
        };
        session.send(call).await.ok()?;
        answered.await.ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, (u64, mpsc::Sender<Call>)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_travels_on_the_standing_session_and_finds_none_once_it_ends() {
        let sessions = Sessions::default();
        let tracker: SocketAddr = "127.0.0.1:22122".parse().expect("addr");
        let other: SocketAddr = "127.0.0.2:22122".parse().expect("addr");
        assert!(
            sessions
                .call(tracker, Command::StorageSyncSrcReq, b"x", 64)
                .await
                .is_none(),
            "no session yet: the caller connects on its own"
        );

        let mut inbox = sessions.open(tracker);
        let asking = sessions.call(tracker, Command::StorageSyncSrcReq, b"body", 64);
        let serving = async {
            let call = inbox.next().await.expect("the call reaches the session");
            assert_eq!(call.cmd, Command::StorageSyncSrcReq);
            assert_eq!(call.body, b"body");
            assert_eq!(call.max_reply, 64);
            call.answer
                .send(Some((Status::Ok, b"answer".to_vec())))
                .expect("caller waits");
        };
        let (answer, ()) = tokio::join!(asking, serving);
        assert_eq!(answer, Some(Some((Status::Ok, b"answer".to_vec()))));
        assert!(
            sessions
                .call(other, Command::StorageSyncSrcReq, b"", 64)
                .await
                .is_none(),
            "a session with one tracker carries no call to another"
        );

        // A failed call on the session says so; the session then ends.
        let asking = sessions.call(tracker, Command::StorageReportStatus, b"", 64);
        let failing = async {
            let call = inbox.next().await.expect("call");
            call.answer.send(None).expect("caller waits");
        };
        let (answer, ()) = tokio::join!(asking, failing);
        assert_eq!(answer, Some(None));

        drop(inbox);
        assert!(
            sessions.lock().is_empty(),
            "an ended session is off the list"
        );
        assert!(
            sessions
                .call(tracker, Command::StorageSyncSrcReq, b"", 64)
                .await
                .is_none()
        );

        // A stopping session's queued calls get no answer (their callers go alone), and a
        // newer session of the same tracker stays listed when an older one closes.
        let mut old = sessions.open(tracker);
        let newer = sessions.open(tracker);
        old.close();
        assert_eq!(
            sessions.lock().get(&tracker).map(|(id, _)| *id),
            Some(newer.id)
        );
        drop(newer);
    }
}
