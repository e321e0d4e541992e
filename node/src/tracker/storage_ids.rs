//! `storage_ids.conf`: stable storage ids, their group and address.
//!
//! One entry per line: `<id> <group> <host[,host2]>[:port] [rw=both|read|write|none]`,
//! `#` comments. Ids are 1…16777215 (they go into file names as numbers). A host
//! may be an IP or a DNS name; names are resolved each time they are used, so a
//! pod that comes back with a new address keeps its id.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::fileid::MAX_SERVER_ID;

/// Why `storage_ids.conf` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StorageIdsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Bad {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// R_OK | W_OK, as in the storage-stat record's rw_mode.
pub const RW_BOTH: u8 = 6;
pub const RW_READ: u8 = 4;
pub const RW_WRITE: u8 = 2;
pub const RW_NONE: u8 = 0;

/// One line of `storage_ids.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageIdEntry {
    pub id: String,
    pub group: String,
    /// One or two hosts (inner, outer), as written.
    pub hosts: Vec<String>,
    pub port: Option<u16>,
    pub rw_mode: u8,
}

impl StorageIdEntry {
    /// The line as the tracker serves it in FETCH_STORAGE_IDS (69).
    pub fn to_line(&self) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| {
                if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                }
            })
            .collect();
        let mut out = format!("{} {} {}", self.id, self.group, hosts.join(","));
        if let Some(p) = self.port {
            out.push_str(&format!(":{p}"));
        }
        match self.rw_mode {
            RW_READ => out.push_str(" rw=read"),
            RW_WRITE => out.push_str(" rw=write"),
            RW_NONE => out.push_str(" rw=none"),
            _ => {}
        }
        out
    }

    /// Whether this entry stands for a storage at `ip:port` (names resolved now).
    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
            && self.hosts.iter().any(|h| resolve_host(h).contains(&ip))
    }

    /// The first host's current address, for display when no storage has joined.
    pub fn first_ip(&self) -> Option<IpAddr> {
        self.hosts
            .first()
            .and_then(|h| resolve_host(h).into_iter().next())
    }
}

/// Addresses of a host: an IP literal as is, a name through the system resolver.
pub fn resolve_host(host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(e) => {
            tracing::warn!(%host, error = %e, "storage id host does not resolve");
            Vec::new()
        }
    }
}

/// FastDFS's address classes (`fdfs_get_ip_type`): the three private IPv4 ranges, and
/// everything else as one "outer" class. Loopback and IPv6 addresses are outer too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Private10,
    Private172,
    Private192,
    Outer,
}

impl AddressClass {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => match v4.octets() {
                [10, ..] => Self::Private10,
                [172, b, ..] if (16..32).contains(&b) => Self::Private172,
                [192, 168, ..] => Self::Private192,
                _ => Self::Outer,
            },
            IpAddr::V6(_) => Self::Outer,
        }
    }
}

/// Which of a storage's two addresses (as listed: `first,second`) a client at `client` is
/// given, as FastDFS's `fdfs_get_ipaddr_by_peer_ip` decides: the pair is ordered inner
/// first (an outer-class first address swaps places with the second), and the client gets
/// the outer one when it is of the client's own class, else the inner one.
///
/// FastDFS refuses a pair of one class; here such a pair answers with the address that
/// shares the longest prefix with the client's (a pod network and an internal load
/// balancer, both in 10.0.0.0/8, are told apart by their subnets).
pub fn address_for_client(pair: [IpAddr; 2], client: IpAddr) -> IpAddr {
    let [a, b] = pair;
    if AddressClass::of(a) == AddressClass::of(b) {
        return if common_prefix(b, client) > common_prefix(a, client) {
            b
        } else {
            a
        };
    }
    let (inner, outer) = if AddressClass::of(a) == AddressClass::Outer {
        (b, a)
    } else {
        (a, b)
    };
    if AddressClass::of(outer) == AddressClass::of(client) {
        outer
    } else {
        inner
    }
}

/// Leading bits two addresses share; none across address families.
fn common_prefix(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros(),
        _ => 0,
    }
}

/// The whole file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageIds {
    pub entries: Vec<StorageIdEntry>,
}

