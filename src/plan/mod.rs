//! The backend-neutral plan: what a validated policy means for one address family, and
//! for one backend, built once. This module owns every expansion of a policy entry into
//! rules: one rule per port range, interface and address, in that order; list
//! references expanded for the family (a long list stands as one set, [`PlannedSet`]);
//! entries of the other family, and entries whose addresses are all of the other
//! family, left out. A backend only spells a
//! [`FamilyPlan`] in its own syntax and never walks the policy itself.
//!
//! The plan depends on the policy alone, never on the host it is built on: no interface
//! name of the host reaches a rule, so a tree rendered on one host means the same on
//! another.

mod rules;

use toml::Spanned;

use crate::family::Family;
use crate::policy::types::{
    AddressMatch, AddressRef, Comment, InterfaceName, LogPrefix, LogRate, PortRange, Ports,
};
use crate::policy::{
    BackendKind, ContainerAccess, DenyAction, DockerDefault, OutboundPolicy, Policy, Published,
};

pub use rules::{PlannedSet, PortRule, PublishedRule, RawLine};

/// What the policy means for one family, for one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyPlan {
    /// The family the plan is for.
    pub family: Family,
    /// How denied packets are refused.
    pub deny: DenyAction,
    /// Docker's bridge interfaces (names or prefix patterns).
    pub bridges: Vec<InterfaceName>,
    /// What reaches the host itself.
    pub host: HostPlan,
    /// What the host may send.
    pub outbound: OutboundPlan,
    /// Who may reach published container ports.
    pub docker: DockerPlan,
    /// The `[[raw]]` rules of this backend and family, in policy order.
    pub raw: Vec<RawLine>,
    /// Logging of denied packets.
    pub log: LogPlan,
    /// The lists the rules match as sets, in the order the rules first name them.
    pub sets: Vec<PlannedSet>,
}

/// What reaches the host itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// Answer pings.
    pub ping: bool,
    /// Containers reach every host service.
    pub containers_all: bool,
    /// The allowed services, in policy order.
    pub services: Vec<PortRule>,
}

/// What the host may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPlan {
    /// Only what is allowed may leave (otherwise everything may).
    pub allowlist: bool,
    /// With an allowlist, DNS, NTP, HTTP(S), DHCP and ICMP still may.
    pub essentials: bool,
    /// The allowed destinations, in policy order.
    pub allow: Vec<PortRule>,
}

/// Who may reach published container ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerPlan {
    /// New connections to published ports and Docker's bridges that nothing allowed are
    /// denied.
    pub deny: bool,
    /// The allowed published ports, in policy order.
    pub published: Vec<PublishedRule>,
}

/// Rate-limited logging of denied packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// Log denied packets.
    pub enabled: bool,
    /// Start of the log prefix (the backend appends a chain tag).
    pub prefix: LogPrefix,
    /// Average rate of log lines.
    pub rate: LogRate,
    /// Log lines allowed before the rate applies.
    pub burst: u32,
}

/// Where an entry's rules may come from or go to: the entry's networks (and lists
/// matched as sets) of the plan's family (`Some`, possibly empty: then the entry has no
/// rules in this family), or anywhere (`None`).
type Addresses = Option<Vec<AddressMatch>>;

