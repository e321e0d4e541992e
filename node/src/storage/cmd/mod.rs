//! The storage's commands, one module per family, and the table that sends each command code
//! to its family (`family`). A family reads its request with `proto`, does its disk work on
//! the disk threads and answers; `StorageNode::handle` counts and logs the outcome.

mod appender;
mod files;
mod path_binlog;
mod replica;
mod trunk;
pub(super) mod upload;

use std::sync::Arc;

use super::{Failure, Handled, Session, StorageNode};
use crate::proto::{Command, Header};
use crate::server::Connection;

/// What a command runs against: the node, the connection it came on, and what that
/// connection remembers.
pub(super) struct Context<'a> {
    pub node: &'a Arc<StorageNode>,
    pub conn: &'a mut Connection,
    pub session: &'a mut Session,
}

/// A family of commands as a type: one value per request. `parse` reads the request's fixed
/// fields from the connection (the whole body of a small request, the head of one that
/// carries file content) and decodes them with `proto`, changing nothing; content still
/// on the socket is `apply`'s to stream.
pub(super) trait CommandFamily: Sized {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure>;

    /// Runs the request and answers it (or says what to answer).
    async fn apply(self, ctx: &mut Context<'_>) -> Handled;
}

/// Reads a request's fixed head of `N` bytes; EINVAL, reading nothing, when the body is
/// shorter.
async fn read_head<const N: usize>(
    conn: &mut Connection,
    header: &Header,
) -> Result<[u8; N], Failure> {
    if header.body_len < N as u64 {
        return Err(crate::proto::Status::InvalidArgument.into());
    }
    let mut head = [0u8; N];
    conn.read_exact(&mut head).await?;
    Ok(head)
}

async fn run<F: CommandFamily>(ctx: &mut Context<'_>, header: &Header) -> Handled {
    F::parse(ctx, header).await?.apply(ctx).await
}

/// The families of commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// New files: 11, 21, 23.
    Upload,
    /// Appender files: 24, 34, 36, 38.
    Appender,
    /// Existing files: download 14, delete 12, info 22, metadata 13 and 15.
    Files,
    /// Changes pushed by the group's other members: 9, 16–19, 25, 35, 37, 40.
    Replica,
    /// A store path's binlog for a member that rebuilds it: 26.
    Recovery,
    /// Trunk space and the trunk binlog: 27–33.
    Trunk,
}

/// The dispatch table: the family that serves `cmd`, `None` for a command the storage does not
/// serve (ACTIVE_TEST is answered before).
pub(super) fn family(cmd: Command) -> Option<Family> {
    use Command as C;
    Some(match cmd {
        C::UploadFile | C::UploadAppenderFile | C::UploadSlaveFile => Family::Upload,
        C::AppendFile | C::ModifyFile | C::TruncateFile | C::RegenerateAppenderFilename => {
            Family::Appender
        }
        C::DownloadFile | C::DeleteFile | C::QueryFileInfo | C::SetMetadata | C::GetMetadata => {
            Family::Files
        }
        C::ReportServerId
        | C::SyncCreateFile
        | C::SyncUpdateFile
        | C::SyncDeleteFile
        | C::SyncAppendFile
        | C::SyncModifyFile
        | C::SyncTruncateFile
        | C::SyncRenameFile
        | C::SyncCreateLink => Family::Replica,
        C::FetchOnePathBinlog => Family::Recovery,
        C::TrunkAllocSpace
        | C::TrunkAllocConfirm
        | C::TrunkFreeSpace
        | C::TrunkSyncBinlog
        | C::TrunkGetBinlogSize
        | C::TrunkDeleteBinlogMarks
        | C::TrunkTruncateBinlogFile => Family::Trunk,
        _ => return None,
    })
}

/// Runs the command of `header` in its family.
pub(super) async fn apply(
    family: Family,
    node: &Arc<StorageNode>,
    conn: &mut Connection,
    header: &Header,
    session: &mut Session,
) -> Handled {
    let mut ctx = Context {
        node,
        conn,
        session,
    };
    let ctx = &mut ctx;
    match family {
        Family::Upload => run::<upload::Upload>(ctx, header).await,
        Family::Appender => run::<appender::Appender>(ctx, header).await,
        Family::Files => run::<files::Files>(ctx, header).await,
        Family::Replica => run::<replica::Replica>(ctx, header).await,
        Family::Recovery => run::<path_binlog::PathBinlog>(ctx, header).await,
        Family::Trunk => run::<trunk::Trunk>(ctx, header).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code the storage serves has one family, by FastDFS's numbering; tracker commands,
    /// the reply marker and unknown codes have none.
    #[test]
    fn every_storage_command_has_its_family_and_nothing_else_has_one() {
        let expect = |codes: &[u8], want: Family| {
            for &code in codes {
                assert_eq!(family(Command::from(code)), Some(want), "command {code}");
            }
        };
        expect(&[11, 21, 23], Family::Upload);
        expect(&[24, 34, 36, 38], Family::Appender);
        expect(&[12, 13, 14, 15, 22], Family::Files);
        expect(&[9, 16, 17, 18, 19, 25, 35, 37, 40], Family::Replica);
        expect(&[26], Family::Recovery);
        expect(&[27, 28, 29, 30, 31, 32, 33], Family::Trunk);
        for code in [0u8, 10, 39, 81, 82, 100, 101, 111, 200] {
            assert_eq!(family(Command::from(code)), None, "command {code}");
        }
    }
}
