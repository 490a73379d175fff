//! The plain parsers of what the host is read from, kept apart from the reading
//! ([`crate::host::live`]) and tested on captured text: iproute2's JSON (`ip -j
//! address`, `ip -j route`, `ip -j route get`), `/proc/net/tcp{,6}`, `sshd_config`,
//! `$SSH_CONNECTION`, `ipset save` and docker-proxy command lines.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

use crate::host::net::{Interface, ProxyListener, Route, SetMembers};
use crate::host::{SshConnection, TcpSocket};
use crate::packet::Transport;

/// The ports in sshd_config text: every `Port` line, and the port of every
/// `ListenAddress host:port` (which sshd listens on besides); 22 when no `Port` line
/// gives one.
pub fn parse_sshd_ports(text: &str) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    let mut listen_ports = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        // `Match` blocks cannot set Port, and everything after one belongs to it.
        let mut words = line
            .split(|c: char| c.is_whitespace() || c == '=')
            .filter(|w| !w.is_empty());
        match words.next() {
            Some(k) if k.eq_ignore_ascii_case("match") => break,
            Some(k) if k.eq_ignore_ascii_case("port") => {
                if let Some(port) = words
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p > 0)
                {
                    ports.insert(port);
                }
            }
            Some(k) if k.eq_ignore_ascii_case("listenaddress") => {
                // `host:port` or `[v6]:port`; a bare address (or bare IPv6) has none.
                if let Some(port) = words
                    .next()
                    .and_then(|address| {
                        let (host, port) = address.rsplit_once(':')?;
                        (!host.contains(':') || host.ends_with(']')).then_some(port)
                    })
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p > 0)
                {
                    listen_ports.insert(port);
                }
            }
            _ => {}
        }
    }
    if ports.is_empty() {
        ports.insert(22);
    }
    ports.extend(listen_ports);
    ports.into_iter().collect()
}

/// `$SSH_CONNECTION` ("client_ip client_port server_ip server_port").
pub fn parse_ssh_connection(text: &str) -> Option<SshConnection> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [client, _, server, server_port] = fields.as_slice() else {
        return None;
    };
    Some(SshConnection {
        client: unmapped(client.parse().ok()?),
        server: unmapped(server.parse().ok()?),
        server_port: server_port.parse().ok().filter(|p| *p > 0)?,
    })
}

/// An IPv4 address of a dual-stack socket ("::ffff:a.b.c.d") as the IPv4 address it is.
fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;

/// Parses `/proc/net/tcp` (`ipv6` false) or `/proc/net/tcp6` text. Addresses are
/// printed as 32-bit words in the host's byte order.
pub fn parse_tcp_sockets(text: &str, ipv6: bool) -> Vec<TcpSocket> {
    let endpoint = |field: &str| -> Option<(IpAddr, u16)> {
        let (address, port) = field.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let words: Vec<u32> = (0..address.len() / 8)
            .map(|i| {
                address
                    .get(i * 8..i * 8 + 8)
                    .and_then(|w| u32::from_str_radix(w, 16).ok())
            })
            .collect::<Option<_>>()?;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let address = match (ipv6, bytes.len()) {
            (false, 4) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            (true, 16) => {
                let octets: [u8; 16] = bytes.try_into().ok()?;
                unmapped(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => return None,
        };
        Some((address, port))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(TcpSocket {
                local: endpoint(fields.get(1)?)?,
                remote: endpoint(fields.get(2)?)?,
                state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
            })
        })
        .collect()
}

/// The established connections to a port of `sshd_ports` that something listens on.
pub fn established_ssh(sockets: &[TcpSocket], sshd_ports: &[u16]) -> Vec<SshConnection> {
    let listening: BTreeSet<u16> = sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN && sshd_ports.contains(&s.local.1))
        .map(|s| s.local.1)
        .collect();
    sockets
        .iter()
        .filter(|s| s.state == TCP_ESTABLISHED && listening.contains(&s.local.1))
        .map(|s| SshConnection {
            client: s.remote.0,
            server: s.local.0,
            server_port: s.local.1,
        })
        .collect()
}

/// The `dev` of `ip -j route get ADDR`.
pub fn parse_route_get(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Route {
        dev: Option<String>,
    }
    let routes: Vec<Route> = serde_json::from_str(json).ok()?;
    routes.into_iter().find_map(|r| r.dev)
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
    /// A multipath route's next hops (it then has no `dev` of its own).
    #[serde(default)]
    nexthops: Vec<JsonNextHop>,
}

