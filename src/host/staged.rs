//! The host a tree staged with `--root` is for: not this one, so it has no interfaces,
//! routes or sessions this process could know; its sshd configuration is the one
//! under the root.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::host::live::sshd_ports_under;
use crate::host::net::HostNet;
use crate::host::{HostProbe, SshConnection};

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
