//! Routing: which storages can serve a file now (102, 105) and which one changes it (103).

use super::*;

impl Registry {
    /// Whether member `m` can already serve a file uploaded at `file_ts` to `source`.
    fn has_file(&self, m: &Member, source_id: Option<&str>, file_ts: u64, now: u64) -> bool {
        Some(m.id.as_str()) == source_id
            || file_ts + self.policy.storage_sync_file_max_delay < now
            || m.last_synced_timestamp > file_ts
            || (m.last_synced_timestamp + 1 >= file_ts
                && now.saturating_sub(file_ts) > self.policy.storage_sync_file_max_time)
    }

    fn decode(&self, group: &str, remote: &str) -> Result<(RemoteName, Source, u64, bool), Status> {
        if !self.groups.contains_key(group) {
            return Err(Status::NotFound);
        }
        let name = RemoteName::parse(remote).map_err(|_| Status::InvalidArgument)?;
        let core = name.core().map_err(|_| Status::InvalidArgument)?;
        let normal = !core.is_appender() && !name.is_slave().unwrap_or(true);
        Ok((name, core.source, u64::from(core.timestamp), normal))
    }

    /// 102: one storage that holds the file (protocol notes §4.6).
    pub fn query_fetch(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
    ) -> Result<FetchTarget, Status> {
        let all = self.readable_holders(group, remote, now, true)?;
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
        let all = self.readable_holders(group, remote, now, false)?;
        if all.is_empty() {
            Err(Status::NotFound)
        } else {
            Ok(all)
        }
    }

    fn readable_holders(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
        one: bool,
    ) -> Result<Vec<StorageAddr>, Status> {
        let (_, source, file_ts, normal) = self.decode(group, remote)?;
        let g = &self.groups[group];
        let source_member = g.find_source(source).filter(|m| m.is_readable());
        let source_id = g.find_source(source).map(|m| m.id.clone());
        if let Some(s) =
            source_member.filter(|_| (!normal || self.policy.download_server == 1) && one)
        {
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
        let start = g.current_read_server % active.len();
        let holders: Vec<StorageAddr> = (0..active.len())
            .map(|i| active[(start + i) % active.len()])
            .filter(|m| self.has_file(m, source_id.as_deref(), file_ts, now))
            .map(Member::addr)
            .collect();
        let fallback = active[0].addr();
        if let Some(g) = self.groups.get_mut(group) {
            g.current_read_server = (start + 1) % active_len(g);
        }
        Ok(if holders.is_empty() {
            vec![fallback]
        } else if one {
            holders[..1].to_vec()
        } else {
            holders
        })
    }

    /// 103: the storage to update a file on: its source when writable.
    pub fn query_update(&mut self, group: &str, remote: &str) -> Result<FetchTarget, Status> {
        let (_, source, _, _) = self.decode(group, remote)?;
        let g = &self.groups[group];
        if let Some(s) = g.find_source(source).filter(|m| m.is_writable()) {
            return Ok(FetchTarget {
                group: group.to_owned(),
                addr: s.addr(),
            });
        }
        let id = self.choose_storage(group)?;
        let addr = self.groups[group].members[&id].addr();
        Ok(FetchTarget {
            group: group.to_owned(),
            addr,
        })
    }
}
