//! Routing: which storages can serve a file now (102, 105), which one changes it (103), and
//! the address a client is given for each. It owns the download cursors and the address
//! pairs of `storage_ids.conf`; the groups it routes to are the membership's.

use super::*;

/// Routing's own state.
#[derive(Debug, Default)]
pub(super) struct Routing {
    /// `download_server = 0`: per group, the next of its readable members.
    next_reader: BTreeMap<String, usize>,
    /// Storages listed with two addresses (inner, outer) in `storage_ids.conf`, resolved.
    address_pairs: BTreeMap<String, [IpAddr; 2]>,
}

/// Whether member `m` can already serve a file uploaded at `file_ts` to `source`.
fn has_file(
    policy: &TrackerConfig,
    m: &Member,
    source_id: Option<&str>,
    file_ts: u64,
    now: u64,
) -> bool {
    Some(m.id.as_str()) == source_id
        || file_ts + policy.storage_sync_file_max_delay < now
        || m.last_synced_timestamp > file_ts
        || (m.last_synced_timestamp + 1 >= file_ts
            && now.saturating_sub(file_ts) > policy.storage_sync_file_max_time)
}

/// The group of a request and the file's source, timestamp and whether it is a normal file
/// (neither appender nor slave).
fn decode<'g>(
    groups: &'g BTreeMap<String, Group>,
    group: &str,
    remote: &str,
) -> Result<(&'g Group, Source, u64, bool), Status> {
    let g = groups.get(group).ok_or(Status::NotFound)?;
    let name = RemoteName::parse(remote).map_err(|_| Status::InvalidArgument)?;
    let core = name.core().map_err(|_| Status::InvalidArgument)?;
    let normal = !core.is_appender() && !name.is_slave().unwrap_or(true);
    Ok((g, core.source, u64::from(core.timestamp), normal))
}

impl Routing {
    /// Takes the resolved address pairs; true when they changed.
    pub(super) fn set_address_pairs(&mut self, pairs: BTreeMap<String, [IpAddr; 2]>) -> bool {
        let changed = self.address_pairs != pairs;
        self.address_pairs = pairs;
        changed
    }

    /// The storages of `group` that hold `remote` now, the one to try first first (102, 105).
    pub(super) fn readable_holders(
        &mut self,
        groups: &BTreeMap<String, Group>,
        policy: &TrackerConfig,
        group: &str,
        remote: &str,
        now: u64,
        one: bool,
    ) -> Result<Vec<StorageAddr>, Status> {
        let (g, source, file_ts, normal) = decode(groups, group, remote)?;
        let source_member = g.find_source(source).filter(|m| m.is_readable());
        let source_id = g.find_source(source).map(|m| m.id.clone());
        if let Some(s) = source_member.filter(|_| (!normal || policy.download_server == 1) && one) {
            return Ok(vec![s.addr()]);
        }
        let active = g.readable();
        if active.is_empty() {
            return Err(Status::NotFound);
        }
        if !normal {
            return Ok(source_member
                .map(|s| vec![s.addr()])
                .unwrap_or_else(|| vec![active[0].addr()]));
        }
        let start = take_turn(&mut self.next_reader, group, active.len());
        let holders: Vec<StorageAddr> = (0..active.len())
            .map(|i| active[(start + i) % active.len()])
            .filter(|m| has_file(policy, m, source_id.as_deref(), file_ts, now))
            .map(Member::addr)
            .collect();
        Ok(if holders.is_empty() {
            vec![active[0].addr()]
        } else if one {
            holders[..1].to_vec()
        } else {
            holders
        })
    }

    /// Rewrites storage addresses of `group` for a client at `client`: a storage listed with
    /// two addresses is given as the one on the client's side (FastDFS's inner/outer rule),
    /// so clients inside and outside a Kubernetes cluster each reach it.
    pub(super) fn as_seen_from<'a>(
        &self,
        g: &Group,
        addrs: impl IntoIterator<Item = &'a mut StorageAddr>,
        client: IpAddr,
    ) {
        if self.address_pairs.is_empty() {
            return;
        }
        for addr in addrs {
            let pair = g
                .members
                .values()
                .find(|m| m.ip == addr.ip && m.port == addr.port)
                .and_then(|m| self.address_pairs.get(&m.id))
                .filter(|pair| pair.iter().any(|ip| ip.to_string() == addr.ip));
            if let Some(pair) = pair {
                addr.ip = address_for_client(*pair, client).to_string();
            }
        }
    }
}

impl Registry {
    /// 102: one storage that holds the file (protocol notes §4.6).
    pub fn query_fetch(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
    ) -> Result<FetchTarget, Status> {
        let all =
            self.routing
                .readable_holders(&self.groups, &self.policy, group, remote, now, true)?;
        all.into_iter()
            .next()
            .map(|addr| FetchTarget {
                group: group.to_owned(),
                addr,
            })
            .ok_or(Status::NotFound)
    }

    /// 105: every storage that holds the file.
    pub fn query_fetch_all(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
    ) -> Result<Vec<StorageAddr>, Status> {
        let all =
            self.routing
                .readable_holders(&self.groups, &self.policy, group, remote, now, false)?;
        if all.is_empty() {
            Err(Status::NotFound)
        } else {
            Ok(all)
        }
    }

    /// 103: the storage to update a file on: its source when writable, otherwise the one
    /// placement would choose.
    pub fn query_update(&mut self, group: &str, remote: &str) -> Result<FetchTarget, Status> {
        let (g, source, _, _) = decode(&self.groups, group, remote)?;
        let addr = match g.find_source(source).filter(|m| m.is_writable()) {
            Some(s) => s.addr(),
            None => {
                let id = self
                    .placement
                    .choose_storage(&self.groups, &self.policy, group)?;
                self.groups[group].members[&id].addr()
            }
        };
        Ok(FetchTarget {
            group: group.to_owned(),
            addr,
        })
    }

    /// Takes the resolved address pairs of `storage_ids.conf`; true when they changed.
    pub fn set_address_pairs(&mut self, pairs: BTreeMap<String, [IpAddr; 2]>) -> bool {
        self.routing.set_address_pairs(pairs)
    }

    /// Rewrites storage addresses of `group` for a client at `client` (see
    /// [`Routing::as_seen_from`]).
    pub fn as_seen_from<'a>(
        &self,
        group: &str,
        addrs: impl IntoIterator<Item = &'a mut StorageAddr>,
        client: IpAddr,
    ) {
        if let Some(g) = self.groups.get(group) {
            self.routing.as_seen_from(g, addrs, client);
        }
    }
}
