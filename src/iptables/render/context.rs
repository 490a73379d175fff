//! The data a template sees: one [`FamilyContext`] per address family, built from a
//! validated policy. Every string in it is composed from validated types (interface
//! names, networks, ports, comments), which is what makes rendering with autoescape off
//! safe. Rules whose sources are all of the other family are left out of this family's
//! file entirely; they are never rendered without their source match.
//!
//! The context depends on the policy alone, never on the host it is rendered on: no
//! interface name of the host reaches a rule, so a tree rendered or staged on one host
//! means the same on another.

use serde::Serialize;

use crate::family::Family;
use crate::policy::types::{AddressRef, Comment, InterfaceName, Network, PortRange, Ports, Proto};
use crate::policy::{
    ContainerAccess, DenyAction, DockerDefault, OutboundPolicy, Policy, Published, RawChain,
};

/// Everything a template gets for one family.
#[derive(Debug, Serialize)]
pub struct FamilyContext {
    /// `ipv4` or `ipv6`.
    pub family: Family,
    /// Shorthand for `family == "ipv6"`.
    pub ipv6: bool,
    /// `reject` or `drop`.
    pub deny: &'static str,
    /// Docker bridge interfaces.
    pub bridges: Vec<String>,
    /// INPUT settings and rules.
    pub host: HostContext,
    /// OUTPUT settings and rules.
    pub outbound: OutboundContext,
    /// DOCKER-USER settings and rules.
    pub docker: DockerContext,
    /// Raw rules per chain.
    pub raw: RawContext,
    /// Logging of denied packets.
    pub log: LogContext,
}

/// One rule: its match options (no target) and its comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleContext {
    /// Match options, such as `-s 192.0.2.0/24 -p tcp -m tcp --dport 22`.
    pub spec: String,
    /// Comment text (validated: no quotes).
    pub comment: String,
}

/// `host`.
#[derive(Debug, Serialize)]
pub struct HostContext {
    /// Answer pings.
    pub ping: bool,
    /// Containers reach every host service.
    pub containers_all: bool,
    /// Service rules, in policy order.
    pub services: Vec<RuleContext>,
}

/// `outbound`.
#[derive(Debug, Serialize)]
pub struct OutboundContext {
    /// OUTPUT is an allowlist.
    pub allowlist: bool,
    /// Essentials (DNS, NTP, HTTP(S), DHCP, ICMP) are allowed.
    pub essentials: bool,
    /// Allowed destinations.
    pub allow: Vec<RuleContext>,
}

/// `docker`.
#[derive(Debug, Serialize)]
pub struct DockerContext {
    /// Deny new connections to published ports and Docker's bridges that nothing allowed.
    pub deny: bool,
    /// Allowed published ports, for DOCKER-USER (the port the client dialed, from
    /// conntrack).
    pub published: Vec<RuleContext>,
    /// The same entries for INPUT, where clients of docker-proxy arrive.
    pub published_input: Vec<RuleContext>,
}

/// `raw`.
#[derive(Debug, Serialize)]
pub struct RawContext {
    /// For INPUT.
    pub input: Vec<RuleContext>,
    /// For OUTPUT.
    pub output: Vec<RuleContext>,
    /// For DOCKER-USER.
    pub docker_user: Vec<RuleContext>,
}

/// `log`.
#[derive(Debug, Serialize)]
pub struct LogContext {
    /// Log denied packets.
    pub enabled: bool,
    /// Prefix start (at most 20 characters; the template appends a chain tag).
    pub prefix: String,
    /// `--limit` rate.
    pub rate: String,
    /// `--limit-burst`.
    pub burst: u32,
}

