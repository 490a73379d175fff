//! The host's network as the packet evaluator needs it: interfaces and their addresses,
//! routes, whether it forwards, the contents of ipsets, and the ports Docker's userland
//! proxy listens on (where clients reach a published port through INPUT, as IPv6
//! clients do under Docker's default setup). The model and its questions only: it is
//! read by [`HostNet::read`] (in [`crate::host::live`]) through the parsers of
//! [`crate::host::parse`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::packet::Transport;

/// A port docker-proxy listens on, from its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyListener {
    /// tcp or udp.
    pub transport: Transport,
    /// The host address it listens on (`0.0.0.0`, `::` or one address).
    pub host_address: IpAddr,
    /// The host port.
    pub host_port: u16,
    /// Where it forwards to.
    pub container_address: Option<IpAddr>,
    /// The container port.
    pub container_port: Option<u16>,
    /// Its command line.
    pub command: String,
}
/// An ipset's members (addresses and networks of both families) as sorted, merged
/// ranges, so that a membership question costs a binary search however large the set
/// (a 100,000-entry allowlist is asked once per address-space piece by the audit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetMembers {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl SetMembers {
    /// `address` is in one of the members.
    pub fn contains(&self, address: IpAddr) -> bool {
        let (ranges, at) = Self::side(address);
        let ranges = match ranges {
            Side::V4 => &self.v4,
            Side::V6 => &self.v6,
        };
        let after = ranges.partition_point(|(first, _)| *first <= at);
        after > 0 && ranges.get(after - 1).is_some_and(|(_, last)| at <= *last)
    }

    /// Every address of `net` is in the members (which may cover it together).
    pub fn covers(&self, net: &IpNet) -> bool {
        let (side, first) = Self::side(net.network());
        let (_, last) = Self::side(net.broadcast());
        let ranges = match side {
            Side::V4 => &self.v4,
            Side::V6 => &self.v6,
        };
        let after = ranges.partition_point(|(start, _)| *start <= first);
        after > 0 && ranges.get(after - 1).is_some_and(|(_, end)| last <= *end)
    }

    /// A reader of the members of one family for addresses asked in ascending order:
    /// each question costs what it moves past, so a walk up the address space asks
    /// every question for the set's size once in all (the audit's pieces come sorted).
    pub fn ascending(&self, ipv6: bool) -> AscendingMembers<'_> {
        AscendingMembers {
            ranges: if ipv6 { &self.v6 } else { &self.v4 },
            next: 0,
        }
    }

    /// The members as (first, last) address ranges, merged, IPv4 first.
    pub fn ranges(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        let v4 = self.v4.iter().map(|(a, b)| (v4_of(*a), v4_of(*b)));
        let v6 = self.v6.iter().map(|(a, b)| {
            (
                IpAddr::V6(std::net::Ipv6Addr::from(*a)),
                IpAddr::V6(std::net::Ipv6Addr::from(*b)),
            )
        });
        v4.chain(v6)
    }

    /// The members as ranges of address values (an IPv4 address is its 32-bit value),
    /// merged, IPv4 first: what a digest of them is taken from.
    pub fn value_ranges(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.v4.iter().chain(&self.v6).copied()
    }

    /// The addresses of these members that `other` does not hold.
    pub fn without(&self, other: &SetMembers) -> SetMembers {
        SetMembers {
            v4: subtract(&self.v4, &other.v4),
            v6: subtract(&self.v6, &other.v6),
        }
    }

    /// The members as the fewest networks that cover exactly their addresses, IPv4
    /// first, each range's in ascending order.
    pub fn networks(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().flat_map(|(first, last)| {
            let address =
                |value: u128| std::net::Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX));
            ipnet::Ipv4Subnets::new(address(*first), address(*last), 0).map(IpNet::V4)
        });
        let v6 = self.v6.iter().flat_map(|(first, last)| {
            ipnet::Ipv6Subnets::new((*first).into(), (*last).into(), 0).map(IpNet::V6)
        });
        v4.chain(v6)
    }

    fn side(address: IpAddr) -> (Side, u128) {
        match address {
            IpAddr::V4(a) => (Side::V4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (Side::V6, u128::from(a)),
        }
    }
}

/// [`SetMembers::ascending`]: membership of addresses asked in ascending order.
#[derive(Debug, Clone)]
pub struct AscendingMembers<'a> {
    ranges: &'a [(u128, u128)],
    /// The first range that does not end before the last address asked.
    next: usize,
}

