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
    /// ipset contents by set name (None: the set is not known).
    pub sets: BTreeMap<String, Vec<IpNet>>,
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
