//! Matching one rule against the packet as it is at a point of the walk: every
//! condition the model knows is decided from the packet, the destination after DNAT,
//! the routing decision and the host's facts (local addresses, ipsets); a condition it
//! cannot decide makes the rule's outcome unsure, never a guess.

use std::net::IpAddr;

use crate::host::net::HostNet;
use crate::iptables::rule::{CtState, Match, Neg, Proto, Rule, SetDirection};
use crate::packet::{Packet, Transport};
use crate::policy::types::interface_pattern_matches;

/// What the packet looks like at a point of the walk.
pub(super) struct State<'a> {
    /// The packet as it arrived.
    pub(super) packet: &'a Packet,
    /// Its destination, after DNAT if any.
    pub(super) destination: IpAddr,
    /// Its destination port, after DNAT if any.
    pub(super) destination_port: u16,
    /// DNAT translated it.
    pub(super) dnat: bool,
    /// The interface the routing decision sends it out of (None before it, or local).
    pub(super) out_interface: Option<String>,
}

/// How a rule's conditions came out.
pub(super) enum Truth {
    /// Every condition holds.
    Yes,
    /// Some condition does not hold.
    No,
    /// None is false, but one cannot be decided (why).
    Unsure(String),
}

/// Whether every condition of `rule` holds for the packet in `state`.
pub(super) fn conditions(rule: &Rule, host: &HostNet, state: &State<'_>) -> Truth {
    let mut unsure = rule
        .unknown
        .first()
        .map(|u| format!("`{u}` is not understood"));
    for condition in &rule.matches {
        match condition_holds(condition, host, state) {
            Some(true) => {}
            Some(false) => return Truth::No,
            None => {
                unsure.get_or_insert_with(|| format!("{condition:?} cannot be decided"));
            }
        }
    }
    match unsure {
        Some(why) => Truth::Unsure(why),
        None => Truth::Yes,
    }
}

fn negate<T>(neg: &Neg<T>, holds: bool) -> bool {
    holds != neg.negated
}

/// One condition: Some(holds), or None when it cannot be decided.
fn condition_holds(condition: &Match, host: &HostNet, state: &State<'_>) -> Option<bool> {
    let packet = state.packet;
    let in_range = |(low, high): (IpAddr, IpAddr), address: IpAddr| {
        low.is_ipv6() == address.is_ipv6() && low <= address && address <= high
    };
    let address_type = |kind: &str, address: IpAddr| -> Option<bool> {
        match kind {
            "LOCAL" => Some(host.is_local(address)),
            "UNICAST" => {
                Some(!address.is_multicast() && address != IpAddr::from([255, 255, 255, 255]))
            }
            "MULTICAST" => Some(address.is_multicast()),
            "BROADCAST" => Some(address == IpAddr::from([255, 255, 255, 255])),
            _ => None,
        }
    };
    Some(match condition {
        Match::Source(n) => negate(n, n.value.contains(&packet.source)),
        Match::Destination(n) => negate(n, n.value.contains(&state.destination)),
        Match::InInterface(n) => {
            negate(n, interface_pattern_matches(&n.value, &packet.in_interface))
        }
        Match::OutInterface(n) => match &state.out_interface {
            Some(out) => negate(n, interface_pattern_matches(&n.value, out)),
            // -o before the routing decision: iptables refuses such rules; no guess.
            None => return None,
        },
        Match::Protocol(n) => negate(
            n,
            matches!(
                (&n.value, packet.transport),
                (Proto::All, _) | (Proto::Tcp, Transport::Tcp) | (Proto::Udp, Transport::Udp)
            ),
        ),
        Match::SourcePort(n) => negate(n, n.value.iter().any(|p| p.contains(packet.source_port))),
        Match::DestinationPort(n) => negate(
            n,
            n.value.iter().any(|p| p.contains(state.destination_port)),
        ),
        Match::EitherPort(n) => negate(
            n,
            n.value
                .iter()
                .any(|p| p.contains(packet.source_port) || p.contains(state.destination_port)),
        ),
        Match::SourceRange(n) => negate(n, in_range(n.value, packet.source)),
        Match::DestinationRange(n) => negate(n, in_range(n.value, state.destination)),
        Match::ConnState(n) => negate(
            n,
            n.value
                .iter()
                .any(|s| *s == CtState::New || (*s == CtState::Dnat && state.dnat)),
        ),
        Match::CtOrigSource(n) => negate(n, n.value.contains(&packet.source)),
        Match::CtOrigDestination(n) => negate(n, n.value.contains(&packet.destination)),
        Match::CtOrigSourcePort(n) => negate(n, n.value.contains(packet.source_port)),
        Match::CtOrigDestinationPort(n) => negate(n, n.value.contains(packet.destination_port)),
        Match::SourceType(n) => negate(n, address_type(&n.value, packet.source)?),
        Match::DestinationType(n) => negate(n, address_type(&n.value, state.destination)?),
        Match::Set {
            negated,
            name,
            direction,
        } => {
            let members = host.sets.get(name)?;
            let address = match direction {
                SetDirection::Source => packet.source,
                SetDirection::Destination => state.destination,
            };
            members.contains(address) != *negated
        }
        Match::TcpFlags(n) => {
            if packet.transport != Transport::Tcp {
                false
            } else {
                // The first packet of a TCP connection carries SYN alone.
                let (mask, set) = &n.value;
                let seen: Vec<&String> = mask.iter().filter(|f| *f == "SYN").collect();
                let wanted: Vec<&String> = set.iter().filter(|f| mask.contains(f)).collect();
                negate(n, seen == wanted)
            }
        }
        Match::IcmpType(n) => negate(n, false),
        Match::Limit => true,
        // The walk follows a packet routed from one interface to another, never one
        // bridged between two ports of one bridge.
        Match::PhysdevIsBridged(n) => negate(n, false),
    })
}
