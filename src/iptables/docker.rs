//! The ports Docker publishes, as its iptables rules say: the DNAT rules reachable
//! from nat PREROUTING, read into the audit's backend-neutral [`PublishedPort`].

use std::collections::BTreeSet;

use crate::audit::{PortPath, PublishedPort};
use crate::family::Family;
use crate::iptables::rule::{Match, Proto, Target};
use crate::iptables::walk::{Ruleset, Transport};

/// The DNAT rules reachable from nat PREROUTING: Docker's published ports.
pub fn published_ports(ruleset: &Ruleset, family: Family) -> Vec<PublishedPort> {
    let mut chains = vec!["PREROUTING".to_owned()];
    let mut seen = BTreeSet::new();
    let mut ports = Vec::new();
    while let Some(chain) = chains.pop() {
        if !seen.insert(chain.clone()) {
            continue;
        }
        for rule in ruleset.rules("nat", &chain) {
            match &rule.target {
                Target::Jump(next) | Target::Goto(next) => chains.push(next.clone()),
                Target::Dnat { address, port } => {
                    let mut published = PublishedPort {
                        family: family.to_string(),
                        path: PortPath::Dnat,
                        transport: Transport::Tcp,
                        host_address: None,
                        host_port: 0,
                        container_address: *address,
                        container_port: port.map(|p| p.low),
                        rule: rule.text.clone(),
                    };
                    let mut understood = true;
                    for condition in &rule.matches {
                        match condition {
                            Match::Protocol(p) if !p.negated => match p.value {
                                Proto::Tcp => published.transport = Transport::Tcp,
                                Proto::Udp => published.transport = Transport::Udp,
                                _ => understood = false,
                            },
                            Match::DestinationPort(p) if !p.negated && p.value.len() == 1 => {
                                published.host_port = p.value[0].low;
                            }
                            Match::Destination(d) if !d.negated => {
                                published.host_address = Some(d.value.addr());
                            }
                            _ => {}
                        }
                    }
                    if understood && published.host_port != 0 {
                        ports.push(published);
                    }
                }
                _ => {}
            }
        }
    }
    ports.sort_by_key(|p| (p.host_port, p.transport == Transport::Udp, p.host_address));
    ports
}
