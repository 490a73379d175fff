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
//! host; [`Remembered`] asks another probe for the interfaces once, so that one
//! command's checks see one host and can have it read ahead. The parsers of what is
//! read (`ip -j`, `/proc/net/tcp{,6}`, `sshd_config`, `$SSH_CONNECTION`, `ipset save`,
//! docker-proxy command lines) are plain functions in `parse.rs`, tested on captured
//! text; `net.rs` holds the model they fill.

pub mod live;
pub mod net;
pub mod parse;
pub mod staged;

use std::io;
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::command::copy_io_error;
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

/// A probe that asks `inner` for the default routes' interfaces and the interface names
/// once each, and answers every later question from what it heard: the interface
/// checks, the lints and the audit of one command then see one host, and the reads can
/// be made ahead, on threads of their own, while the command does something else (each
/// is a child process or two). Everything else is asked of `inner` each time.
pub struct Remembered<'a> {
    inner: &'a dyn HostProbe,
    uplinks: OnceLock<io::Result<Vec<String>>>,
    names: OnceLock<io::Result<Vec<String>>>,
}

impl<'a> Remembered<'a> {
    /// Remembers what `inner` answers.
    pub fn new(inner: &'a dyn HostProbe) -> Remembered<'a> {
        Remembered {
            inner,
            uplinks: OnceLock::new(),
            names: OnceLock::new(),
        }
    }
}

/// The answer `memory` holds, asked with `ask` the first time (a failure answered again
/// with its kind and text).
fn remembered(
    memory: &OnceLock<io::Result<Vec<String>>>,
    ask: impl FnOnce() -> io::Result<Vec<String>>,
) -> io::Result<Vec<String>> {
    match memory.get_or_init(ask) {
        Ok(answer) => Ok(answer.clone()),
        Err(error) => Err(copy_io_error(error)),
    }
}

impl HostProbe for Remembered<'_> {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        remembered(&self.uplinks, || self.inner.default_route_interfaces())
    }
    fn interface_names(&self) -> io::Result<Vec<String>> {
        remembered(&self.names, || self.inner.interface_names())
    }
    fn sshd_ports(&self) -> Vec<u16> {
        self.inner.sshd_ports()
    }
    fn ssh_connection(&self) -> Option<SshConnection> {
        self.inner.ssh_connection()
    }
    fn ssh_sessions(&self) -> Vec<SshConnection> {
        self.inner.ssh_sessions()
    }
    fn route_interface(&self, address: IpAddr) -> Option<String> {
        self.inner.route_interface(address)
    }
    fn network(&self) -> anyhow::Result<HostNet> {
        self.inner.network()
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::control::fakes::ReadingHost;

    /// How often a probe was asked each question.
    #[derive(Default)]
    struct Counts {
        uplinks: AtomicUsize,
        names: AtomicUsize,
        sessions: AtomicUsize,
    }

    /// The default routes and the names are asked once and answered from memory after,
    /// a failure as well (its kind and text); the sessions are asked every time.
    #[test]
    fn a_remembered_probe_asks_for_the_interfaces_once() {
        // The default routes fail, the names do not.
        let counting = Counts::default();
        let probe = ReadingHost {
            default_route_interfaces: Box::new(|()| {
                counting.uplinks.fetch_add(1, Ordering::SeqCst);
                Err(io::Error::new(io::ErrorKind::NotFound, "ip: not found"))
            }),
            interface_names: Box::new(|()| {
                counting.names.fetch_add(1, Ordering::SeqCst);
                Ok(vec!["eth0".to_owned()])
            }),
            ssh_sessions: Box::new(|()| {
                counting.sessions.fetch_add(1, Ordering::SeqCst);
                Vec::new()
            }),
            ..ReadingHost::default()
        };
        let remembered = Remembered::new(&probe);
        for _ in 0..3 {
            let error = remembered.default_route_interfaces().unwrap_err();
            assert_eq!(
                (error.kind(), error.to_string()),
                (io::ErrorKind::NotFound, "ip: not found".to_owned())
            );
            assert_eq!(remembered.interface_names().unwrap(), ["eth0"]);
            assert!(remembered.ssh_sessions().is_empty());
        }
        let asked = |n: &AtomicUsize| n.load(Ordering::SeqCst);
        assert_eq!(
            (
                asked(&counting.uplinks),
                asked(&counting.names),
                asked(&counting.sessions)
            ),
            (1, 1, 3)
        );
    }
}
