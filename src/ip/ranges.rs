//! CIDR lists compiled into merged, sorted ranges with `O(log n)` lookup.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::ConfigError;

/// A set of addresses given as CIDRs, compiled into sorted, merged,
/// non-overlapping ranges per address family. IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`), in the list or looked up, count as IPv4.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Copy + Ord>(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        if let Some(last) = merged.last_mut() {
            // Overlapping or adjacent: extend the previous range.
            if next(last.1).is_none_or(|after| start <= after) {
                if end > last.1 {
                    last.1 = end;
                }
                continue;
            }
        }
        merged.push((start, end));
    }
    merged
}

fn contains<T: Copy + Ord>(ranges: &[(T, T)], value: T) -> bool {
    // The last range that starts at or before `value`.
    let index = ranges.partition_point(|&(start, _)| start <= value);
    index > 0 && value <= ranges[index - 1].1
}

impl IpRanges {
    /// Compiles `networks`.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in networks {
            match net {
                IpNet::V4(net) => v4.push((u32::from(net.network()), u32::from(net.broadcast()))),
                IpNet::V6(net) => {
                    let start = net.network();
                    let end = net.broadcast();
                    // A mapped IPv4 range (::ffff:0:0/96 and narrower) is IPv4.
                    match (start.to_ipv4_mapped(), end.to_ipv4_mapped()) {
                        (Some(s), Some(e)) => v4.push((u32::from(s), u32::from(e))),
                        _ => v6.push((u128::from(start), u128::from(end))),
                    }
                }
            }
        }
        IpRanges {
            v4: merge(v4, |x: u32| x.checked_add(1)),
            v6: merge(v6, |x: u128| x.checked_add(1)),
        }
    }

    /// Parses and compiles a comma-separated list of CIDRs or addresses
    /// (`"10.0.0.0/8, 192.168.1.7, ::1"`); blanks are skipped.
    pub fn parse_list(list: &str) -> Result<Self, ConfigError> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::InvalidCidr(item.to_owned()))?;
            networks.push(net);
        }
        Ok(Self::new(networks))
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => contains(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => contains(&self.v6, u128::from(v6)),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The number of merged ranges.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the set holds every IPv4 address, or every IPv6 address
    /// (the IPv4-mapped block aside, which counts as IPv4): `0.0.0.0/0`,
    /// `::/0`, or ranges that together cover as much.
    pub fn covers_every_address(&self) -> bool {
        const MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);
        if self.v4 == [(0, u32::MAX)] {
            return true;
        }
        // Walk the gaps between the merged IPv6 ranges: each must lie in
        // the mapped block.
        let mut next: u128 = 0;
        for &(start, end) in &self.v6 {
            if start > next && !(next >= MAPPED.0 && start - 1 <= MAPPED.1) {
                return false;
            }
            match end.checked_add(1) {
                Some(after) => next = next.max(after),
                None => return true,
            }
        }
        false
    }
}

/// What [`IpRules::decide`] says of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpDecision {
    /// Let it through.
    Allow,
    /// The address is on the deny list.
    Denied,
    /// An allow list is set and the address is not on it.
    NotAllowed,
}

/// An allow list and a deny list: deny wins, and an empty allow list allows
/// every address not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    allow: IpRanges,
    deny: IpRanges,
}

impl IpRules {
    /// Rules from compiled lists.
    pub fn new(allow: IpRanges, deny: IpRanges) -> Self {
        IpRules { allow, deny }
    }

    /// Rules from comma-separated lists (see [`IpRanges::parse_list`]).
    pub fn parse(allow: &str, deny: &str) -> Result<Self, ConfigError> {
        Ok(IpRules::new(
            IpRanges::parse_list(allow)?,
            IpRanges::parse_list(deny)?,
        ))
    }

    /// Rules that allow every address.
    pub fn allow_all() -> Self {
        IpRules::default()
    }

    /// The decision for `ip`.
    pub fn decide(&self, ip: IpAddr) -> IpDecision {
        if self.deny.contains(ip) {
            IpDecision::Denied
        } else if !self.allow.is_empty() && !self.allow.contains(ip) {
            IpDecision::NotAllowed
        } else {
            IpDecision::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &str) -> IpRanges {
        IpRanges::parse_list(list).unwrap()
    }

    #[test]
    fn every_address_is_seen_however_it_is_split() {
        for list in [
            "0.0.0.0/0",
            "::/0",
            "127.0.0.1, 0.0.0.0/1, 128.0.0.0/1",
            "::/1, 8000::/1",
            "::ffff:0:0/96, 10.0.0.0/8, 0.0.0.0/1, 128.0.0.0/1",
            "::/2, 4000::/2, 8000::/1",
            "::/0, 10.0.0.0/8",
        ] {
            assert!(ranges(list).covers_every_address(), "{list}");
        }
        for list in [
            "",
            "127.0.0.1",
            "0.0.0.0/1",
            "0.0.0.0/1, 128.0.0.0/2",
            "::/1",
            "::/1, 8000::/2",
            "10.0.0.0/8, fd00::/8",
        ] {
            assert!(!ranges(list).covers_every_address(), "{list}");
        }
    }

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let r = ranges("10.0.0.0/24, 10.0.1.0/24, 10.0.0.128/25, 192.168.0.1");
        assert_eq!(r.len(), 2);
        assert!(r.contains("10.0.1.255".parse().unwrap()));
        assert!(!r.contains("10.0.2.0".parse().unwrap()));
        assert!(r.contains("192.168.0.1".parse().unwrap()));
        assert!(!r.contains("192.168.0.2".parse().unwrap()));
    }

    #[test]
    fn whole_spaces_and_edges() {
        let r = ranges("0.0.0.0/0, ::/0");
        assert!(r.contains("255.255.255.255".parse().unwrap()));
        assert!(r.contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!ranges("").contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let r = ranges("203.0.113.0/24");
        assert!(r.contains("::ffff:203.0.113.9".parse().unwrap()));
        let mapped_rule = ranges("::ffff:198.51.100.0/120");
        assert!(mapped_rule.contains("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let rules = IpRules::parse("10.0.0.0/8", "10.1.0.0/16").unwrap();
        assert_eq!(rules.decide("10.2.3.4".parse().unwrap()), IpDecision::Allow);
        assert_eq!(
            rules.decide("10.1.3.4".parse().unwrap()),
            IpDecision::Denied
        );
        assert_eq!(
            rules.decide("11.0.0.1".parse().unwrap()),
            IpDecision::NotAllowed
        );
        let open = IpRules::parse("", "192.0.2.1").unwrap();
        assert_eq!(open.decide("8.8.8.8".parse().unwrap()), IpDecision::Allow);
        assert_eq!(
            open.decide("192.0.2.1".parse().unwrap()),
            IpDecision::Denied
        );
    }

    #[test]
    fn garbage_is_refused_at_build_time() {
        assert!(IpRanges::parse_list("10.0.0.0/33").is_err());
        assert!(IpRanges::parse_list("example.com").is_err());
    }
}
