//! Trunk servers: one member per group hands out the trunk space of the group's small
//! files. The leader chooses it (and an admin may, 94); storages learn it from the
//! leader's heartbeat replies, and the trunk server reports its newest trunk file id (73)
//! and its free trunk space (74).

use super::{Group, Registry};
use crate::proto::Status;
use crate::proto::report::StorageBrief;

/// A group's trunk state, as this tracker knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupTrunk {
    /// The storage id of the trunk server; `None` until one is chosen.
    pub server: Option<String>,
    /// Bumped on every change of `server`; drives heartbeat pushes.
    pub changes: u64,
    /// The highest trunk file id a trunk server of this group reported: a new trunk
    /// server numbers its trunk files past it, so no id is made twice.
    pub file_id: u32,
    /// Free trunk space the trunk server last reported, MB.
    pub free_mb: u64,
}

impl Group {
    /// The trunk server as a heartbeat reply carries it; an empty brief when none.
    pub fn trunk_brief(&self) -> StorageBrief {
        self.trunk
            .server
            .as_ref()
            .and_then(|id| self.members.get(id))
            .map(|m| m.brief())
            .unwrap_or_default()
    }

    pub fn is_trunk_server(&self, id: &str) -> bool {
        self.trunk.server.as_deref() == Some(id)
    }

    fn set_trunk_server(&mut self, server: Option<String>) -> bool {
        if self.trunk.server == server {
            return false;
        }
        tracing::info!(group = %self.name, old = ?self.trunk.server, new = ?server, "trunk server changed");
        self.trunk.server = server;
        self.trunk.changes += 1;
        true
    }
}

impl Registry {
    /// Makes every group's trunk server go out again with the next beat replies.
    pub fn announce_trunk_servers_again(&mut self) {
        for g in self.groups.values_mut() {
            g.trunk.changes += 1;
        }
    }

    /// Keeps the group's trunk server while it is ACTIVE; otherwise chooses the first
    /// ACTIVE member in id order, or none. Returns whether it changed. The leader calls
    /// this; trunk storage off leaves every group without one.
    pub fn elect_trunk_server(&mut self, group: &str) -> bool {
        let enabled = self.policy.trunk.use_trunk_file;
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        let current_active = g
            .trunk
            .server
            .as_ref()
            .and_then(|id| g.members.get(id))
            .is_some_and(|m| m.is_writable());
        if enabled && current_active {
            return false;
        }
        let next = if enabled {
            g.members
                .values()
                .find(|m| m.is_writable())
                .map(|m| m.id.clone())
        } else {
            None
        };
        g.set_trunk_server(next)
    }

    /// SET_TRUNK_SERVER (94): makes `id` the trunk server, or with an empty id the first
    /// ACTIVE member other than the current one. Returns the new trunk server's id.
    pub fn set_trunk_server(&mut self, group: &str, id: &str) -> Result<String, Status> {
        if !self.policy.trunk.use_trunk_file {
            return Err(Status::NotSupported);
        }
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let chosen = if id.is_empty() {
            g.members
                .values()
                .filter(|m| !g.is_trunk_server(&m.id))
                .find(|m| m.is_writable())
                .or_else(|| g.members.values().find(|m| m.is_writable()))
                .map(|m| m.id.clone())
                .ok_or(Status::NotFound)?
        } else {
            let m = g
                .members
                .values()
                .find(|m| m.id == id || m.ip == id)
                .ok_or(Status::NotFound)?;
            if !m.is_writable() {
                return Err(Status::Busy);
            }
            m.id.clone()
        };
        g.set_trunk_server(Some(chosen.clone()));
        Ok(chosen)
    }

    /// A follower takes the trunk server the leader chose (PING_LEADER reply); an empty
    /// id: none. Unknown groups are skipped (their members have not joined here yet).
    pub fn follow_trunk_server(&mut self, group: &str, id: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            g.set_trunk_server((!id.is_empty()).then(|| id.to_owned()));
        }
    }

    /// REPORT_TRUNK_FID (73), from the group's trunk server only.
    pub fn report_trunk_file_id(
        &mut self,
        group: &str,
        id: &str,
        file_id: u32,
    ) -> Result<(), Status> {
        let g = self.trunk_server_group(group, id)?;
        g.trunk.file_id = g.trunk.file_id.max(file_id);
        Ok(())
    }

    /// REPORT_TRUNK_FREE (74), from the group's trunk server only.
    pub fn report_trunk_free(&mut self, group: &str, id: &str, free_mb: u64) -> Result<(), Status> {
        self.trunk_server_group(group, id)?.trunk.free_mb = free_mb;
        Ok(())
    }

    /// FETCH_TRUNK_FID (72): the highest trunk file id this group's trunk servers reported.
    pub fn trunk_file_id(&self, group: &str) -> Result<u32, Status> {
        Ok(self
            .groups
            .get(group)
            .ok_or(Status::NotFound)?
            .trunk
            .file_id)
    }

    fn trunk_server_group(&mut self, group: &str, id: &str) -> Result<&mut Group, Status> {
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        if g.is_trunk_server(id) {
            Ok(g)
        } else {
            Err(Status::InvalidArgument)
        }
    }
}
