//! The address family: IPv4 or IPv6. Shared by the policy (which entries go into which
//! family), the backends (which tools and files serve a family) and the host facts.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// Address family of a rule or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4, rendered to `<instance>.rules` and loaded with `iptables-restore`.
    Ipv4,
    /// IPv6, rendered to `<instance>.rules6` and loaded with `ip6tables-restore`.
    Ipv6,
}

impl Family {
    /// Both families, in rendering order.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Family {
        Family::of(&net.addr())
    }
}

impl Family {
    /// The family its [`fmt::Display`] name (`IPv4`, `IPv6`) names, as reports carry it.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.to_string() == name)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}
