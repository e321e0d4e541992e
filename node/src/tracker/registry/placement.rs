//! Placement: the group, storage and store path an upload goes to (101, 104, 106, 107).

use super::*;

impl Registry {
    fn group_has_room(&self, g: &Group) -> bool {
        let (total, free) = g.space();
        self.policy.reserved_storage_space.has_room(free, total)
    }

    /// Picks the group for an upload (`store_lookup`), or the named one.
    fn choose_group(&mut self, named: Option<&str>) -> Result<String, Status> {
        let named = named
            .map(str::to_owned)
            .or_else(|| (self.policy.store_lookup == 1).then(|| self.policy.store_group.clone()));
        if let Some(name) = named {
            let g = self.groups.get(&name).ok_or(Status::NotFound)?;
            if g.writable().is_empty() {
                return Err(Status::NotFound);
            }
            return if self.group_has_room(g) {
                Ok(name)
            } else {
                Err(Status::NoSpace)
            };
        }
        let names: Vec<&Group> = self
            .groups
            .values()
            .filter(|g| !g.writable().is_empty())
            .collect();
        if names.is_empty() {
            return Err(Status::NotFound);
        }
        if self.policy.store_lookup == 2 {
            return names
                .iter()
                .filter(|g| self.group_has_room(g))
                .max_by_key(|g| g.space().1)
                .map(|g| g.name.clone())
                .ok_or(Status::NoSpace);
        }
        let n = names.len();
        let start = self.current_write_group % n;
        let chosen = (0..n)
            .map(|i| names[(start + i) % n])
            .find(|g| self.group_has_room(g))
            .map(|g| g.name.clone());
        self.current_write_group = (start + 1) % n;
        chosen.ok_or(Status::NoSpace)
    }

    /// Picks the storage in `group` for an upload (`store_server`).
    pub(super) fn choose_storage(&mut self, group: &str) -> Result<String, Status> {
        let store_server = self.policy.store_server;
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let active = g.writable();
        if active.is_empty() {
            return Err(Status::NotFound);
        }
        let id = match store_server {
            1 => active[0].id.clone(),
            2 => active
                .iter()
                .min_by_key(|m| (m.upload_priority, m.id.clone()))
                .map(|m| m.id.clone())
                .unwrap_or_default(),
            _ => {
                let i = g.current_write_server % active.len();
                let id = active[i].id.clone();
                g.current_write_server = (i + 1) % active.len();
                id
            }
        };
        Ok(id)
    }

    /// Picks the store path on a member (`store_path`) that passes the reserve check.
    fn choose_path(&mut self, group: &str, id: &str) -> Result<u8, Status> {
        let reserved: ReservedSpace = self.policy.reserved_storage_space;
        let round_robin = self.policy.store_path == 0;
        let (g, id) = self.member_mut(group, id)?;
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        let n = m.paths.len().max(1);
        let start = m.current_write_path % n;
        let per_path_reserve = |p: &PathUsage| match reserved {
            ReservedSpace::Mb(mb) => p.free_mb > mb / n as u64,
            ReservedSpace::Ratio(_) => reserved.has_room(p.free_mb, p.total_mb),
        };
        let found = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| m.paths.get(i).is_some_and(per_path_reserve));
        if round_robin {
            m.current_write_path = (start + 1) % n;
        }
        found.map(|i| i as u8).ok_or(Status::NoSpace)
    }

    /// 101/104: one storage and path for an upload.
    pub fn query_store(&mut self, group: Option<&str>) -> Result<StoreTarget, Status> {
        let group = self.choose_group(group)?;
        let id = self.choose_storage(&group)?;
        let path = self.choose_path(&group, &id)?;
        let m = &self.groups[&group].members[&id];
        Ok(StoreTarget {
            group,
            addr: m.addr(),
            store_path_index: path,
        })
    }

    /// 106/107: every writable storage of the chosen group.
    pub fn query_store_all(&mut self, group: Option<&str>) -> Result<StoreTargets, Status> {
        let group = self.choose_group(group)?;
        let first = self.groups[&group]
            .writable()
            .first()
            .map(|m| m.id.clone())
            .ok_or(Status::NotFound)?;
        let path = self.choose_path(&group, &first)?;
        let servers = self.groups[&group]
            .writable()
            .iter()
            .map(|m| m.addr())
            .collect();
        Ok(StoreTargets {
            group,
            servers,
            store_path_index: path,
        })
    }
}
