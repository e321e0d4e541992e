//! Changes an administrator asks for: deleting a storage (93) or a group (108), naming the
//! trunk server (94), and this project's fence (243).

use crate::proto::cluster::{FenceRequest, GroupAndId};
use crate::proto::fields::{GROUP_NAME_LEN, STORAGE_ID_LEN, fixed_text};
use crate::proto::query::GroupRequest;
use crate::proto::{Command, Status};

use super::{CommandFamily, Context, decoded};

/// One administrative change, its body decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admin {
    /// 93.
    DeleteStorage(GroupAndId),
    /// 243: fence a storage, or lift its fence.
    Fence(FenceRequest),
    /// 108.
    DeleteGroup(String),
    /// 94: an empty id lets the leader choose.
    SetTrunkServer { group: String, id: String },
}

impl CommandFamily for Admin {
    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status> {
        Ok(match cmd {
            Command::ServerDeleteStorage => {
                Admin::DeleteStorage(decoded(GroupAndId::decode(body))?)
            }
            Command::ServerFenceStorage => Admin::Fence(decoded(FenceRequest::decode(body))?),
            Command::ServerDeleteGroup => {
                Admin::DeleteGroup(decoded(GroupRequest::decode(body))?.group)
            }
            Command::ServerSetTrunkServer => {
                if body.len() < GROUP_NAME_LEN || body.len() > GROUP_NAME_LEN + STORAGE_ID_LEN {
                    return Err(Status::InvalidArgument);
                }
                Admin::SetTrunkServer {
                    group: fixed_text(&body[..GROUP_NAME_LEN]),
                    id: fixed_text(&body[GROUP_NAME_LEN..]),
                }
            }
            _ => return Err(Status::InvalidArgument),
        })
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status> {
        let tracker = ctx.tracker;
        match self {
            Admin::DeleteStorage(r) => tracker.registry().delete_storage(&r.group, &r.id)?,
            Admin::Fence(r) => {
                tracker
                    .registry()
                    .fence_storage(&r.member.group, &r.member.id, r.fenced)?
            }
            Admin::DeleteGroup(group) => tracker.registry().delete_group(&group)?,
            Admin::SetTrunkServer { group, id } => {
                // Followers learn the trunk server from the leader; ask the leader.
                if !tracker.is_leader() {
                    return Err(Status::NotSupported);
                }
                let mut reply = tracker
                    .registry()
                    .set_trunk_server(&group, &id)?
                    .into_bytes();
                reply.push(0);
                return Ok(reply);
            }
        }
        Ok(Vec::new())
    }
}
