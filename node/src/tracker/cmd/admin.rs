//! Changes an administrator asks for: deleting a storage (93) or a group (108), naming the
//! trunk server (94), and this project's fence (243).

use crate::proto::cluster::{self, GroupAndId};
use crate::proto::fields::{GROUP_NAME_LEN, STORAGE_ID_LEN, fixed_text};
use crate::proto::query::GroupRequest;
use crate::proto::{Command, Status};

use super::Request;

pub(super) fn apply(req: Request<'_>) -> Result<Vec<u8>, Status> {
    let Request {
        tracker, cmd, body, ..
    } = req;
    match cmd {
        Command::ServerDeleteStorage => GroupAndId::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| tracker.registry().delete_storage(&r.group, &r.id))
            .map(|_| Vec::new()),
        Command::ServerFenceStorage => cluster::FenceRequest::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| {
                tracker
                    .registry()
                    .fence_storage(&r.member.group, &r.member.id, r.fenced)
            })
            .map(|_| Vec::new()),
        Command::ServerDeleteGroup => GroupRequest::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| tracker.registry().delete_group(&r.group))
            .map(|_| Vec::new()),
        Command::ServerSetTrunkServer => {
            if body.len() < GROUP_NAME_LEN || body.len() > GROUP_NAME_LEN + STORAGE_ID_LEN {
                Err(Status::InvalidArgument)
            } else if !tracker.is_leader() {
                // Followers learn the trunk server from the leader; ask the leader.
                Err(Status::NotSupported)
            } else {
                let group = fixed_text(&body[..GROUP_NAME_LEN]);
                let id = fixed_text(&body[GROUP_NAME_LEN..]);
                tracker
                    .registry()
                    .set_trunk_server(&group, &id)
                    .map(|chosen| {
                        let mut reply = chosen.into_bytes();
                        reply.push(0);
                        reply
                    })
            }
        }
        _ => Err(Status::InvalidArgument),
    }
}
