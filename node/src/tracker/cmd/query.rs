//! Client queries for where to store (101, 104, 106, 107) and where to read or change a file
//! (102, 103, 105).

use crate::proto::query::{FetchAll, FileRequest, GroupRequest};
use crate::proto::{Command, Status};

use super::{CommandFamily, Context, decoded};
use crate::tracker::empty;

/// One query, its body decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Query {
    /// 101 (any group) and 104 (the named one): one storage to upload to.
    StoreOne { group: Option<String> },
    /// 106 and 107: every storage of the chosen group to upload to.
    StoreAll { group: Option<String> },
    /// 102: one storage to download from.
    FetchOne(FileRequest),
    /// 103: the storage to change a file on (its source).
    Update(FileRequest),
    /// 105: every storage holding a file.
    FetchAll(FileRequest),
}

impl CommandFamily for Query {
    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status> {
        let group = |body| decoded(GroupRequest::decode(body)).map(|r| Some(r.group));
        Ok(match cmd {
            Command::QueryStoreWithoutGroupOne => {
                empty(body)?;
                Query::StoreOne { group: None }
            }
            Command::QueryStoreWithGroupOne => Query::StoreOne {
                group: group(body)?,
            },
            Command::QueryStoreWithoutGroupAll => {
                empty(body)?;
                Query::StoreAll { group: None }
            }
            Command::QueryStoreWithGroupAll => Query::StoreAll {
                group: group(body)?,
            },
            Command::QueryFetchOne => Query::FetchOne(decoded(FileRequest::decode(body))?),
            Command::QueryUpdate => Query::Update(decoded(FileRequest::decode(body))?),
            Command::QueryFetchAll => Query::FetchAll(decoded(FileRequest::decode(body))?),
            _ => return Err(Status::InvalidArgument),
        })
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status> {
        let width = ctx.compat.ip_width;
        let client = ctx.conn.peer.ip();
        let mut reg = ctx.tracker.registry();
        match self {
            Query::StoreOne { group } => {
                let mut t = reg.query_store(group.as_deref())?;
                reg.as_seen_from(&t.group, [&mut t.addr], client);
                Ok(t.encode(width))
            }
            Query::StoreAll { group } => {
                let mut t = reg.query_store_all(group.as_deref())?;
                reg.as_seen_from(&t.group, &mut t.servers, client);
                Ok(t.encode(width))
            }
            Query::FetchOne(r) => {
                let mut t = reg.query_fetch(&r.group, &r.remote_filename, ctx.now)?;
                reg.as_seen_from(&r.group, [&mut t.addr], client);
                Ok(t.encode(width))
            }
            Query::Update(r) => {
                let mut t = reg.query_update(&r.group, &r.remote_filename)?;
                reg.as_seen_from(&r.group, [&mut t.addr], client);
                Ok(t.encode(width))
            }
            Query::FetchAll(r) => {
                let mut servers = reg.query_fetch_all(&r.group, &r.remote_filename, ctx.now)?;
                reg.as_seen_from(&r.group, &mut servers, client);
                Ok(FetchAll {
                    group: r.group,
                    servers,
                }
                .encode(width, ctx.compat.fetch_all_format))
            }
        }
    }
}
