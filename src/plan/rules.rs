//! The typed rules of a plan: each one allows one thing, and says it in the admin's
//! terms (interface, networks, protocol, ports, comment), never in a backend's syntax.
//! A backend spells each field as it likes; none of them has to parse anything back.

use std::net::IpAddr;

use crate::policy::RawChain;
use crate::policy::types::{
    AddressMatch, Comment, InterfaceName, ListName, Network, PortRange, Proto, RawRule,
};

/// One allowed connection to a port: a host service (INPUT) or an outbound destination
/// (OUTPUT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// The interface the connection must arrive on; any when `None`.
    pub interface: Option<InterfaceName>,
    /// The network (or list's set) it must come from; anywhere when `None`.
    pub source: Option<AddressMatch>,
    /// The network (or list's set) it must go to; anywhere when `None`.
    pub destination: Option<AddressMatch>,
    /// Its protocol.
    pub proto: Proto,
    /// Its destination port or port range.
    pub port: PortRange,
    /// The admin's comment, or one composed from the entry.
    pub comment: Comment,
}

/// One allowed connection to a port Docker publishes. A backend matches it twice: as
/// Docker forwards it to a container (after DNAT, where only the connection's original
/// tuple still holds the port the client dialed) and as it reaches docker-proxy on the
/// host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRule {
    /// The interface the connection must arrive on; any when `None`.
    pub interface: Option<InterfaceName>,
    /// The network (or list's set) it must come from; anywhere when `None`.
    pub source: Option<AddressMatch>,
    /// Its protocol.
    pub proto: Proto,
    /// The host port (or range) the client dialed, not the container's.
    pub dialed_port: PortRange,
    /// The host address the client dialed; any when `None`. Always of the plan's family.
    pub host_address: Option<IpAddr>,
    /// The admin's comment, or one composed from the entry.
    pub comment: Comment,
}

/// One `[[raw]]` rule of the backend the plan was built for, as the admin wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The chain it goes to, before that chain's final deny.
    pub chain: RawChain,
    /// The rule text, in the backend's own syntax.
    pub rule: RawRule,
    /// The admin's comment, or `raw rule`.
    pub comment: Comment,
}

/// A list the plan's rules match as one set ([`AddressMatch::List`]), with the networks
/// of the plan's family the set holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSet {
    /// The list.
    pub list: ListName,
    /// Its networks of the plan's family that a set holds (all but `/0`), each once,
    /// in the order written.
    pub networks: Vec<Network>,
}
