//! Client queries for where to store (101, 104, 106, 107) and where to read or change a file
//! (102, 103, 105).

use crate::proto::query::{FetchAll, FileRequest, GroupRequest};
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
        now,
        ..
    } = req;
    let width = compat.ip_width;
    let client = conn.peer.ip();
    let store_one = |group: Option<&str>| {
        let mut reg = tracker.registry();
        let mut t = reg.query_store(group)?;
        reg.as_seen_from(&t.group, [&mut t.addr], client);
        Ok(t.encode(width))
    };
    let store_all = |group: Option<&str>| {
        let mut reg = tracker.registry();
        let mut t = reg.query_store_all(group)?;
        reg.as_seen_from(&t.group, &mut t.servers, client);
        Ok(t.encode(width))
    };
    match cmd {
        Command::QueryStoreWithoutGroupOne => empty(body).and_then(|_| store_one(None)),
        Command::QueryStoreWithGroupOne => GroupRequest::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| store_one(Some(&r.group))),
        Command::QueryStoreWithoutGroupAll => empty(body).and_then(|_| store_all(None)),
        Command::QueryStoreWithGroupAll => GroupRequest::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| store_all(Some(&r.group))),
        Command::QueryFetchOne | Command::QueryUpdate | Command::QueryFetchAll => {
            match FileRequest::decode(body) {
                Err(e) => Err(e.status()),
                Ok(r) => {
                    let mut reg = tracker.registry();
                    match cmd {
                        Command::QueryFetchOne | Command::QueryUpdate => {
                            let target = if cmd == Command::QueryFetchOne {
                                reg.query_fetch(&r.group, &r.remote_filename, now)
                            } else {
                                reg.query_update(&r.group, &r.remote_filename)
                            };
                            target.map(|mut t| {
                                reg.as_seen_from(&r.group, [&mut t.addr], client);
                                t.encode(width)
                            })
                        }
                        _ => reg.query_fetch_all(&r.group, &r.remote_filename, now).map(
                            |mut servers| {
                                reg.as_seen_from(&r.group, &mut servers, client);
                                FetchAll {
                                    group: r.group.clone(),
                                    servers,
                                }
                                .encode(width, compat.fetch_all_format)
                            },
                        ),
                    }
                }
            }
        }
        _ => Err(Status::InvalidArgument),
    }
}
