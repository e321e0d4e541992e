//! Who this storage is: the address and ids trackers, peers and file names know it by.
//! Learned from the tracker at each session start (`tracker_link::session::learn_identity`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard};

use crate::fileid::Source;

#[derive(Debug, Default)]
pub struct Identity {
    /// The address uploads are named after (the storage's own IPv4).
    source_ip: Mutex<Option<Ipv4Addr>>,
    /// The numeric storage id uploads are named after, when the trackers say so.
    server_id: Mutex<Option<u32>>,
    /// The storage id trackers and peers know this storage by (`use_storage_id`), whether
    /// or not file names carry it.
    storage_id: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Identity {
    /// An identity bound to `ip` when the configuration names one.
    pub fn bound_to(ip: Option<Ipv4Addr>) -> Self {
        Identity {
            source_ip: Mutex::new(ip),
            ..Default::default()
        }
    }

    /// The source new file names carry: the storage id with `id_type_in_filename=id`,
    /// otherwise the storage's IPv4 address.
    pub fn source(&self) -> Source {
        if let Some(id) = *lock(&self.server_id) {
            return Source::ServerId(id);
        }
        Source::Ip(lock(&self.source_ip).unwrap_or(Ipv4Addr::LOCALHOST))
    }

    /// Names new files after `id` (Some) or after the IP address (None).
    pub fn set_server_id(&self, id: Option<u32>) {
        *lock(&self.server_id) = id;
    }

    /// The id the trackers assigned (Some with `use_storage_id`), or none: known by IP.
    pub fn set_storage_id(&self, id: Option<String>) {
        *lock(&self.storage_id) = id;
    }

    /// Learns the storage's own address from a tracker connection, when not bound to one.
    pub fn learn_source_ip(&self, ip: IpAddr) {
        let mut cur = lock(&self.source_ip);
        if let (None, IpAddr::V4(v4)) = (*cur, ip) {
            *cur = Some(v4);
        }
    }

    /// The address connections to trackers and peers leave from, once known.
    pub fn source_ip(&self) -> Option<Ipv4Addr> {
        *lock(&self.source_ip)
    }

    /// This storage's id as trackers and peers know it.
    pub fn own_id(&self) -> String {
        if let Some(id) = lock(&self.storage_id).clone() {
            return id;
        }
        self.source_ip()
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known by address until the trackers give ids; named by the numeric id only when
    /// they say so; an address learned later never replaces a bound one.
    #[test]
    fn the_id_and_source_follow_what_the_trackers_say() {
        let me = Identity::bound_to(Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(me.own_id(), "10.0.0.5");
        assert_eq!(me.source(), Source::Ip(Ipv4Addr::new(10, 0, 0, 5)));
        me.learn_source_ip("10.0.0.9".parse().expect("ip"));
        assert_eq!(me.source_ip(), Some(Ipv4Addr::new(10, 0, 0, 5)));
        me.set_storage_id(Some("100001".into()));
        assert_eq!(me.own_id(), "100001");
        assert_eq!(me.source(), Source::Ip(Ipv4Addr::new(10, 0, 0, 5)));
        me.set_server_id(Some(100001));
        assert_eq!(me.source(), Source::ServerId(100001));
        let unbound = Identity::default();
        assert_eq!(unbound.own_id(), "");
        unbound.learn_source_ip("10.0.0.9".parse().expect("ip"));
        assert_eq!(unbound.own_id(), "10.0.0.9");
    }
}