/// Builds the context of `family` for `policy`.
pub fn build(policy: &Policy, family: Family) -> FamilyContext {
    // Each entry's sources of this family, at the cost of what they are (a list's
    // part of the other family is never walked).
    let sources_of = |refs: &Option<toml::Spanned<Vec<toml::Spanned<AddressRef>>>>| {
        refs.as_ref()
            .map(|r| policy.expand_family(r.get_ref(), family))
    };

    let services = policy
        .host
        .services
        .iter()
        .filter(|s| s.family.includes(family))
        .flat_map(|s| {
            entry_rules(
                &s.port,
                &names(&s.interfaces),
                ("-s", &sources_of(&s.from)),
                &s.comment,
                |port| format!("host service {}/{port}", s.proto),
                |port| port_match(s.proto, "--dport", &port.iptables()),
            )
        })
        .collect();

    let outbound = policy
        .outbound
        .allow
        .iter()
        .filter(|r| r.family.includes(family))
        .flat_map(|r| {
            entry_rules(
                &r.port,
                &[],
                ("-d", &sources_of(&r.to)),
                &r.comment,
                |port| format!("outbound {}/{port}", r.proto),
                |port| port_match(r.proto, "--dport", &port.iptables()),
            )
        })
        .collect();

    let published_entries: Vec<_> = policy
        .docker
        .published
        .iter()
        .filter(|p| p.family.includes(family))
        .filter(|p| {
            p.host_address
                .as_ref()
                .is_none_or(|a| Family::of(&a.get_ref().addr()) == family)
        })
        .collect();
    // Each entry renders twice: for DOCKER-USER, where the port the client dialed
    // survives only in the conntrack original tuple (after DNAT, --dport is the
    // container's port), and for INPUT, where docker-proxy's clients arrive.
    let published_rules = |port_spec: &dyn Fn(&Published, &PortRange) -> String| {
        published_entries
            .iter()
            .flat_map(|p| {
                entry_rules(
                    &p.port,
                    &names(&p.interfaces),
                    ("-s", &sources_of(&p.from)),
                    &p.comment,
                    |port| format!("published {}/{port}", p.proto),
                    |port| port_spec(p, port),
                )
            })
            .collect::<Vec<_>>()
    };
    let host_address = |p: &Published| p.host_address.as_ref().map(|a| a.get_ref().addr());
    let published = published_rules(&|p, port| {
        let mut spec = format!(
            "-p {} -m conntrack --ctstate DNAT --ctorigdstport {}",
            p.proto,
            port.iptables()
        );
        if let Some(addr) = host_address(p) {
            spec.push_str(&format!(" --ctorigdst {addr}"));
        }
        spec
    });
    let published_input = published_rules(&|p, port| {
        let destination = host_address(p).map_or_else(String::new, |addr| format!("-d {addr} "));
        format!(
            "{destination}{}",
            port_match(p.proto, "--dport", &port.iptables())
        )
    });

    let mut raw = RawContext {
        input: Vec::new(),
        output: Vec::new(),
        docker_user: Vec::new(),
    };
    for entry in policy.raw.iter().filter(|r| r.family.includes(family)) {
        let rule = RuleContext {
            spec: entry.rule.get_ref().normalized(),
            comment: label(&entry.comment, "raw rule".to_owned()),
        };
        match entry.chain {
            RawChain::Input => raw.input.push(rule),
            RawChain::Output => raw.output.push(rule),
            RawChain::DockerUser => raw.docker_user.push(rule),
        }
    }

    FamilyContext {
        family,
        ipv6: family == Family::Ipv6,
        deny: match policy.defaults.deny {
            DenyAction::Reject => "reject",
            DenyAction::Drop => "drop",
        },
        bridges: policy
            .interfaces
            .docker_bridges
            .get_ref()
            .iter()
            .map(ToString::to_string)
            .collect(),
        host: HostContext {
            ping: policy.host.ping,
            containers_all: policy.host.containers == ContainerAccess::All,
            services,
        },
        outbound: OutboundContext {
            allowlist: policy.outbound.policy == OutboundPolicy::Allowlist,
            essentials: policy.outbound.essentials,
            allow: outbound,
        },
        docker: DockerContext {
            deny: policy.docker.default == DockerDefault::Deny,
            published,
            published_input,
        },
        raw,
        log: LogContext {
            enabled: policy.log.enabled,
            prefix: policy.log.prefix.to_string(),
            rate: policy.log.rate.to_string(),
            burst: policy.log.burst(),
        },
    }
}

/// The rules of one policy entry: one per port, interface and address, in that order.
/// `addresses` pairs the option (`-s` or `-d`) with the entry's networks of this family.
fn entry_rules(
    ports: &Ports,
    interfaces: &[InterfaceName],
    (address_option, networks): (&str, &Option<Vec<Network>>),
    comment: &Option<Comment>,
    generated_label: impl Fn(&PortRange) -> String,
    port_spec: impl Fn(&PortRange) -> String,
) -> Vec<RuleContext> {
    let interfaces: Vec<Option<&InterfaceName>> = if interfaces.is_empty() {
        vec![None]
    } else {
        interfaces.iter().map(Some).collect()
    };
    let mut rules = Vec::new();
    for port in ports.ranges() {
        let comment = label(comment, generated_label(port));
        for interface in &interfaces {
            for network in addresses(networks) {
                let mut spec = String::new();
                if let Some(interface) = interface {
                    spec.push_str(&format!("-i {interface} "));
                }
                if let Some(network) = network {
                    spec.push_str(&format!("{address_option} {network} "));
                }
                spec.push_str(&port_spec(port));
                rules.push(RuleContext {
                    spec,
                    comment: comment.clone(),
                });
            }
        }
    }
    rules
}

/// The names of a list of spanned interface names.
fn names(interfaces: &[toml::Spanned<InterfaceName>]) -> Vec<InterfaceName> {
    interfaces.iter().map(|i| i.get_ref().clone()).collect()
}

/// The address matches of a rule: `[None]` (anywhere) when there is no list, one per
/// network of this family otherwise; an empty list means the rule has no place in this
/// family's file and renders nothing.
fn addresses(list: &Option<Vec<Network>>) -> Vec<Option<Network>> {
    match list {
        None => vec![None],
        Some(nets) => nets.iter().copied().map(Some).collect(),
    }
}

fn port_match(proto: Proto, option: &str, port: &str) -> String {
    format!("-p {proto} -m {proto} {option} {port}")
}

fn label(comment: &Option<Comment>, generated: String) -> String {
    comment.as_ref().map_or_else(
        || Comment::generated(generated).to_string(),
        ToString::to_string,
    )
}
