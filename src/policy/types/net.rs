//! Validated addresses: networks (host bits zero), the host address a client dialed,
//! and a reference to either a network or a list.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

use super::ListName;
use crate::family::Family;

/// An IPv4 or IPv6 network (or single address) whose host bits are zero.
///
/// `192.0.2.7/24` is refused rather than silently widened, since the admin most likely
/// meant either `192.0.2.0/24` or `192.0.2.7/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Network(IpNet);

impl Network {
    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// The family of the network.
    pub fn family(&self) -> Family {
        Family::of_net(&self.0)
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(Network(IpNet::from(addr)));
        }
        let net: IpNet = text.parse().map_err(|_| {
            format!("expected an IPv4 or IPv6 address or network like \"192.0.2.0/24\" or \"2001:db8::/32\", found {text:?}")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "{text} has host bits set: write the network {} or the single address {}",
                net.trunc(),
                IpNet::from(net.addr())
            ));
        }
        Ok(Network(net))
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What one address reference of an entry's `from` or `to` stands for in one family's
/// rules: a network, or a whole list matched as one set (a list with more than
/// [`crate::policy::lists::SET_THRESHOLD`] networks of the family; see
/// [`crate::policy::Policy::expand_family_matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressMatch {
    /// One network.
    Network(Network),
    /// The list's networks of the family, held as one set.
    List(ListName),
}

/// A single address of this host, as the client dialed it (`--ctorigdst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostAddress(IpAddr);

impl HostAddress {
    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl TryFrom<String> for HostAddress {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(HostAddress).map_err(|_| {
            format!(
                "expected one IPv4 or IPv6 address of this host, like \"203.0.113.10\" (no prefix length), found {text:?}"
            )
        })
    }
}

/// One source or destination in a rule: a literal network or the name of a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AddressRef {
    /// A literal address or network.
    Net(Network),
    /// A list declared under `[lists]`.
    List(ListName),
}

impl TryFrom<String> for AddressRef {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        // List names start with a letter and never contain '.', ':' or '/', so the two
        // kinds cannot be confused.
        if let Ok(name) = text.parse::<ListName>() {
            return Ok(AddressRef::List(name));
        }
        if text.contains(['.', ':', '/']) || text.starts_with(|c: char| c.is_ascii_digit()) {
            // Looks like an address: give the precise reason (such as host bits set).
            return text.parse().map(AddressRef::Net);
        }
        Err(format!(
            "expected an address, a network like \"192.0.2.0/24\", or the name of a list under [lists], found {text:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_refuse_host_bits_and_garbage() {
        assert_eq!(
            "192.0.2.7".parse::<Network>().map(|n| n.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            "2001:db8::/32".parse::<Network>().map(|n| n.family()),
            Ok(Family::Ipv6)
        );
        let err = "192.0.2.7/24".parse::<Network>().expect_err("host bits");
        assert!(
            err.contains("192.0.2.0/24") && err.contains("192.0.2.7/32"),
            "{err}"
        );
        for bad in ["192.0.2.300", "192.0.2.0/33", "2001:db8::/129", "x", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn address_refs_tell_lists_from_networks() {
        assert_eq!(
            AddressRef::try_from("office".to_owned()),
            Ok(AddressRef::List("office".parse().expect("name")))
        );
        assert!(matches!(
            AddressRef::try_from("fe80::1".to_owned()),
            Ok(AddressRef::Net(_))
        ));
        let err = AddressRef::try_from("10.0.0.1/8".to_owned()).expect_err("host bits");
        assert!(err.contains("host bits"), "{err}");
        assert!(AddressRef::try_from("bad name!".to_owned()).is_err());
    }
}
