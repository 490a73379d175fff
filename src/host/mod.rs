//! Facts about the host that a policy or the starter policy depends on: the interfaces
//! of the default routes (for `external = "auto"`) and all interface names (to warn
//! about names the policy gives that do not exist), the SSH port(s) in use, and the SSH
//! sessions open now (so new rules cannot lock them out). Reading the system sits
//! behind [`HostProbe`]: [`LiveHost`] reads this host, [`StagedHost`] a tree staged with
//! `--root` for another one. The parsers of `/proc/net/route`, `/proc/net/ipv6_route`,
//! `/proc/net/tcp{,6}`, `sshd_config` and `$SSH_CONNECTION` are plain functions tested
//! on captured text.

pub mod net;

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::host::net::HostNet;

/// Where the host's facts come from; the real one is [`LiveHost`], tests use their own.
pub trait HostProbe {
    /// Names of the interfaces that carry a default route (IPv4 or IPv6), sorted.
    fn default_route_interfaces(&self) -> io::Result<Vec<String>>;
    /// Names of every network interface, sorted.
    fn interface_names(&self) -> io::Result<Vec<String>>;
    /// Ports sshd is configured to listen on (22 when not configured).
    fn sshd_ports(&self) -> Vec<u16>;
    /// The SSH session this command runs in, if any (`$SSH_CONNECTION`).
    fn ssh_connection(&self) -> Option<SshConnection>;
    /// Every SSH session open now: this command's, and the established connections to
    /// a port sshd listens on (which also finds the session when `sudo` dropped
    /// `$SSH_CONNECTION`).
    fn ssh_sessions(&self) -> Vec<SshConnection>;
    /// The interface this host sends packets to `address` through.
    fn route_interface(&self, address: IpAddr) -> Option<String>;
    /// Addresses, routes, ipsets and docker-proxy listeners, as the packet evaluator
    /// needs them.
    fn network(&self) -> anyhow::Result<HostNet>;
}

/// An SSH session: who is connected to which address and port of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConnection {
    /// The admin's address.
    pub client: IpAddr,
    /// The address of this host the admin connected to.
    pub server: IpAddr,
    /// The port of this host the admin connected to.
    pub server_port: u16,
}

/// The host this program runs on.
#[derive(Debug, Default)]
pub struct LiveHost;

impl HostProbe for LiveHost {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        let mut names = BTreeSet::new();
        names.extend(parse_ipv4_default_routes(&std::fs::read_to_string(
            "/proc/net/route",
        )?));
        // A host without IPv6 has no ipv6_route file; that is not an error.
        match std::fs::read_to_string("/proc/net/ipv6_route") {
            Ok(text) => names.extend(parse_ipv6_default_routes(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(names.into_iter().collect())
    }

    fn interface_names(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn sshd_ports(&self) -> Vec<u16> {
        sshd_ports_under(Path::new("/"))
    }

    fn ssh_connection(&self) -> Option<SshConnection> {
        parse_ssh_connection(&std::env::var("SSH_CONNECTION").ok()?)
    }

    fn ssh_sessions(&self) -> Vec<SshConnection> {
        let mut sockets = Vec::new();
        for (path, ipv6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
            if let Ok(text) = std::fs::read_to_string(path) {
                sockets.extend(parse_tcp_sockets(&text, ipv6));
            }
        }
        let mut sessions: Vec<SshConnection> = self.ssh_connection().into_iter().collect();
        for session in established_ssh(&sockets, &self.sshd_ports()) {
            if !sessions
                .iter()
                .any(|s| s.client == session.client && s.server_port == session.server_port)
            {
                sessions.push(session);
            }
        }
        sessions
    }

    fn route_interface(&self, address: IpAddr) -> Option<String> {
        let text =
            crate::command::run("ip", &["-j", "route", "get", &address.to_string()], b"").ok()?;
        parse_route_get(&text)
    }

    fn network(&self) -> anyhow::Result<HostNet> {
        HostNet::read()
    }
}

/// A tree staged with `--root` for a host that is not this one: it has no interfaces,
/// routes or sessions this process could know, and its sshd configuration is the one
/// under the root.
#[derive(Debug, Clone)]
pub struct StagedHost {
    /// The staged tree.
    pub root: PathBuf,
}

impl HostProbe for StagedHost {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn interface_names(&self) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn sshd_ports(&self) -> Vec<u16> {
        sshd_ports_under(&self.root)
    }

    fn ssh_connection(&self) -> Option<SshConnection> {
        None
    }

    fn ssh_sessions(&self) -> Vec<SshConnection> {
        Vec::new()
    }

    fn route_interface(&self, _address: IpAddr) -> Option<String> {
        None
    }

    fn network(&self) -> anyhow::Result<HostNet> {
        anyhow::bail!(
            "{} is a staged tree: it has no live network to look at",
            self.root.display()
        )
    }
}

/// The ports `root`'s sshd is configured for: `etc/ssh/sshd_config` and its drop-ins.
fn sshd_ports_under(root: &Path) -> Vec<u16> {
    let ssh = root.join("etc/ssh");
    let mut text = read_or_empty(&ssh.join("sshd_config"));
    if let Ok(dir) = std::fs::read_dir(ssh.join("sshd_config.d")) {
        let mut drop_ins: Vec<_> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        drop_ins.sort();
        for path in drop_ins {
            text.push('\n');
            text.push_str(&read_or_empty(&path));
        }
    }
    parse_sshd_ports(&text)
}

fn read_or_empty(path: &Path) -> String {
    crate::files::source::read_consulted(path).unwrap_or_default()
}

const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// Interfaces of usable IPv4 default routes in `/proc/net/route` text.
pub fn parse_ipv4_default_routes(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, mask) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(3)?,
                fields.get(7)?,
            );
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            (usable && *dest == "00000000" && *mask == "00000000").then(|| (*iface).to_owned())
        })
        .collect()
}

/// Interfaces of usable IPv6 default routes in `/proc/net/ipv6_route` text.
pub fn parse_ipv6_default_routes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (dest, prefix, flags, iface) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(8)?,
                fields.get(9)?,
            );
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && *iface != "lo";
            let default = dest.bytes().all(|b| b == b'0') && *prefix == "00";
            (usable && default).then(|| (*iface).to_owned())
        })
        .collect()
}

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

/// One TCP socket of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// Local address (IPv4-mapped addresses unmapped).
    pub local: (IpAddr, u16),
    /// Remote address.
    pub remote: (IpAddr, u16),
    /// The kernel's state number: 0x01 established, 0x0A listening.
    pub state: u8,
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

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    const ROUTE6: &str = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     ens3\n\
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     ens3\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";

    #[test]
    fn default_routes() {
        assert_eq!(parse_ipv4_default_routes(ROUTE), ["eth0"]);
        assert_eq!(parse_ipv6_default_routes(ROUTE6), ["ens3"]);
        assert!(parse_ipv4_default_routes("Iface\tDestination\n").is_empty());
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
}