#[derive(Deserialize)]
struct JsonNextHop {
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

/// Parses `ip -j route show` (one family). A multipath route gives one route per next
/// hop, in the kernel's order: it leaves through each of their interfaces.
pub fn parse_routes(json: &str) -> anyhow::Result<Vec<Route>> {
    let routes: Vec<JsonRoute> = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("cannot read `ip -j route` output: {e}"))?;
    let mut parsed = Vec::new();
    for route in routes {
        let destinations: Vec<IpNet> = match route.dst.as_str() {
            // `ip -4`/`-6` says "default" for either family; the caller's family
            // decides, so both are produced and only the right one ever matches.
            "default" => [IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])]
                .into_iter()
                .filter_map(|any| IpNet::new(any, 0).ok())
                .collect(),
            dst => match dst
                .parse::<IpNet>()
                .ok()
                .or_else(|| dst.parse::<IpAddr>().ok().map(IpNet::from))
            {
                Some(net) => vec![net],
                None => continue,
            },
        };
        let interfaces = route
            .dev
            .into_iter()
            .chain(route.nexthops.into_iter().filter_map(|hop| hop.dev));
        for interface in interfaces {
            for destination in &destinations {
                parsed.push(Route {
                    destination: *destination,
                    interface: interface.clone(),
                });
            }
        }
    }
    Ok(parsed)
}

