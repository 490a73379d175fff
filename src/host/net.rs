//! The host's network as the packet evaluator needs it: interfaces and their addresses,
//! routes, whether it forwards, the contents of ipsets, and the ports Docker's userland
//! proxy listens on (where clients reach a published port through INPUT, as IPv6
//! clients do under Docker's default setup). Read from iproute2's JSON (`ip -j addr`,
//! `ip -j route`), `/proc/sys/net`, `ipset save` and the command lines of
//! `docker-proxy` processes; the parsers are plain functions over that text, the
//! reading is [`HostNet::read`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;

use ipnet::IpNet;
use serde::Deserialize;

use crate::command;
use crate::iptables::walk::Transport;

/// How many processes are looked at for docker-proxy (one per published port and
/// family): a bound, so a host with a runaway process table cannot stall the reader.
const MAX_PROCESSES: usize = 65_536;

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
        let mut names: Vec<String> = self
            .routes
            .iter()
            .filter(|r| r.destination.prefix_len() == 0)
            .map(|r| r.interface.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Reads the live host (the network namespace this process is in).
    pub fn read() -> anyhow::Result<HostNet> {
        let addresses = command::run("ip", &["-j", "address", "show"], b"")?;
        let mut routes = parse_routes(&command::run(
            "ip",
            &["-4", "-j", "route", "show", "table", "main"],
            b"",
        )?)?;
        routes.extend(parse_routes(&command::run(
            "ip",
            &["-6", "-j", "route", "show", "table", "main"],
            b"",
        )?)?);
        let flag = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
        Ok(HostNet {
            interfaces: parse_addresses(&addresses)?,
            routes,
            forwards_v4: flag("/proc/sys/net/ipv4/ip_forward"),
            forwards_v6: flag("/proc/sys/net/ipv6/conf/all/forwarding"),
            // No ipset tool, or no sets: set matches then answer "unknown".
            sets: command::run("ipset", &["save"], b"")
                .map(|text| parse_ipset_save(&text))
                .unwrap_or_default(),
            proxies: read_proxies(),
        })
    }
}

/// The docker-proxy processes of this host (its PID namespace), from /proc.
fn read_proxies() -> Vec<ProxyListener> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .take(MAX_PROCESSES)
        // Only root's: any user can start a process named docker-proxy.
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.uid() == 0))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter_map(|bytes| {
            let argv: Vec<String> = bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            parse_docker_proxy(&argv)
        })
        .collect()
}

/// A docker-proxy command line (`docker-proxy -proto tcp -host-ip :: -host-port 8080
/// -container-ip 172.17.0.2 -container-port 80`); None for any other process.
pub fn parse_docker_proxy(argv: &[String]) -> Option<ProxyListener> {
    let program = argv.first()?;
    if program.rsplit('/').next() != Some("docker-proxy") {
        return None;
    }
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag || a == &format!("-{flag}"))
            .and_then(|i| argv.get(i + 1))
            .map(String::as_str)
    };
    let transport = match value("-proto")? {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        _ => return None,
    };
    Some(ProxyListener {
        transport,
        host_address: value("-host-ip")?.parse().ok()?,
        host_port: value("-host-port")?.parse().ok().filter(|p| *p > 0)?,
        container_address: value("-container-ip").and_then(|a| a.parse().ok()),
        container_port: value("-container-port").and_then(|p| p.parse().ok()),
        command: argv.join(" "),
    })
}

fn is_link_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[derive(Deserialize)]
struct JsonLink {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<JsonAddress>,
}

#[derive(Deserialize)]
struct JsonAddress {
    local: Option<String>,
    prefixlen: Option<u8>,
}

#[derive(Deserialize)]
struct JsonRoute {
    dst: String,
    dev: Option<String>,
}

/// Parses `ip -j address show`.
pub fn parse_addresses(json: &str) -> anyhow::Result<Vec<Interface>> {
    let links: Vec<JsonLink> = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("cannot read `ip -j address` output: {e}"))?;
    Ok(links
        .into_iter()
        .map(|link| Interface {
            name: link.ifname,
            addresses: link
                .addr_info
                .iter()
                .filter_map(|a| {
                    let address: IpAddr = a.local.as_deref()?.parse().ok()?;
                    IpNet::new(address, a.prefixlen?).ok()
                })
                .collect(),
        })
        .collect())
}