impl StorageIds {
    pub fn load(path: &Path) -> Result<Self, StorageIdsError> {
        let text = std::fs::read_to_string(path).map_err(|source| StorageIdsError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| StorageIdsError::Bad {
            path: path.into(),
            line,
            reason,
        })
    }

    /// Parses the text; errors carry the 1-based line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries: Vec<StorageIdEntry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |reason: String| (i + 1, reason);
            let words: Vec<&str> = line.split_whitespace().collect();
            let (id, group, addr) = match words.as_slice() {
                [id, group, addr, ..] => (*id, *group, *addr),
                _ => return Err(err("expected `id group host[:port]`".into())),
            };
            match id.parse::<u32>() {
                Ok(n) if (1..=MAX_SERVER_ID).contains(&n) && id.len() < 16 => {}
                _ => return Err(err(format!("id {id:?} must be a number in 1..=16777215"))),
            }
            if !crate::fileid::valid_group(group) {
                return Err(err(format!("bad group name {group:?}")));
            }
            let mut rw_mode = RW_BOTH;
            for opt in &words[3..] {
                rw_mode = match opt.strip_prefix("rw=") {
                    Some("both") => RW_BOTH,
                    Some("read") => RW_READ,
                    Some("write") => RW_WRITE,
                    Some("none") => RW_NONE,
                    _ => return Err(err(format!("unknown option {opt:?}"))),
                };
            }
            let (hosts, port) = split_hosts(addr).map_err(err)?;
            if entries.iter().any(|e| e.id == id) {
                return Err(err(format!("duplicate id {id}")));
            }
            entries.push(StorageIdEntry {
                id: id.to_owned(),
                group: group.to_owned(),
                hosts,
                port,
                rw_mode,
            });
        }
        Ok(StorageIds { entries })
    }

    pub fn by_id(&self, id: &str) -> Option<&StorageIdEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The entry of a storage at `ip:port` in `group` (names resolved now).
    pub fn by_group_and_addr(&self, group: &str, ip: IpAddr, port: u16) -> Option<&StorageIdEntry> {
        self.entries
            .iter()
            .find(|e| e.group == group && e.matches(ip, port))
    }

    /// Each storage listed with two hosts, by id, with both resolved now (first address of
    /// each name); entries whose names do not resolve yet are left out. Blocking.
    pub fn resolve_pairs(&self) -> BTreeMap<String, [IpAddr; 2]> {
        self.entries
            .iter()
            .filter_map(|e| {
                let [a, b] = e.hosts.as_slice() else {
                    return None;
                };
                let a = resolve_host(a).into_iter().next()?;
                let b = resolve_host(b).into_iter().next()?;
                Some((e.id.clone(), [a, b]))
            })
            .collect()
    }

    /// Whether any configured host is an IPv6 address (FastDFS then widens IP fields).
    pub fn has_ipv6(&self) -> bool {
        self.entries
            .iter()
            .flat_map(|e| &e.hosts)
            .any(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    }
}