/// Parses `ipset save`: `add NAME MEMBER` lines of address and network sets
/// (`hash:ip`, `hash:net`, `bitmap:ip`). A set of another type, or with a member this
/// cannot read (such as a `nomatch` exception), is left out: a question about it is
/// then "unknown", never answered from part of it.
pub fn parse_ipset_save(text: &str) -> BTreeMap<String, SetMembers> {
    const MODELLED: [&str; 3] = ["hash:ip", "hash:net", "bitmap:ip"];
    let mut members: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
    let mut unreadable: BTreeSet<&str> = BTreeSet::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", name, kind, ..] => {
                members.entry(name).or_default();
                if !MODELLED.contains(kind) {
                    unreadable.insert(name);
                }
            }
            ["add", name, member, rest @ ..] => {
                let net = member
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| member.parse::<IpAddr>().ok().map(IpNet::from));
                match net {
                    Some(net) if !rest.contains(&"nomatch") => {
                        members.entry(name).or_default().push(net);
                    }
                    _ => {
                        unreadable.insert(name);
                    }
                }
            }
            _ => {}
        }
    }
    members
        .into_iter()
        .filter(|(name, _)| !unreadable.contains(name))
        .map(|(name, nets)| (name.to_owned(), nets.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::net::{HostNet, default_route_interfaces};

    /// `ip -4 -j route show table main` and `ip -6 ...` of a namespace with a default
    /// route on ens3 in each family, an unreachable default of each (IPv4 lists it
    /// without a device, IPv6 through lo) and a blackhole network: captured with
    /// iproute2 6.1 (the IPv6 list trimmed).
    const ROUTE: &str = r#"[{"dst":"default","gateway":"10.0.2.1","dev":"ens3","flags":[]},{"type":"unreachable","dst":"default","metric":5000,"flags":[]},{"dst":"10.0.2.0/24","dev":"ens3","protocol":"kernel","scope":"link","prefsrc":"10.0.2.15","flags":[]},{"type":"blackhole","dst":"10.9.0.0/16","flags":[]}]"#;
    const ROUTE6: &str = r#"[{"dst":"2001:db8::/64","dev":"ens3","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"fe80::/64","dev":"ens4","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"default","gateway":"2001:db8::1","dev":"ens3","metric":1024,"flags":[],"pref":"medium"},{"type":"unreachable","dst":"default","dev":"lo","metric":4000,"flags":[],"pref":"medium"}]"#;

    /// Captured from a network namespace with iproute2 6.1: a multipath default in each
    /// family (no `dev` of its own, one per next hop).
    const ROUTE_MULTIPATH: &str = r#"[{"dst":"default","flags":[],"nexthops":[{"gateway":"192.0.2.1","dev":"d0","weight":1,"flags":[]},{"gateway":"198.51.100.1","dev":"d1","weight":1,"flags":[]}]},{"dst":"192.0.2.0/24","dev":"d0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},{"dst":"198.51.100.0/24","dev":"d1","protocol":"kernel","scope":"link","prefsrc":"198.51.100.2","flags":[]}]"#;
    const ROUTE6_MULTIPATH: &str = r#"[{"dst":"2001:db8::/64","dev":"d0","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"default","metric":1024,"flags":[],"pref":"medium","nexthops":[{"gateway":"2001:db8::1","dev":"d0","weight":1,"flags":[]},{"gateway":"2001:db8:1::1","dev":"d1","weight":1,"flags":[]}]}]"#;

    /// A multipath default route leaves through every one of its next hops' interfaces;
    /// the first is the one the routing model takes (as /proc/net/route lists it).
    #[test]
    fn multipath_default_routes_name_every_next_hop() {
        let routes = |json| parse_routes(json).unwrap();
        assert_eq!(
            default_route_interfaces(&routes(ROUTE_MULTIPATH)),
            ["d0", "d1"]
        );
        assert_eq!(
            default_route_interfaces(&routes(ROUTE6_MULTIPATH)),
            ["d0", "d1"]
        );
        let first_default = routes(ROUTE_MULTIPATH)
            .into_iter()
            .find(|r| r.destination.prefix_len() == 0)
            .map(|r| r.interface);
        assert_eq!(first_default.as_deref(), Some("d0"));
    }

    #[test]
    fn default_routes() {
        let routes = |json| parse_routes(json).unwrap();
        assert_eq!(default_route_interfaces(&routes(ROUTE)), ["ens3"]);
        assert_eq!(default_route_interfaces(&routes(ROUTE6)), ["ens3"]);
        assert!(default_route_interfaces(&routes("[]")).is_empty());
    }

    #[test]
    fn sshd_ports() {
        assert_eq!(parse_sshd_ports("#Port 2222\n"), [22]);
        assert_eq!(
            parse_sshd_ports("Port 2222\nport=2200\nMatch User x\nPort 1\n"),
            [2200, 2222]
        );
        assert_eq!(parse_sshd_ports("Port 0\nPort nope\n"), [22]);
        assert_eq!(
            parse_sshd_ports(
                "ListenAddress 0.0.0.0:2200\nListenAddress [::]:2201\nListenAddress ::1\nListenAddress 192.0.2.1\n"
            ),
            [22, 2200, 2201]
        );
    }

    #[test]
    fn ssh_connection() {
        let c =
            parse_ssh_connection("::ffff:192.0.2.9 51000 ::ffff:192.0.2.1 2222").expect("parsed");
        assert_eq!(c.client.to_string(), "192.0.2.9");
        assert_eq!(c.server.to_string(), "192.0.2.1");
        assert_eq!(c.server_port, 2222);
        assert!(parse_ssh_connection("garbage").is_none());
        assert!(parse_ssh_connection("192.0.2.9 1 192.0.2.1 0").is_none());
    }

    /// Captured from a machine: sshd on 22 (IPv4 and a dual-stack socket), an IPv4
    /// session, an IPv4 client of the dual-stack socket, and a web server on 8080 with
    /// a client of its own.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0200630A:0016 0100630A:C382 01 00000000:00000000 02:000A7B3E 00000000     0        0 2 4 0 20 4 30 10 -1\n\
   2: 0200630A:1F90 0300630A:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n\
   1: 0000000000000000FFFF00000200630A:0016 0000000000000000FFFF00000300630A:D000 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0 20 4 30 10 -1\n\
   2: 000099FD000000000000000002000000:0016 000099FD000000000000000001000000:9C40 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0 20 4 30 10 -1\n";

    #[test]
    fn established_connections_to_sshd_are_sessions() {
        let mut sockets = parse_tcp_sockets(TCP, false);
        sockets.extend(parse_tcp_sockets(TCP6, true));
        assert_eq!(sockets.len(), 6);
        let sessions: Vec<String> = established_ssh(&sockets, &[22])
            .iter()
            .map(|s| format!("{} -> {}:{}", s.client, s.server, s.server_port))
            .collect();
        assert_eq!(
            sessions,
            [
                "10.99.0.1 -> 10.99.0.2:22",
                "10.99.0.3 -> 10.99.0.2:22",
                "fd99::1 -> fd99::2:22"
            ]
        );
        assert!(
            established_ssh(&sockets, &[2222]).is_empty(),
            "nothing listens on 2222"
        );
    }

    #[test]
    fn route_get_names_the_device() {
        assert_eq!(
            parse_route_get(
                r#"[{"dst":"10.99.0.1","dev":"eth0","prefsrc":"10.99.0.2","flags":[],"uid":0,"cache":[]}]"#
            ),
            Some("eth0".to_owned())
        );
        assert_eq!(parse_route_get("[]"), None);
    }

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
            "create office hash:net family inet\nadd office 192.0.2.0/28\nadd office 198.51.100.7\ncreate ports hash:ip,port family inet\nadd ports 192.0.2.1,tcp:80\ncreate except hash:net family inet\nadd except 10.0.0.0/8\nadd except 10.1.0.0/16 nomatch\n",
        );
        let office = &sets["office"];
        for (address, member) in [
            ("192.0.2.0", true),
            ("192.0.2.15", true),
            ("192.0.2.16", false),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
        ] {
            assert_eq!(
                office.contains(address.parse().unwrap()),
                member,
                "{address}"
            );
        }
        // Sets the evaluator cannot model are left out (their questions are unknown).
        assert_eq!(sets.keys().collect::<Vec<_>>(), ["office"]);
    }
}