/// Parses `ip -j route show` (one family).
pub fn parse_routes(json: &str) -> anyhow::Result<Vec<Route>> {
    let routes: Vec<JsonRoute> = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("cannot read `ip -j route` output: {e}"))?;
    Ok(routes
        .into_iter()
        .filter_map(|r| {
            let interface = r.dev?;
            let destination = match r.dst.as_str() {
                // `ip -4`/`-6` says "default" for either family; the caller's family
                // decides, so both are produced and only the right one ever matches.
                "default" => {
                    return Some(vec![
                        Route {
                            destination: "0.0.0.0/0".parse().ok()?,
                            interface: interface.clone(),
                        },
                        Route {
                            destination: "::/0".parse().ok()?,
                            interface,
                        },
                    ]);
                }
                dst => dst
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| dst.parse::<IpAddr>().ok().map(IpNet::from))?,
            };
            Some(vec![Route {
                destination,
                interface,
            }])
        })
        .flatten()
        .collect())
}

/// Parses `ipset save`: `add NAME MEMBER` lines of address and network sets.
pub fn parse_ipset_save(text: &str) -> BTreeMap<String, Vec<IpNet>> {
    let mut sets: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", name, ..] => {
                sets.entry((*name).to_owned()).or_default();
            }
            ["add", name, member, ..] => {
                if let Some(net) = member
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| member.parse::<IpAddr>().ok().map(IpNet::from))
                {
                    sets.entry((*name).to_owned()).or_default().push(net);
                }
            }
            _ => {}
        }
    }
    sets
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
mod tests {
    use super::*;

    #[test]
    fn docker_proxy_command_lines_are_listeners() {
        let argv = |line: &str| -> Vec<String> { line.split(' ').map(str::to_owned).collect() };
        let proxy = parse_docker_proxy(&argv(
            "/usr/sbin/docker-proxy -proto tcp -host-ip :: -host-port 8080 -container-ip 172.17.0.2 -container-port 80",
        ))
        .expect("a listener");
        assert_eq!(
            (
                proxy.transport,
                proxy.host_address,
                proxy.host_port,
                proxy.container_port
            ),
            (Transport::Tcp, "::".parse().unwrap(), 8080, Some(80))
        );
        assert!(parse_docker_proxy(&argv("/usr/bin/sleep -proto tcp")).is_none());
        assert!(
            parse_docker_proxy(&argv("docker-proxy -proto sctp -host-ip :: -host-port 1"))
                .is_none()
        );
        assert!(
            parse_docker_proxy(&argv("docker-proxy -proto tcp -host-ip :: -host-port 0")).is_none()
        );
    }

    #[test]
    fn reads_addresses_routes_and_sets() {
        let interfaces = parse_addresses(r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},{"ifname":"eth0","addr_info":[{"local":"192.0.2.2","prefixlen":24},{"local":"fe80::1","prefixlen":64},{"local":"2001:db8::2","prefixlen":64}]}]"#).unwrap();
        let routes = parse_routes(r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},{"dst":"172.17.0.0/16","dev":"docker0"},{"dst":"unreachable 10.0.0.0/8"}]"#).unwrap();
        let host = HostNet {
            interfaces,
            routes,
            ..HostNet::default()
        };
        assert!(host.is_local("192.0.2.2".parse().unwrap()));
        assert!(!host.is_local("192.0.2.3".parse().unwrap()));
        assert_eq!(host.route("172.17.0.2".parse().unwrap()), Some("docker0"));
        assert_eq!(host.route("8.8.8.8".parse().unwrap()), Some("eth0"));
        assert_eq!(
            host.address_of("eth0", true),
            Some("2001:db8::2".parse().unwrap())
        );
        assert_eq!(host.default_route_interfaces(), ["eth0"]);
        let sets = parse_ipset_save(
            "create office hash:net family inet\nadd office 192.0.2.0/28\nadd office 198.51.100.7\n",
        );
        assert_eq!(
            sets["office"],
            [
                "192.0.2.0/28".parse::<IpNet>().unwrap(),
                "198.51.100.7/32".parse().unwrap()
            ]
        );
    }
}
