//! What a storage or client looks up before it joins or acts: the parameters (75), storage ids
//! (69, 70), a storage's status (71), a group by address (109), its own address (60).

use crate::proto::cluster::{self, FetchStorageIds, GroupAndHost};
use crate::proto::report::GetMyIpRequest;
use crate::proto::{Command, Status};
use crate::tracker::empty;

use super::Request;

pub(super) fn apply(req: Request<'_>) -> Result<Vec<u8>, Status> {
    let Request {
        tracker,
        conn,
        compat,
        cmd,
        body,
        ..
    } = req;
    match cmd {
        Command::StorageParameterReq => empty(body).map(|_| tracker.parameters(compat).encode()),
        Command::StorageFetchStorageIds => FetchStorageIds::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| tracker.registry().fetch_storage_ids(r))
            .map(|p| p.encode()),
        Command::StorageGetServerId => GroupAndHost::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| {
                tracker
                    .registry()
                    .server_id_by_addr(&r.group, &r.ip, r.port)
            })
            .map(String::into_bytes),
        Command::StorageGetStatus => GroupAndHost::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| tracker.registry().brief_by_addr(&r.group, &r.ip, r.port))
            .map(|b| cluster::encode_briefs(&[b])),
        Command::StorageGetGroupName => tracker.group_name(conn, body),
        Command::StorageGetMyIp => GetMyIpRequest::decode(body)
            .map_err(|e| e.status())
            .map(|_| conn.peer.ip().to_string().into_bytes()),
        _ => Err(Status::InvalidArgument),
    }
}
