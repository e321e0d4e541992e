//! The one owner of this storage's connections to its trackers: the report session with
//! each tracker (`session`: join, beats, disk and sync reports, the changelog, a move to a
//! new address) and the short calls sync and recovery make (`calls`: 86, 76, 71, 92), with
//! the tracker addresses resolved in one place. Bodies are `proto` types both ways.

mod calls;
mod session;

use std::net::SocketAddr;

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
