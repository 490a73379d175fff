//! What Docker publishes, in a form no backend owns: a [`PublishedPort`] is a host port
//! that leads to a container, reached either through Docker's DNAT rule (read from the
//! rules by the backend: [`crate::backend::FamilyRules::published_ports`]) or through a
//! docker-proxy process that serves a family Docker does not NAT ([`proxy_ports`], from
//! the host's facts).

use std::net::IpAddr;

use serde::Serialize;

use crate::family::Family;
use crate::host::net::HostNet;
use crate::packet::Transport;

/// How clients reach a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortPath {
    /// Docker's DNAT rule sends them through FORWARD (and DOCKER-USER).
    Dnat,
    /// docker-proxy accepts them on the host (INPUT) and connects to the container.
    DockerProxy,
}

impl std::fmt::Display for PortPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortPath::Dnat => "DNAT",
            PortPath::DockerProxy => "docker-proxy",
        })
    }
}

/// A port Docker publishes, as its DNAT rule (or docker-proxy) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    /// `IPv4` or `IPv6`.
    pub family: String,
    /// Through FORWARD (DNAT) or INPUT (docker-proxy).
    pub path: PortPath,
    /// tcp or udp.
    pub transport: Transport,
    /// Only when dialed to this host address (`-d`); any local address otherwise.
    pub host_address: Option<IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// Where it leads.
    pub container_address: Option<IpAddr>,
    /// The container port.
    pub container_port: Option<u16>,
    /// The DNAT rule, or docker-proxy's command line.
    pub rule: String,
}

/// The ports docker-proxy serves in `family` that no DNAT rule of that family takes
/// first: their clients reach the host itself, through INPUT.
pub fn proxy_ports(host: &HostNet, family: Family, dnat: &[PublishedPort]) -> Vec<PublishedPort> {
    let mut ports: Vec<PublishedPort> = host
        .proxies
        .iter()
        .filter(|p| Family::of(&p.host_address) == family)
        .filter(|p| {
            !dnat
                .iter()
                .any(|d| d.transport == p.transport && d.host_port == p.host_port)
        })
        .map(|p| PublishedPort {
            family: family.to_string(),
            path: PortPath::DockerProxy,
            transport: p.transport,
            host_address: (!p.host_address.is_unspecified()).then_some(p.host_address),
            host_port: p.host_port,
            container_address: p.container_address,
            container_port: p.container_port,
            rule: p.command.clone(),
        })
        .collect();
    ports.sort_by_key(|p| (p.host_port, p.transport == Transport::Udp, p.host_address));
    ports.dedup_by_key(|p| (p.host_port, p.transport, p.host_address));
    ports
}