impl FamilyPlan {
    /// The plan of `family` for `backend`, built from a validated `policy`.
    pub fn build(policy: &Policy, backend: BackendKind, family: Family) -> FamilyPlan {
        // Each entry's addresses of this family, at the cost of what they are (a list's
        // part of the other family is never walked).
        let addresses_of = |refs: &Option<Spanned<Vec<Spanned<AddressRef>>>>| -> Addresses {
            refs.as_ref()
                .map(|r| policy.expand_family_matches(r.get_ref(), family))
        };

        let services: Vec<PortRule> = policy
            .host
            .services
            .iter()
            .filter(|s| s.family.includes(family))
            .flat_map(|s| {
                let sources = addresses_of(&s.from);
                expand(
                    s.port.get_ref(),
                    &s.interfaces,
                    &sources,
                    |port, interface, source| PortRule {
                        interface,
                        source,
                        destination: None,
                        proto: s.proto,
                        port: *port,
                        comment: label(&s.comment, || format!("host service {}/{port}", s.proto)),
                    },
                )
            })
            .collect();

        let allow: Vec<PortRule> = policy
            .outbound
            .allow
            .iter()
            .filter(|r| r.family.includes(family))
            .flat_map(|r| {
                let destinations = addresses_of(&r.to);
                expand(
                    &r.port,
                    &[],
                    &destinations,
                    |port, interface, destination| PortRule {
                        interface,
                        source: None,
                        destination,
                        proto: r.proto,
                        port: *port,
                        comment: label(&r.comment, || format!("outbound {}/{port}", r.proto)),
                    },
                )
            })
            .collect();

        let published: Vec<PublishedRule> = policy
            .docker
            .published
            .iter()
            .filter(|p| p.family.includes(family))
            .filter(|p| host_address(p).is_none_or(|a| Family::of(&a) == family))
            .flat_map(|p| {
                let sources = addresses_of(&p.from);
                expand(
                    p.port.get_ref(),
                    &p.interfaces,
                    &sources,
                    |port, interface, source| PublishedRule {
                        interface,
                        source,
                        proto: p.proto,
                        dialed_port: *port,
                        host_address: host_address(p),
                        comment: label(&p.comment, || format!("published {}/{port}", p.proto)),
                    },
                )
            })
            .collect();

        let raw = policy
            .raw
            .iter()
            .filter(|r| r.backend == backend && r.family.includes(family))
            .map(|r| RawLine {
                chain: r.chain,
                rule: r.rule.get_ref().clone(),
                comment: label(&r.comment, || "raw rule".to_owned()),
            })
            .collect();

        let sets = planned_sets(
            policy,
            family,
            services
                .iter()
                .flat_map(|r| [&r.source, &r.destination])
                .chain(published.iter().map(|r| &r.source))
                .chain(allow.iter().flat_map(|r| [&r.source, &r.destination])),
        );

        FamilyPlan {
            family,
            deny: policy.defaults.deny,
            bridges: policy.interfaces.docker_bridges.get_ref().clone(),
            host: HostPlan {
                ping: policy.host.ping,
                containers_all: policy.host.containers == ContainerAccess::All,
                services,
            },
            outbound: OutboundPlan {
                allowlist: policy.outbound.policy == OutboundPolicy::Allowlist,
                essentials: policy.outbound.essentials,
                allow,
            },
            docker: DockerPlan {
                deny: policy.docker.default == DockerDefault::Deny,
                published,
            },
            raw,
            log: LogPlan {
                enabled: policy.log.enabled,
                prefix: policy.log.prefix.clone(),
                rate: policy.log.rate.clone(),
                burst: policy.log.burst(),
            },
            sets,
        }
    }
}

/// The lists `matches` name as sets, each once, in the order first named, with their
/// networks of `family`.
fn planned_sets<'a>(
    policy: &Policy,
    family: Family,
    matches: impl Iterator<Item = &'a Option<AddressMatch>>,
) -> Vec<PlannedSet> {
    let mut sets: Vec<PlannedSet> = Vec::new();
    for list in matches.filter_map(|m| match m {
        Some(AddressMatch::List(list)) => Some(list),
        _ => None,
    }) {
        if !sets.iter().any(|s| &s.list == list) {
            sets.push(PlannedSet {
                list: list.clone(),
                networks: policy.set_members(list, family).copied().collect(),
            });
        }
    }
    sets
}

/// The rules of one entry: one per port range, interface and address, in that order.
/// No interfaces means any interface; `None` addresses means anywhere; an empty list of
/// addresses means the entry has no rules in this family.
fn expand<R>(
    ports: &Ports,
    interfaces: &[Spanned<InterfaceName>],
    addresses: &Addresses,
    rule: impl Fn(&PortRange, Option<InterfaceName>, Option<AddressMatch>) -> R,
) -> Vec<R> {
    let interfaces: Vec<Option<&InterfaceName>> = if interfaces.is_empty() {
        vec![None]
    } else {
        interfaces.iter().map(|i| Some(i.get_ref())).collect()
    };
    let addresses: Vec<Option<&AddressMatch>> = match addresses {
        None => vec![None],
        Some(matches) => matches.iter().map(Some).collect(),
    };
    let mut rules = Vec::new();
    for port in ports.ranges() {
        for interface in &interfaces {
            for address in &addresses {
                rules.push(rule(port, interface.cloned(), address.cloned()));
            }
        }
    }
    rules
}

