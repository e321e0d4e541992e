//! Trunk space and the trunk binlog (27–33): the handlers live with the trunk state in
//! `storage::trunking`.

use std::sync::Arc;

use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::{Handled, StorageNode};

/// A trunk command (27–33).
pub(super) async fn apply(
    node: &Arc<StorageNode>,
    conn: &mut Connection,
    header: &Header,
) -> Handled {
    match header.cmd {
        Command::TrunkAllocSpace => node.trunk_alloc_space(conn, header).await,
        Command::TrunkAllocConfirm | Command::TrunkFreeSpace => {
            node.trunk_space_back(conn, header).await
        }
        Command::TrunkSyncBinlog
        | Command::TrunkGetBinlogSize
        | Command::TrunkDeleteBinlogMarks
        | Command::TrunkTruncateBinlogFile => node.trunk_binlog_command(conn, header).await,
        _ => Err(Status::InvalidArgument.into()),
    }
}
