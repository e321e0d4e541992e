//! `allow_hosts`: which client addresses may connect.
//!
//! Accepts FastDFS's forms: `*`, a single IP, a CIDR block, and the bracketed
//! ranges of its sample configs (`10.0.1.[1-15,20]`, `host[01-08,20-25].domain`
//! is not supported: names are not resolved here).

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Any,
    Exact(IpAddr),
    Cidr(IpAddr, u8),
    /// First three IPv4 octets and the allowed last-octet ranges.
    LastOctet([u8; 3], Vec<(u8, u8)>),
}

/// A parsed allow list; an empty list allows everyone (FastDFS's default `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    rules: Vec<Rule>,
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let t = text.trim();
    if t == "*" {
        return Ok(Rule::Any);
    }
    if let Some((net, bits)) = t.split_once('/') {
        let ip: IpAddr = net
            .parse()
            .map_err(|_| format!("{t:?}: bad network address"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("{t:?}: bad prefix length"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(format!("{t:?}: prefix longer than {max}"));
        }
        return Ok(Rule::Cidr(ip, bits));
    }
    if let Some(open) = t.find('[') {
        let head: Vec<u8> = t[..open]
            .trim_end_matches('.')
            .split('.')
            .map(|o| {
                o.parse::<u8>()
                    .map_err(|_| format!("{t:?}: bad octet {o:?}"))
            })
            .collect::<Result<_, _>>()?;
        let head: [u8; 3] = head
            .try_into()
            .map_err(|_| format!("{t:?}: need three octets before '['"))?;
        let inner = t[open + 1..]
            .strip_suffix(']')
            .ok_or_else(|| format!("{t:?}: missing ']'"))?;
        let mut ranges = Vec::new();
        for part in inner.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: u8 = a
                .trim()
                .parse()
                .map_err(|_| format!("{t:?}: bad range {part:?}"))?;
            let b: u8 = b
                .trim()
                .parse()
                .map_err(|_| format!("{t:?}: bad range {part:?}"))?;
            if a > b {
                return Err(format!("{t:?}: empty range {part:?}"));
            }
            ranges.push((a, b));
        }
        return Ok(Rule::LastOctet(head, ranges));
    }
    t.parse()
        .map(Rule::Exact)
        .map_err(|_| format!("{t:?} is not *, an IP, a CIDR block or a.b.c.[x-y]"))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl AccessList {
    /// Parses entries; each may hold several rules separated by commas outside brackets or spaces.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for e in entries {
            for word in e.split_whitespace() {
                rules.push(parse_rule(word)?);
            }
        }
        Ok(AccessList { rules })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.rules.is_empty()
            || self.rules.iter().any(|r| match r {
                Rule::Any => true,
                Rule::Exact(a) => *a == ip,
                Rule::Cidr(net, bits) => in_cidr(ip, *net, *bits),
                Rule::LastOctet(head, ranges) => match ip {
                    IpAddr::V4(v4) => {
                        let o = v4.octets();
                        o[..3] == head[..] && ranges.iter().any(|(a, b)| (*a..=*b).contains(&o[3]))
                    }
                    IpAddr::V6(_) => false,
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AccessList {
        AccessList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("parses")
    }

    #[test]
    fn forms() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(list(&[]).allows(ip("10.1.2.3")));
        assert!(list(&["*"]).allows(ip("10.1.2.3")));
        let l = list(&["127.0.0.1", "10.0.0.0/8", "192.168.1.[1-15,20]"]);
        assert!(l.allows(ip("127.0.0.1")));
        assert!(l.allows(ip("10.200.3.4")));
        assert!(l.allows(ip("192.168.1.15")) && l.allows(ip("192.168.1.20")));
        assert!(!l.allows(ip("192.168.1.16")));
        assert!(!l.allows(ip("127.0.0.2")));
        assert!(l.allows(ip("::ffff:10.0.0.1")));
        assert!(AccessList::parse(&["10.0.0.0/40".into()]).is_err());
        assert!(AccessList::parse(&["nonsense".into()]).is_err());
        assert!(AccessList::parse(&["1.2.3.[9-1]".into()]).is_err());
    }
}