/// The host address a published entry is limited to, if any.
fn host_address(p: &Published) -> Option<std::net::IpAddr> {
    p.host_address.as_ref().map(|a| a.get_ref().addr())
}

/// The admin's comment, or the one composed from the entry.
fn label(comment: &Option<Comment>, generated: impl FnOnce() -> String) -> Comment {
    comment
        .clone()
        .unwrap_or_else(|| Comment::generated(generated()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::RawChain;
    use crate::policy::types::Proto;

    fn plan(text: &str, family: Family) -> FamilyPlan {
        let policy = Policy::parse(Path::new("test.toml"), text.as_bytes()).expect("valid");
        FamilyPlan::build(&policy, BackendKind::Iptables, family)
    }

    fn net(text: &str) -> Option<AddressMatch> {
        Some(AddressMatch::Network(text.parse().expect("network")))
    }

    fn name(text: &str) -> Option<InterfaceName> {
        Some(text.parse().expect("interface"))
    }

    fn port(first: u16, last: u16) -> PortRange {
        PortRange::new(first, last).expect("port range")
    }

    #[test]
    fn an_entry_expands_per_port_then_interface_then_address_of_the_family() {
        let text = "[lists]\noffice = [\"192.0.2.0/24\", \"2001:db8::/32\", \"198.51.100.0/24\"]\n\
                    [[host.services]]\nport = [22, \"8000-8100\"]\nproto = \"udp\"\n\
                    interfaces = [\"eth0\", \"wg+\"]\nfrom = [\"office\", \"192.0.2.0/24\"]\n";
        let v4 = plan(text, Family::Ipv4);
        let rule = |port, interface, source, comment: &str| PortRule {
            interface: name(interface),
            source: net(source),
            destination: None,
            proto: Proto::Udp,
            port,
            comment: comment.parse().expect("comment"),
        };
        let (a, b) = ("192.0.2.0/24", "198.51.100.0/24");
        let (p22, p8000) = (port(22, 22), port(8000, 8100));
        let (c22, c8000) = ("host service udp/22", "host service udp/8000-8100");
        assert_eq!(
            v4.host.services,
            [
                rule(p22, "eth0", a, c22),
                rule(p22, "eth0", b, c22),
                rule(p22, "wg+", a, c22),
                rule(p22, "wg+", b, c22),
                rule(p8000, "eth0", a, c8000),
                rule(p8000, "eth0", b, c8000),
                rule(p8000, "wg+", a, c8000),
                rule(p8000, "wg+", b, c8000),
            ]
        );
        // The list's IPv6 network, once per port and interface, in the IPv6 plan.
        let v6 = plan(text, Family::Ipv6);
        let sources: Vec<_> = v6
            .host
            .services
            .iter()
            .map(|r| (r.port, r.interface.clone(), r.source.clone()))
            .collect();
        let ipv6 = net("2001:db8::/32");
        assert_eq!(
            sources,
            [
                (p22, name("eth0"), ipv6.clone()),
                (p22, name("wg+"), ipv6.clone()),
                (p8000, name("eth0"), ipv6.clone()),
                (p8000, name("wg+"), ipv6),
            ]
        );
    }

    #[test]
    fn entries_whose_addresses_are_all_of_the_other_family_have_no_rules_in_it() {
        let text = "[lists]\nv4 = [\"192.0.2.0/24\", \"198.51.100.7\"]\n\
                    [[host.services]]\nport = 22\nfrom = [\"v4\"]\n\
                    [[outbound.allow]]\nport = 443\nto = [\"v4\"]\n\
                    [[docker.published]]\nport = 8080\nfrom = [\"v4\"]\n\
                    [[docker.published]]\nport = 9090\nhost_address = \"203.0.113.10\"\n\
                    [[host.services]]\nport = 80\n";
        let v6 = plan(text, Family::Ipv6);
        // Only the entry without addresses is left, and it means anywhere.
        assert_eq!(v6.host.services.len(), 1);
        assert_eq!(v6.host.services[0].port, port(80, 80));
        assert_eq!(v6.host.services[0].source, None);
        assert!(v6.outbound.allow.is_empty());
        assert!(v6.docker.published.is_empty());
        let v4 = plan(text, Family::Ipv4);
        assert_eq!(v4.host.services.len(), 3);
        let outbound: Vec<_> = v4
            .outbound
            .allow
            .iter()
            .map(|r| r.destination.clone())
            .collect();
        assert_eq!(outbound, [net("192.0.2.0/24"), net("198.51.100.7/32")]);
        assert!(v4.outbound.allow.iter().all(|r| r.source.is_none()));
        assert_eq!(v4.outbound.allow[0].comment.as_str(), "outbound tcp/443");
    }

    #[test]
    fn a_published_entry_keeps_the_dialed_port_and_host_address() {
        let text = "[[docker.published]]\nport = 8443\nproto = \"tcp\"\n\
                    host_address = \"2001:db8::10\"\ninterfaces = [\"eth1\"]\ncomment = \"web\"\n";
        assert!(plan(text, Family::Ipv4).docker.published.is_empty());
        let v6 = plan(text, Family::Ipv6);
        assert_eq!(
            v6.docker.published,
            [PublishedRule {
                interface: name("eth1"),
                source: None,
                proto: Proto::Tcp,
                dialed_port: port(8443, 8443),
                host_address: Some("2001:db8::10".parse().expect("address")),
                comment: "web".parse().expect("comment"),
            }]
        );
    }

    #[test]
    fn raw_rules_of_the_family_and_backend_keep_their_chain_and_order() {
        let text = "[[raw]]\nchain = \"output\"\nrule = \"-p udp --dport 1 -j ACCEPT\"\n\
                    [[raw]]\nchain = \"input\"\nfamily = \"ipv6\"\nrule = \"-p udp --dport 2 -j ACCEPT\"\n\
                    [[raw]]\nbackend = \"iptables\"\nchain = \"docker-user\"\ncomment = \"vpn\"\n\
                    rule = \"-p  udp   --dport 3 -j RETURN\"\n";
        let lines = |family| {
            plan(text, family)
                .raw
                .iter()
                .map(|r| (r.chain, r.rule.normalized(), r.comment.to_string()))
                .collect::<Vec<_>>()
        };
        let first = (
            RawChain::Output,
            "-p udp --dport 1 -j ACCEPT".to_owned(),
            "raw rule".to_owned(),
        );
        let third = (
            RawChain::DockerUser,
            "-p udp --dport 3 -j RETURN".to_owned(),
            "vpn".to_owned(),
        );
        assert_eq!(lines(Family::Ipv4), [first.clone(), third.clone()]);
        let second = (
            RawChain::Input,
            "-p udp --dport 2 -j ACCEPT".to_owned(),
            "raw rule".to_owned(),
        );
        assert_eq!(lines(Family::Ipv6), [first, second, third]);
    }

    #[test]
    fn settings_come_from_the_policy_or_its_defaults() {
        let defaults = plan("[host]\n", Family::Ipv4);
        assert_eq!(defaults.deny, DenyAction::Reject);
        let bridges: Vec<String> = defaults.bridges.iter().map(|b| b.to_string()).collect();
        assert_eq!(bridges, ["docker0", "br-+"]);
        assert!(defaults.host.ping && !defaults.host.containers_all);
        assert!(!defaults.outbound.allowlist && defaults.outbound.essentials);
        assert!(defaults.docker.deny && !defaults.log.enabled);
        assert_eq!(
            (defaults.log.prefix.as_str(), defaults.log.rate.as_str()),
            ("iptables-ctl", "5/minute")
        );
        assert_eq!(defaults.log.burst, 10);
        let set = plan(
            "[defaults]\ndeny = \"drop\"\n[interfaces]\ndocker_bridges = [\"br0\"]\n\
             [host]\nping = false\ncontainers = \"all\"\n[outbound]\npolicy = \"allowlist\"\n\
             essentials = false\n[docker]\ndefault = \"allow\"\n\
             [log]\nenabled = true\nprefix = \"fw\"\nrate = \"1/second\"\nburst = 3\n",
            Family::Ipv6,
        );
        assert_eq!((set.family, set.deny), (Family::Ipv6, DenyAction::Drop));
        assert_eq!(set.bridges, [name("br0").expect("name")]);
        assert!(!set.host.ping && set.host.containers_all);
        assert!(set.outbound.allowlist && !set.outbound.essentials);
        assert!(!set.docker.deny && set.log.enabled);
        assert_eq!(
            (
                set.log.prefix.as_str(),
                set.log.rate.as_str(),
                set.log.burst
            ),
            ("fw", "1/second", 3)
        );
    }
}
