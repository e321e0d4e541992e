//! Placement: the group, storage and store path an upload goes to (101, 104, 106, 107).
//! It owns the round-robin cursors; the groups it chooses from are the membership's.

use super::*;

/// Where the next upload goes when placement is round robin. A cursor of a group or member
/// that is gone is simply never read again.
#[derive(Debug, Default)]
pub(super) struct Placement {
    /// `store_lookup = 0`: the next group, as an index into the groups that take uploads.
    next_group: usize,
    /// `store_server = 0`: per group, the next of its writable members.
    next_server: BTreeMap<String, usize>,
    /// Per group, per member id: the next store path (`store_path = 0`), or the one with
    /// the most free space it last reported (`store_path = 2`).
    next_path: BTreeMap<String, BTreeMap<String, usize>>,
}

fn has_room(policy: &TrackerConfig, g: &Group) -> bool {
    let (total, free) = g.space();
    policy.reserved_storage_space.has_room(free, total)
}

impl Placement {
    /// The member cursor reported as `current_write_server` (90, 91).
    pub(super) fn server_cursor(&self, group: &str) -> usize {
        self.next_server.get(group).copied().unwrap_or(0)
    }

    /// The store path reported as `current_write_path` (92).
    pub(super) fn path_cursor(&self, group: &str, id: &str) -> usize {
        (self.next_path.get(group))
            .and_then(|paths| paths.get(id))
            .copied()
            .unwrap_or(0)
    }

    fn set_path_cursor(&mut self, group: &str, id: &str, value: usize) {
        match self.next_path.get_mut(group) {
            Some(paths) => set_cursor(paths, id, value),
            None => {
                let paths = BTreeMap::from([(id.to_owned(), value)]);
                self.next_path.insert(group.to_owned(), paths);
            }
        }
    }

    /// `store_path = 2`: a member's disk report names the path with the most free space.
    pub(super) fn follow_disk_report(&mut self, group: &str, id: &str, paths: &[PathUsage]) {
        let roomiest = paths
            .iter()
            .enumerate()
            .max_by_key(|(_, p)| p.free_mb)
            .map(|(i, _)| i)
            .unwrap_or(0);
        self.set_path_cursor(group, id, roomiest);
    }

    /// Picks the group for an upload (`store_lookup`), or the named one.
    fn choose_group(
        &mut self,
        groups: &BTreeMap<String, Group>,
        policy: &TrackerConfig,
        named: Option<&str>,
    ) -> Result<String, Status> {
        let named = named
            .map(str::to_owned)
            .or_else(|| (policy.store_lookup == 1).then(|| policy.store_group.clone()));
        if let Some(name) = named {
            let g = groups.get(&name).ok_or(Status::NotFound)?;
            if g.writable().is_empty() {
                return Err(Status::NotFound);
            }
            return if has_room(policy, g) {
                Ok(name)
            } else {
                Err(Status::NoSpace)
            };
        }
        let names: Vec<&Group> = groups
            .values()
            .filter(|g| !g.writable().is_empty())
            .collect();
        if names.is_empty() {
            return Err(Status::NotFound);
        }
        if policy.store_lookup == 2 {
            return names
                .iter()
                .filter(|g| has_room(policy, g))
                .max_by_key(|g| g.space().1)
                .map(|g| g.name.clone())
                .ok_or(Status::NoSpace);
        }
        let n = names.len();
        let start = self.next_group % n;
        let chosen = (0..n)
            .map(|i| names[(start + i) % n])
            .find(|g| has_room(policy, g))
            .map(|g| g.name.clone());
        self.next_group = (start + 1) % n;
        chosen.ok_or(Status::NoSpace)
    }

    /// Picks the storage in `group` for an upload (`store_server`).
    pub(super) fn choose_storage(
        &mut self,
        groups: &BTreeMap<String, Group>,
        policy: &TrackerConfig,
        group: &str,
    ) -> Result<String, Status> {
        let g = groups.get(group).ok_or(Status::NotFound)?;
        let active = g.writable();
        if active.is_empty() {
            return Err(Status::NotFound);
        }
        let id = match policy.store_server {
            1 => active[0].id.clone(),
            2 => active
                .iter()
                .min_by_key(|m| (m.upload_priority, m.id.clone()))
                .map(|m| m.id.clone())
                .unwrap_or_default(),
            _ => active[take_turn(&mut self.next_server, group, active.len())]
                .id
                .clone(),
        };
        Ok(id)
    }

    /// Picks the store path on a member (`store_path`) that passes the reserve check.
    fn choose_path(
        &mut self,
        groups: &BTreeMap<String, Group>,
        policy: &TrackerConfig,
        group: &str,
        id: &str,
    ) -> Result<u8, Status> {
        let reserved: ReservedSpace = policy.reserved_storage_space;
        let m = groups
            .get(group)
            .and_then(|g| g.members.get(id))
            .ok_or(Status::NotFound)?;
        let n = m.paths.len().max(1);
        let start = self.path_cursor(group, id) % n;
        let per_path_reserve = |p: &PathUsage| match reserved {
            ReservedSpace::Mb(mb) => p.free_mb > mb / n as u64,
            ReservedSpace::Ratio(_) => reserved.has_room(p.free_mb, p.total_mb),
        };
        let found = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| m.paths.get(i).is_some_and(per_path_reserve));
        if policy.store_path == 0 {
            self.set_path_cursor(group, id, (start + 1) % n);
        }
        found.map(|i| i as u8).ok_or(Status::NoSpace)
    }

    /// 101/104: one storage and path for an upload.
    pub(super) fn store_one(
        &mut self,
        groups: &BTreeMap<String, Group>,
        policy: &TrackerConfig,
        group: Option<&str>,
    ) -> Result<StoreTarget, Status> {
        let group = self.choose_group(groups, policy, group)?;
        let id = self.choose_storage(groups, policy, &group)?;
        let path = self.choose_path(groups, policy, &group, &id)?;
        let m = &groups[&group].members[&id];
        Ok(StoreTarget {
            group,
            addr: m.addr(),
            store_path_index: path,
        })
    }

    /// 106/107: every writable storage of the chosen group.
    pub(super) fn store_all(
        &mut self,
        groups: &BTreeMap<String, Group>,
        policy: &TrackerConfig,
        group: Option<&str>,
    ) -> Result<StoreTargets, Status> {
        let group = self.choose_group(groups, policy, group)?;
        let writable = groups[&group].writable();
        let first = writable
            .first()
            .map(|m| m.id.clone())
            .ok_or(Status::NotFound)?;
        let path = self.choose_path(groups, policy, &group, &first)?;
        Ok(StoreTargets {
            group,
            servers: writable.iter().map(|m| m.addr()).collect(),
            store_path_index: path,
        })
    }
}

impl Registry {
    /// 101/104: one storage and path for an upload.
    pub fn query_store(&mut self, group: Option<&str>) -> Result<StoreTarget, Status> {
        self.placement.store_one(&self.groups, &self.policy, group)
    }

    /// 106/107: every writable storage of the chosen group.
    pub fn query_store_all(&mut self, group: Option<&str>) -> Result<StoreTargets, Status> {
        self.placement.store_all(&self.groups, &self.policy, group)
    }
}
