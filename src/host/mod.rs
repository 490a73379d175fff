//! Facts about the host that a policy, the starter policy, the lockout check and the
//! evaluator depend on: the interfaces of the default routes (for `external = "auto"`)
//! and all interface names (to warn about names the policy gives that do not exist),
//! the SSH port(s) in use, the SSH sessions open now (so new rules cannot lock them
//! out), and the network as the packet evaluator needs it ([`net::HostNet`]).
//!
//! [`HostProbe`] is the one trait every fact is asked through. [`LiveHost`]
//! (`live.rs`) reads this host, each fact one way: interfaces and routes from
//! iproute2's JSON, for the probe's questions and the evaluator's model alike;
//! [`StagedHost`] (`staged.rs`) answers for a tree staged with `--root` for another
//! host. The parsers of what is read (`ip -j`, `/proc/net/tcp{,6}`, `sshd_config`,
//! `$SSH_CONNECTION`, `ipset save`, docker-proxy command lines) are plain functions in
//! `parse.rs`, tested on captured text; `net.rs` holds the model they fill.

pub mod live;
pub mod net;
pub mod parse;
pub mod staged;

use std::io;
use std::net::IpAddr;

use crate::host::net::HostNet;

pub use live::LiveHost;
pub use staged::StagedHost;

/// Where the host's facts come from; the real one is [`LiveHost`], tests use their own.
/// `Sync`: `status` reads the host from a second thread while the files are proven.
pub trait HostProbe: Sync {
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

/// The SSH sessions open now, each with the interface this host sends its client's
/// packets through (`?` when no route says): what the lockout check asks of the host,
/// read apart from the check so that it can be read while the files are proven.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenSessions(pub Vec<(SshConnection, String)>);

impl OpenSessions {
    /// The sessions `probe` sees open now, and their routes.
    pub fn read(probe: &dyn HostProbe) -> OpenSessions {
        OpenSessions(
            probe
                .ssh_sessions()
                .into_iter()
                .map(|session| {
                    let interface = probe
                        .route_interface(session.client)
                        .unwrap_or_else(|| "?".to_owned());
                    (session, interface)
                })
                .collect(),
        )
    }
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
