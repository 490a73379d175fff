//! The host this program runs on, read each fact one way: interfaces and their
//! addresses from `ip -j address show`, routes from `ip -j route show` (the main table
//! for the routing model; for the default-route interfaces IPv4's main table and every
//! IPv6 table, as /proc/net/route and /proc/net/ipv6_route list them), the route to one
//! address from `ip -j route get`, forwarding from `/proc/sys/net`, ipsets from `ipset
//! save`, docker-proxy listeners from `/proc`, SSH sessions from `/proc/net/tcp{,6}` and
//! `$SSH_CONNECTION`, sshd's ports from its configuration. What is read is parsed by
//! the plain functions of [`crate::host::parse`].

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::command;
use crate::host::net::{self, HostNet, Interface, ProxyListener, Route};
use crate::host::{HostProbe, SshConnection, parse};

/// How many processes are looked at for docker-proxy (one per published port and
/// family): a bound, so a host with a runaway process table cannot stall the reader.
const MAX_PROCESSES: usize = 65_536;

/// The host this program runs on.
#[derive(Debug, Default)]
pub struct LiveHost;

impl HostProbe for LiveHost {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        let routes = read_routes(UPLINK_TABLES).map_err(io_error)?;
        Ok(net::default_route_interfaces(&routes))
    }

    fn interface_names(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = read_interfaces()
            .map_err(io_error)?
            .into_iter()
            .map(|i| i.name)
            .collect();
        names.sort();
        Ok(names)
    }

    fn sshd_ports(&self) -> Vec<u16> {
        sshd_ports_under(Path::new("/"))
    }

    fn ssh_connection(&self) -> Option<SshConnection> {
        parse::parse_ssh_connection(&std::env::var("SSH_CONNECTION").ok()?)
    }

    fn ssh_sessions(&self) -> Vec<SshConnection> {
        let read = |path: &str, ipv6: bool| {
            std::fs::read_to_string(path)
                .map(|text| parse::parse_tcp_sockets(&text, ipv6))
                .unwrap_or_default()
        };
        // Each file walks the kernel's whole TCP hash table, which takes milliseconds on
        // a host with memory to spare: both at once.
        let sockets = std::thread::scope(|scope| {
            let ipv6 = scope.spawn(|| read("/proc/net/tcp6", true));
            let mut sockets = read("/proc/net/tcp", false);
            sockets.extend(ipv6.join().unwrap_or_default());
            sockets
        });
        let mut sessions: Vec<SshConnection> = self.ssh_connection().into_iter().collect();
        for session in parse::established_ssh(&sockets, &self.sshd_ports()) {
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
        let text = command::run("ip", &["-j", "route", "get", &address.to_string()], b"").ok()?;
        parse::parse_route_get(&text)
    }

    fn network(&self) -> anyhow::Result<HostNet> {
        HostNet::read()
    }
}

impl HostNet {
    /// Reads the live host (the network namespace this process is in).
    pub fn read() -> anyhow::Result<HostNet> {
        let interfaces = read_interfaces()?;
        let routes = read_routes(MAIN_TABLES)?;
        let flag = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
        Ok(HostNet {
            interfaces,
            routes,
            forwards_v4: flag("/proc/sys/net/ipv4/ip_forward"),
            forwards_v6: flag("/proc/sys/net/ipv6/conf/all/forwarding"),
            // No ipset tool, or no sets: set matches then answer "unknown".
            sets: command::run("ipset", &["save"], b"")
                .map(|text| parse::parse_ipset_save(&text))
                .unwrap_or_default(),
            proxies: read_proxies(),
        })
    }
}

/// The interfaces of this host (its network namespace) and their addresses.
fn read_interfaces() -> anyhow::Result<Vec<Interface>> {
    parse::parse_addresses(&command::run("ip", &["-j", "address", "show"], b"")?)
}

/// Which routing tables the routing model reads (IPv4, IPv6): the main table, where
/// the kernel looks unless a policy rule says otherwise.
const MAIN_TABLES: (&str, &str) = ("main", "main");

/// Which routing tables the interfaces facing the outside are read from (IPv4, IPv6):
/// IPv4's main table, every IPv6 table. These are the tables `/proc/net/route` and
/// `/proc/net/ipv6_route` list, which this reader replaced, so a host whose IPv6
/// default lives in a table of its own (wg-quick's, a policy-routed uplink) keeps it.
const UPLINK_TABLES: (&str, &str) = ("main", "all");

/// The routes of the tables `(ipv4, ipv6)`, both families.
fn read_routes((ipv4, ipv6): (&str, &str)) -> anyhow::Result<Vec<Route>> {
    let mut routes = parse::parse_routes(&command::run(
        "ip",
        &["-4", "-j", "route", "show", "table", ipv4],
        b"",
    )?)?;
    routes.extend(parse::parse_routes(&command::run(
        "ip",
        &["-6", "-j", "route", "show", "table", ipv6],
        b"",
    )?)?);
    Ok(routes)
}

/// A failed read as the [`HostProbe`] methods that answer with [`io::Result`] report it.
fn io_error(error: anyhow::Error) -> io::Error {
    io::Error::other(format!("{error:#}"))
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
            parse::parse_docker_proxy(&argv)
        })
        .collect()
}

/// The ports `root`'s sshd is configured for: `etc/ssh/sshd_config` and its drop-ins.
pub(super) fn sshd_ports_under(root: &Path) -> Vec<u16> {
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
    parse::parse_sshd_ports(&text)
}

fn read_or_empty(path: &Path) -> String {
    crate::files::source::read_consulted(path).unwrap_or_default()
}
