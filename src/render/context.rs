//! The data a template sees: one [`FamilyContext`] per address family, built from a
//! validated policy. Every string in it is composed from validated types (interface
//! names, networks, ports, comments), which is what makes rendering with autoescape off
//! safe. Rules whose sources are all of the other family are left out of this family's
//! file entirely; they are never rendered without their source match.

use serde::Serialize;

use crate::policy::types::{Comment, Family, InterfaceName, Network, Proto};
use crate::policy::{ContainerAccess, DenyAction, DockerDefault, OutboundPolicy, Policy, RawChain};

/// Everything a template gets for one family.
#[derive(Debug, Serialize)]
pub struct FamilyContext {
    /// `ipv4` or `ipv6`.
    pub family: Family,
    /// Shorthand for `family == "ipv6"`.
    pub ipv6: bool,
    /// `reject` or `drop`.
    pub deny: &'static str,
    /// External interfaces (resolved).
    pub external: Vec<String>,
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
    /// Deny unlisted new connections from external interfaces into Docker's bridges.
    pub deny: bool,
    /// Allowed published ports.
    pub published: Vec<RuleContext>,
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

/// Builds the context of `family` for `policy`, with `external` already resolved.
pub fn build(policy: &Policy, external: &[InterfaceName], family: Family) -> FamilyContext {
    let in_family = |nets: Vec<Network>| -> Vec<Network> {
        nets.into_iter().filter(|n| n.family() == family).collect()
    };

    let mut services = Vec::new();
    for s in policy
        .host
        .services
        .iter()
        .filter(|s| s.family.includes(family))
    {
        let sources = s
            .from
            .as_ref()
            .map(|f| in_family(policy.expand(f.get_ref())));
        let interfaces: Vec<Option<&InterfaceName>> = if s.interfaces.is_empty() {
            vec![None]
        } else {
            s.interfaces.iter().map(Some).collect()
        };
        for port in s.port.ranges() {
            let comment = label(&s.comment, format!("host service {}/{port}", s.proto));
            for iface in &interfaces {
                for source in addresses(&sources) {
                    let mut spec = String::new();
                    if let Some(iface) = iface {
                        spec.push_str(&format!("-i {iface} "));
                    }
                    if let Some(net) = source {
                        spec.push_str(&format!("-s {net} "));
                    }
                    spec.push_str(&port_match(s.proto, "--dport", &port.iptables()));
                    services.push(RuleContext {
                        spec,
                        comment: comment.clone(),
                    });
                }
            }
        }
    }

    let mut outbound = Vec::new();
    for r in policy
        .outbound
        .allow
        .iter()
        .filter(|r| r.family.includes(family))
    {
        let dests = r.to.as_ref().map(|t| in_family(policy.expand(t.get_ref())));
        for port in r.port.ranges() {
            let comment = label(&r.comment, format!("outbound {}/{port}", r.proto));
            for dest in addresses(&dests) {
                let mut spec = String::new();
                if let Some(net) = dest {
                    spec.push_str(&format!("-d {net} "));
                }
                spec.push_str(&port_match(r.proto, "--dport", &port.iptables()));
                outbound.push(RuleContext {
                    spec,
                    comment: comment.clone(),
                });
            }
        }
    }

    let mut published = Vec::new();
    for p in policy
        .docker
        .published
        .iter()
        .filter(|p| p.family.includes(family))
    {
        let host_address = p.host_address.as_ref().map(|a| a.get_ref().addr());
        if host_address.is_some_and(|a| Family::of(&a) != family) {
            continue;
        }
        let sources = p
            .from
            .as_ref()
            .map(|f| in_family(policy.expand(f.get_ref())));
        for port in p.port.ranges() {
            let comment = label(&p.comment, format!("published {}/{port}", p.proto));
            for source in addresses(&sources) {
                let mut spec = String::new();
                if let Some(net) = source {
                    spec.push_str(&format!("-s {net} "));
                }
                // After DNAT, --dport is the container's port; the port the client
                // dialed survives only in the conntrack original tuple.
                spec.push_str(&format!(
                    "-p {} -m conntrack --ctstate DNAT --ctorigdstport {}",
                    p.proto,
                    port.iptables()
                ));
                if let Some(addr) = host_address {
                    spec.push_str(&format!(" --ctorigdst {addr}"));
                }
                published.push(RuleContext {
                    spec,
                    comment: comment.clone(),
                });
            }
        }
    }

    let mut raw = RawContext {
        input: Vec::new(),
        output: Vec::new(),
        docker_user: Vec::new(),
    };
    for entry in policy.raw.iter().filter(|r| r.family.includes(family)) {
        let rule = RuleContext {
            spec: entry
                .rule
                .get_ref()
                .as_str()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
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
        external: external.iter().map(ToString::to_string).collect(),
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