/// Splits `host[,host2][:port]`, with IPv6 hosts in brackets.
fn split_hosts(addr: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (hosts_part, port) = match addr.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && (h.ends_with(']') || !h.contains(':')) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("bad port in {addr:?}"))?;
            (h, Some(port))
        }
        _ => (addr, None),
    };
    let hosts: Vec<String> = hosts_part
        .split(',')
        .map(|h| {
            h.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .collect();
    if hosts.is_empty() || hosts.len() > 2 || hosts.iter().any(String::is_empty) {
        return Err(format!("bad host list {addr:?}"));
    }
    Ok((hosts, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let ids = StorageIds::parse(
            "# comment\n100001 group1 127.0.0.2\n100002 group1 127.0.0.3:23001 rw=read\n\
             100003 group2 10.0.0.1,192.168.0.1:23000\n100004 group2 [::1]:23000 rw=none\n\
             100005 group3 localhost\n",
        )
        .expect("parses");
        assert_eq!(ids.entries.len(), 5);
        assert_eq!(ids.entries[1].port, Some(23001));
        assert_eq!(ids.entries[1].rw_mode, RW_READ);
        assert_eq!(ids.entries[2].hosts, ["10.0.0.1", "192.168.0.1"]);
        assert_eq!(ids.entries[3].hosts, ["::1"]);
        assert_eq!(
            ids.entries[3].to_line(),
            "100004 group2 [::1]:23000 rw=none"
        );
        assert!(ids.has_ipv6());
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            ids.by_group_and_addr("group3", lo, 23000)
                .map(|e| e.id.as_str()),
            Some("100005"),
            "host names are resolved"
        );
        assert!(
            ids.by_group_and_addr("group1", "127.0.0.3".parse().expect("ip"), 23000)
                .is_none(),
            "port must match when given"
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn address_classes_follow_fastdfs() {
        for (addr, class) in [
            ("10.1.2.3", AddressClass::Private10),
            ("172.16.0.1", AddressClass::Private172),
            ("172.31.255.1", AddressClass::Private172),
            ("172.32.0.1", AddressClass::Outer),
            ("172.15.0.1", AddressClass::Outer),
            ("192.168.1.1", AddressClass::Private192),
            ("192.169.1.1", AddressClass::Outer),
            ("127.0.0.1", AddressClass::Outer),
            ("203.0.113.7", AddressClass::Outer),
            ("::1", AddressClass::Outer),
        ] {
            assert_eq!(AddressClass::of(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn a_client_gets_the_address_of_its_own_network() {
        let pod = ip("10.244.1.5");
        let public = ip("203.0.113.7");
        // Inner-outer, in either order.
        for pair in [[pod, public], [public, pod]] {
            assert_eq!(address_for_client(pair, ip("10.244.3.9")), pod);
            assert_eq!(address_for_client(pair, ip("198.51.100.1")), public);
            // A client of a third class gets the inner address.
            assert_eq!(address_for_client(pair, ip("192.168.0.9")), pod);
        }
        // Two private classes: pod network 172.20/16 inside, node network 192.168/16 outside.
        let pair = [ip("172.20.0.11"), ip("192.168.7.11")];
        assert_eq!(address_for_client(pair, ip("172.20.3.1")), pair[0]);
        assert_eq!(address_for_client(pair, ip("192.168.7.200")), pair[1]);
        // Loopback counts as outer, as in FastDFS.
        let pair = [ip("127.0.0.21"), ip("10.78.0.11")];
        assert_eq!(address_for_client(pair, ip("127.0.0.1")), pair[0]);
        assert_eq!(address_for_client(pair, ip("10.78.0.2")), pair[1]);
        // One class (FastDFS refuses such a pair): the longer shared prefix decides.
        let pair = [ip("10.244.1.5"), ip("10.0.5.5")];
        assert_eq!(address_for_client(pair, ip("10.244.9.9")), pair[0]);
        assert_eq!(address_for_client(pair, ip("10.0.9.9")), pair[1]);
    }

    #[test]
    fn pairs_resolve_by_id() {
        let ids = StorageIds::parse(
            "100001 group1 127.0.0.2\n100002 group1 10.0.0.1,192.168.0.1:23000\n\
             100003 group1 localhost,203.0.113.9\n",
        )
        .expect("parses");
        let pairs = ids.resolve_pairs();
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert_eq!(pairs["100002"], [ip("10.0.0.1"), ip("192.168.0.1")]);
        assert_eq!(pairs["100003"][1], ip("203.0.113.9"));
        assert!(pairs["100003"][0].is_loopback());
    }

    #[test]
    fn refuses_bad_lines() {
        for (text, line) in [
            ("abc group1 127.0.0.1", 1),
            ("1 group1 127.0.0.1\n16777216 group1 127.0.0.1", 2),
            ("1 grou-p 127.0.0.1", 1),
            ("1 group1", 1),
            ("1 group1 127.0.0.1 rw=maybe", 1),
            ("1 group1 127.0.0.1:0", 1),
            ("1 group1 127.0.0.1\n1 group2 127.0.0.2", 2),
        ] {
            assert_eq!(
                StorageIds::parse(text).map_err(|e| e.0),
                Err(line),
                "{text}"
            );
        }
    }
}
