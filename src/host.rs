//! Facts about the running host that a policy or the starter policy depends on: the
//! interfaces of the default routes (for `external = "auto"`), the SSH port(s) in use and
//! the address of the admin's SSH client. Reading the system sits behind [`HostProbe`];
//! the parsers of `/proc/net/route`, `/proc/net/ipv6_route`, `sshd_config` and
//! `$SSH_CONNECTION` are plain functions tested on captured text.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::Path;

/// Where the host's facts come from; the real one is [`LiveHost`], tests use their own.
pub trait HostProbe {
    /// Names of the interfaces that carry a default route (IPv4 or IPv6), sorted.
    fn default_route_interfaces(&self) -> io::Result<Vec<String>>;
    /// Ports sshd is configured to listen on (22 when not configured).
    fn sshd_ports(&self) -> Vec<u16>;
    /// The SSH session this command runs in, if any.
    fn ssh_connection(&self) -> Option<SshConnection>;
}

/// An SSH session as described by `$SSH_CONNECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConnection {
    /// The admin's address.
    pub client: IpAddr,
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

    fn sshd_ports(&self) -> Vec<u16> {
        let mut text = std::fs::read_to_string("/etc/ssh/sshd_config").unwrap_or_default();
        if let Ok(dir) = std::fs::read_dir("/etc/ssh/sshd_config.d") {
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

    fn ssh_connection(&self) -> Option<SshConnection> {
        parse_ssh_connection(&std::env::var("SSH_CONNECTION").ok()?)
    }
}

fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
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

/// `Port` settings in sshd_config text (first match wins per keyword in sshd, but every
/// `Port` line adds a listening port); 22 when there are none.
pub fn parse_sshd_ports(text: &str) -> Vec<u16> {
    let mut ports = BTreeSet::new();
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
            _ => {}
        }
    }
    if ports.is_empty() {
        ports.insert(22);
    }
    ports.into_iter().collect()
}

/// `$SSH_CONNECTION` ("client_ip client_port server_ip server_port").
pub fn parse_ssh_connection(text: &str) -> Option<SshConnection> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [client, _, _, server_port] = fields.as_slice() else {
        return None;
    };
    // OpenSSH reports IPv4 clients of a dual-stack socket as "::ffff:a.b.c.d".
    let client: IpAddr = client.parse().ok()?;
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    Some(SshConnection {
        client,
        server_port: server_port.parse().ok().filter(|p| *p > 0)?,
    })
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
    }

    #[test]
    fn ssh_connection() {
        let c =
            parse_ssh_connection("::ffff:192.0.2.9 51000 ::ffff:192.0.2.1 2222").expect("parsed");
        assert_eq!(c.client.to_string(), "192.0.2.9");
        assert_eq!(c.server_port, 2222);
        assert!(parse_ssh_connection("garbage").is_none());
        assert!(parse_ssh_connection("192.0.2.9 1 192.0.2.1 0").is_none());
    }
}
