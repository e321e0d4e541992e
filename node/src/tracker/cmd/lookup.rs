//! What a storage or client looks up before it joins or acts: the parameters (75), storage ids
//! (69, 70), a storage's status (71), a group by address (109), its own address (60).

use std::net::IpAddr;

use crate::proto::cluster::{self, FetchStorageIds, GroupAndHost};
use crate::proto::fields::fixed_text;
use crate::proto::query::GroupRequest;
use crate::proto::report::GetMyIpRequest;
use crate::proto::{Command, Status};

use super::{CommandFamily, Context, decoded};
use crate::tracker::empty;

/// Longest IP text a GET_GROUP_NAME request carries.
const IP_TEXT_MAX: usize = 46;

/// One lookup, its body decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// 75: the cluster's parameters.
    Parameters,
    /// 69: a page of `storage_ids.conf`.
    StorageIds(FetchStorageIds),
    /// 70: a storage's id by address.
    ServerId(GroupAndHost),
    /// 71: a storage's status by address.
    Status(GroupAndHost),
    /// 109: the group of a storage by address; `ip` None asks about the connection's own.
    GroupName { ip: Option<IpAddr>, port: u16 },
    /// 60: the connection's address as this tracker sees it.
    MyIp,
}

impl CommandFamily for Lookup {
    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status> {
        Ok(match cmd {
            Command::StorageParameterReq => empty(body).map(|_| Lookup::Parameters)?,
            Command::StorageFetchStorageIds => {
                Lookup::StorageIds(decoded(FetchStorageIds::decode(body))?)
            }
            Command::StorageGetServerId => Lookup::ServerId(decoded(GroupAndHost::decode(body))?),
            Command::StorageGetStatus => Lookup::Status(decoded(GroupAndHost::decode(body))?),
            Command::StorageGetGroupName => group_name_request(body)?,
            Command::StorageGetMyIp => {
                decoded(GetMyIpRequest::decode(body))?;
                Lookup::MyIp
            }
            _ => return Err(Status::InvalidArgument),
        })
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status> {
        let tracker = ctx.tracker;
        Ok(match self {
            Lookup::Parameters => tracker.parameters(ctx.compat).encode(),
            Lookup::StorageIds(r) => tracker.registry().fetch_storage_ids(r)?.encode(),
            Lookup::ServerId(r) => tracker
                .registry()
                .server_id_by_addr(&r.group, &r.ip, r.port)?
                .into_bytes(),
            Lookup::Status(r) => {
                let brief = tracker.registry().brief_by_addr(&r.group, &r.ip, r.port)?;
                cluster::encode_briefs(&[brief])
            }
            Lookup::GroupName { ip, port } => {
                let ip = ip.unwrap_or(ctx.conn.peer.ip());
                let group = tracker.registry().group_by_addr(ip, port)?;
                GroupRequest { group }.encode()
            }
            Lookup::MyIp => ctx.conn.peer.ip().to_string().into_bytes(),
        })
    }
}

/// 109's body: either a bare port (u32, the asker's own address) or IP text and a port.
fn group_name_request(body: &[u8]) -> Result<Lookup, Status> {
    if body.len() < 4 || body.len() > 4 + IP_TEXT_MAX {
        return Err(Status::InvalidArgument);
    }
    let (ip_text, port) = body.split_at(body.len() - 4);
    let port = u32::from_be_bytes([port[0], port[1], port[2], port[3]]);
    let port = u16::try_from(port).map_err(|_| Status::InvalidArgument)?;
    let ip = if ip_text.is_empty() {
        None
    } else {
        Some(
            fixed_text(ip_text)
                .parse()
                .map_err(|_| Status::InvalidArgument)?,
        )
    };
    Ok(Lookup::GroupName { ip, port })
}