impl AscendingMembers<'_> {
    /// `address` is in one of the members. Addresses must be asked in ascending order
    /// (one family); an address below the last one asked is answered by a search.
    pub fn contains(&mut self, address: IpAddr) -> bool {
        let (_, at) = SetMembers::side(address);
        if self.next > 0
            && self
                .ranges
                .get(self.next - 1)
                .is_some_and(|(_, end)| at <= *end)
        {
            // Asked out of order: start again from where the address is.
            self.next = self.ranges.partition_point(|(_, end)| *end < at);
        }
        while self.ranges.get(self.next).is_some_and(|(_, end)| *end < at) {
            self.next += 1;
        }
        self.ranges
            .get(self.next)
            .is_some_and(|(first, _)| *first <= at)
    }
}

/// Which family's ranges.
enum Side {
    V4,
    V6,
}

fn v4_of(value: u128) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(
        u32::try_from(value).unwrap_or(u32::MAX),
    ))
}

impl FromIterator<IpNet> for SetMembers {
    fn from_iter<I: IntoIterator<Item = IpNet>>(nets: I) -> SetMembers {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            let (side, first) = SetMembers::side(net.network());
            let (_, last) = SetMembers::side(net.broadcast());
            match side {
                Side::V4 => v4.push((first, last)),
                Side::V6 => v6.push((first, last)),
            }
        }
        SetMembers {
            v4: merged(v4),
            v6: merged(v6),
        }
    }
}

/// The parts of the sorted, merged `ranges` that the sorted, merged `taken` do not
/// cover, sorted.
fn subtract(ranges: &[(u128, u128)], taken: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut next = 0;
    for &(first, last) in ranges {
        // The taken ranges that end before this one starts end before every later one.
        while taken.get(next).is_some_and(|(_, end)| *end < first) {
            next += 1;
        }
        // The start of what is left of this range, if anything is.
        let mut from = Some(first);
        for &(start, end) in taken[next..].iter().take_while(|(start, _)| *start <= last) {
            let Some(at) = from else { break };
            if start > at {
                out.push((at, start - 1));
            }
            from = (end < last).then(|| end + 1);
        }
        if let Some(at) = from {
            out.push((at, last));
        }
    }
    out
}

/// `ranges` sorted, with overlapping and adjacent ones merged.
fn merged(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

/// One interface and its addresses (with their prefix lengths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<IpNet>,
}

/// A route: packets to `destination` leave through `interface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination network (`default` is 0.0.0.0/0 or ::/0).
    pub destination: IpNet,
    /// The interface.
    pub interface: String,
}

/// What the evaluator knows of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNet {
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Routes of the main table, both families.
    pub routes: Vec<Route>,
    /// IPv4 forwarding is on.
    pub forwards_v4: bool,
    /// IPv6 forwarding is on.
    pub forwards_v6: bool,
    /// ipset contents by set name (None: the set is not known, or is of a kind the
    /// evaluator does not model, such as one with `nomatch` members).
    pub sets: BTreeMap<String, SetMembers>,
    /// docker-proxy's listening ports.
    pub proxies: Vec<ProxyListener>,
}

impl HostNet {
    /// `address` is one of the host's own (what addrtype calls LOCAL).
    pub fn is_local(&self, address: IpAddr) -> bool {
        address.is_loopback()
            || self
                .interfaces
                .iter()
                .flat_map(|i| &i.addresses)
                .any(|a| a.addr() == address)
    }

    /// The interface a packet to `address` leaves through (longest prefix).
    pub fn route(&self, address: IpAddr) -> Option<&str> {
        self.routes
            .iter()
            .filter(|r| r.destination.contains(&address))
            .max_by_key(|r| r.destination.prefix_len())
            .map(|r| r.interface.as_str())
    }

    /// The first address of `interface` in the family of `like`.
    pub fn address_of(&self, interface: &str, ipv6: bool) -> Option<IpAddr> {
        self.interfaces
            .iter()
            .find(|i| i.name == interface)?
            .addresses
            .iter()
            .map(IpNet::addr)
            .find(|a| a.is_ipv6() == ipv6 && !is_link_local(*a))
    }

    /// Names of every interface.
    pub fn interface_names(&self) -> Vec<String> {
        self.interfaces.iter().map(|i| i.name.clone()).collect()
    }

    /// Interfaces that carry a default route.
    pub fn default_route_interfaces(&self) -> Vec<String> {
        default_route_interfaces(&self.routes)
    }
}

/// The interfaces of the default routes among `routes`, sorted, each once. A default
/// route through `lo` is how an unreachable, prohibit or blackhole IPv6 default is
/// listed: it leads nowhere, so it names no interface.
pub fn default_route_interfaces(routes: &[Route]) -> Vec<String> {
    let mut names: Vec<String> = routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 0 && r.interface != "lo")
        .map(|r| r.interface.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn is_link_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A host for unit tests: eth0 203.0.113.10/24 with the default route, docker0
/// 172.17.0.1/16, forwarding on.
#[cfg(test)]
pub(crate) fn docker_test_host() -> HostNet {
    let interface = |name: &str, address: &str| Interface {
        name: name.to_owned(),
        addresses: vec![address.parse().unwrap_or_else(|e| panic!("{address}: {e}"))],
    };
    let route = |destination: &str, interface: &str| Route {
        destination: destination
            .parse()
            .unwrap_or_else(|e| panic!("{destination}: {e}")),
        interface: interface.to_owned(),
    };
    HostNet {
        interfaces: vec![
            interface("eth0", "203.0.113.10/24"),
            interface("docker0", "172.17.0.1/16"),
        ],
        routes: vec![
            route("0.0.0.0/0", "eth0"),
            route("172.17.0.0/16", "docker0"),
        ],
        forwards_v4: true,
        forwards_v6: true,
        sets: BTreeMap::new(),
        proxies: Vec::new(),
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;

    fn set(nets: &[&str]) -> SetMembers {
        nets.iter().map(|n| n.parse::<IpNet>().unwrap()).collect()
    }

    /// Adjacent members merge: a network two of them cover together is covered, and
    /// one address past their end is not.
    #[test]
    fn ascending_questions_agree_with_the_search() {
        let members = set(&["10.0.0.0/24", "10.0.2.0/24", "10.0.4.7/32", "2001:db8::/64"]);
        let mut ascending = members.ascending(false);
        for i in 0..(6 * 256) {
            let address: IpAddr = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            assert_eq!(
                ascending.contains(address),
                members.contains(address),
                "{address}"
            );
        }
        // Out of order still answers right.
        let low: IpAddr = "10.0.0.9".parse().expect("address");
        assert!(ascending.contains(low));
        let mut six = members.ascending(true);
        assert!(six.contains("2001:db8::1".parse().expect("address")));
        assert!(!six.contains("2001:db9::".parse().expect("address")));
    }

    /// What one set holds and another does not, against a check of every address (a
    /// small space: the values of 10.0.0.0/24), and the networks that cover it exactly.
    #[test]
    fn the_difference_of_two_sets_is_what_only_the_first_holds() {
        use proptest::prelude::*;
        let nets = proptest::collection::vec((0u8..=255, 24u8..=32), 0..8);
        proptest!(|(a in nets.clone(), b in nets)| {
            let of = |nets: &[(u8, u8)]| -> SetMembers {
                nets.iter()
                    .map(|(host, len)| {
                        IpNet::new(std::net::Ipv4Addr::new(10, 0, 0, *host).into(), *len)
                            .expect("network")
                            .trunc()
                    })
                    .collect()
            };
            let (a, b) = (of(&a), of(&b));
            let only_a = a.without(&b);
            for host in 0..=255u8 {
                let address = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, host));
                prop_assert_eq!(
                    only_a.contains(address),
                    a.contains(address) && !b.contains(address),
                    "{}", address
                );
            }
            let networks: SetMembers = only_a.networks().collect();
            prop_assert_eq!(&networks, &only_a);
        });
    }

    /// A range that ends at the last IPv6 address is cut without overflowing.
    #[test]
    fn the_difference_reaches_the_ends_of_the_address_space() {
        let all = set(&["::/0"]);
        let low = set(&["::/1"]);
        assert_eq!(all.without(&low), set(&["8000::/1"]));
        assert_eq!(
            all.without(&set(&["8000::/1"]))
                .networks()
                .collect::<Vec<_>>(),
            ["::/1".parse::<IpNet>().unwrap()]
        );
        assert_eq!(all.without(&all), SetMembers::default());
    }

    #[test]
    fn members_merge_and_cover_together() {
        let halves = set(&["10.0.0.0/25", "10.0.0.128/25", "2001:db8::/64"]);
        assert!(halves.covers(&"10.0.0.0/24".parse().unwrap()));
        assert!(!halves.covers(&"10.0.0.0/23".parse().unwrap()));
        assert!(halves.contains("10.0.0.255".parse().unwrap()));
        assert!(!halves.contains("10.0.1.0".parse().unwrap()));
        assert!(!halves.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(halves.contains("2001:db8::ffff".parse().unwrap()));
        assert_eq!(halves.ranges().count(), 2);
    }
}
