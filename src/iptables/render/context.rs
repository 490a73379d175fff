//! The data a template sees: one [`FamilyContext`] per address family, spelled in
//! iptables syntax from a [`FamilyPlan`], which has already expanded every entry into
//! typed rules. This module only chooses the spelling: `-i`, `-s`, `-d`, the protocol's
//! match and the port, the conntrack match of a published port. The context's shape
//! (field names and meaning) is what admins' own templates rely on.
//!
//! Every string in it is composed from validated types (interface names, networks,
//! ports, comments), which is what makes rendering with autoescape off safe.

use serde::Serialize;

use crate::family::Family;
use crate::iptables::sets;
use crate::plan::{FamilyPlan, PortRule, PublishedRule};
use crate::policy::types::{AddressMatch, Comment, InstanceName, InterfaceName, PortRange, Proto};
use crate::policy::{DenyAction, RawChain};

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
    /// The ipsets the rules match (long lists), loaded from the instance's sets file
    /// before the rules.
    pub sets: Vec<SetContext>,
}

/// One list matched as an ipset.
#[derive(Debug, Serialize)]
pub struct SetContext {
    /// The list's name in the policy.
    pub list: String,
    /// The set's kernel name (what `-m set --match-set` names).
    pub name: String,
    /// How many networks it holds.
    pub entries: usize,
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

/// Spells `plan` (of `instance`, which names its sets) as the context its family's
/// templates see.
pub fn build(instance: &InstanceName, plan: &FamilyPlan) -> FamilyContext {
    let spell = Spelling {
        instance,
        family: plan.family,
    };
    let mut raw = RawContext {
        input: Vec::new(),
        output: Vec::new(),
        docker_user: Vec::new(),
    };
    for line in &plan.raw {
        let rule = RuleContext {
            spec: line.rule.normalized(),
            comment: line.comment.to_string(),
        };
        match line.chain {
            RawChain::Input => raw.input.push(rule),
            RawChain::Output => raw.output.push(rule),
            RawChain::DockerUser => raw.docker_user.push(rule),
        }
    }

    FamilyContext {
        family: plan.family,
        ipv6: plan.family == Family::Ipv6,
        deny: match plan.deny {
            DenyAction::Reject => "reject",
            DenyAction::Drop => "drop",
        },
        bridges: plan.bridges.iter().map(ToString::to_string).collect(),
        host: HostContext {
            ping: plan.host.ping,
            containers_all: plan.host.containers_all,
            services: plan
                .host
                .services
                .iter()
                .map(|r| spell.port_rule(r))
                .collect(),
        },
        outbound: OutboundContext {
            allowlist: plan.outbound.allowlist,
            essentials: plan.outbound.essentials,
            allow: plan
                .outbound
                .allow
                .iter()
                .map(|r| spell.port_rule(r))
                .collect(),
        },
        docker: DockerContext {
            deny: plan.docker.deny,
            published: plan
                .docker
                .published
                .iter()
                .map(|r| spell.published_forwarded(r))
                .collect(),
            published_input: plan
                .docker
                .published
                .iter()
                .map(|r| spell.published_input(r))
                .collect(),
        },
        raw,
        log: LogContext {
            enabled: plan.log.enabled,
            prefix: plan.log.prefix.to_string(),
            rate: plan.log.rate.to_string(),
            burst: plan.log.burst,
        },
        sets: plan
            .sets
            .iter()
            .map(|set| SetContext {
                list: set.list.to_string(),
                name: sets::set_name(instance, &set.list, plan.family),
                entries: set.networks.len(),
            })
            .collect(),
    }
}

/// How one instance's rules of one family are spelled: a list matched as a set is
/// named by its kernel name, which the instance and family make.
struct Spelling<'a> {
    instance: &'a InstanceName,
    family: Family,
}

impl Spelling<'_> {
    /// A host service or outbound destination: `-i IF -s NET -d NET -p P -m P --dport
    /// N`, each match only when the rule has it.
    fn port_rule(&self, rule: &PortRule) -> RuleContext {
        RuleContext {
            spec: format!(
                "{}{}",
                self.addressing(
                    rule.interface.as_ref(),
                    rule.source.as_ref(),
                    rule.destination.as_ref()
                ),
                port_match(rule.proto, &rule.port)
            ),
            comment: rule.comment.to_string(),
        }
    }

    /// A published port in DOCKER-USER, after DNAT: `--dport` is the container's port
    /// there, so the port (and address) the client dialed is matched in the
    /// connection's original tuple.
    fn published_forwarded(&self, rule: &PublishedRule) -> RuleContext {
        let mut spec = format!(
            "{}-p {} -m conntrack --ctstate DNAT --ctorigdstport {}",
            self.addressing(rule.interface.as_ref(), rule.source.as_ref(), None),
            rule.proto,
            port_spelling(&rule.dialed_port)
        );
        if let Some(addr) = rule.host_address {
            spec.push_str(&format!(" --ctorigdst {addr}"));
        }
        published_context(spec, &rule.comment)
    }

    /// A published port in INPUT, where docker-proxy's clients arrive with the port
    /// (and address) they dialed.
    fn published_input(&self, rule: &PublishedRule) -> RuleContext {
        let mut spec = self.addressing(rule.interface.as_ref(), rule.source.as_ref(), None);
        if let Some(addr) = rule.host_address {
            spec.push_str(&format!("-d {addr} "));
        }
        spec.push_str(&port_match(rule.proto, &rule.dialed_port));
        published_context(spec, &rule.comment)
    }

    /// `-i IF -s NET -d NET `, each option only when given, each followed by a space; a
    /// list's set is `-m set --match-set NAME src` (or `dst`).
    fn addressing(
        &self,
        interface: Option<&InterfaceName>,
        source: Option<&AddressMatch>,
        destination: Option<&AddressMatch>,
    ) -> String {
        let mut spec = String::new();
        if let Some(interface) = interface {
            spec.push_str(&format!("-i {interface} "));
        }
        for (address, option, direction) in [(source, "-s", "src"), (destination, "-d", "dst")] {
            match address {
                Some(AddressMatch::Network(network)) => {
                    spec.push_str(&format!("{option} {network} "));
                }
                Some(AddressMatch::List(list)) => spec.push_str(&format!(
                    "-m set --match-set {} {direction} ",
                    sets::set_name(self.instance, list, self.family)
                )),
                None => {}
            }
        }
        spec
    }
}

fn published_context(spec: String, comment: &Comment) -> RuleContext {
    RuleContext {
        spec,
        comment: comment.to_string(),
    }
}

fn port_match(proto: Proto, port: &PortRange) -> String {
    format!("-p {proto} -m {proto} --dport {}", port_spelling(port))
}

/// The port in iptables syntax: `22` or `8000:8100`.
fn port_spelling(port: &PortRange) -> String {
    if port.first() == port.last() {
        port.first().to_string()
    } else {
        format!("{}:{}", port.first(), port.last())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::{BackendKind, Policy};

    fn context(text: &str, family: Family) -> FamilyContext {
        let policy = Policy::parse(Path::new("test.toml"), text.as_bytes()).expect("valid");
        build(
            &"base".parse().expect("instance"),
            &FamilyPlan::build(&policy, BackendKind::Iptables, family),
        )
    }

    fn specs(rules: &[RuleContext]) -> Vec<&str> {
        rules.iter().map(|r| r.spec.as_str()).collect()
    }

    #[test]
    fn each_typed_rule_is_spelled_in_iptables_syntax() {
        let ctx = context(
            "[[host.services]]\nport = \"8000-8100\"\ninterfaces = [\"eth0\"]\nfrom = [\"192.0.2.0/24\"]\n\
             [[outbound.allow]]\nport = 53\nproto = \"udp\"\nto = [\"198.51.100.1\"]\n\
             [[docker.published]]\nport = 8080\ninterfaces = [\"eth1\"]\nfrom = [\"203.0.113.0/24\"]\n\
             host_address = \"192.0.2.10\"\n\
             [[raw]]\nchain = \"input\"\nrule = \"-p  udp --dport 51820   -j ACCEPT\"\n",
            Family::Ipv4,
        );
        assert_eq!(
            specs(&ctx.host.services),
            ["-i eth0 -s 192.0.2.0/24 -p tcp -m tcp --dport 8000:8100"]
        );
        assert_eq!(ctx.host.services[0].comment, "host service tcp/8000-8100");
        assert_eq!(
            specs(&ctx.outbound.allow),
            ["-d 198.51.100.1/32 -p udp -m udp --dport 53"]
        );
        assert_eq!(
            specs(&ctx.docker.published),
            [
                "-i eth1 -s 203.0.113.0/24 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 --ctorigdst 192.0.2.10"
            ]
        );
        assert_eq!(
            specs(&ctx.docker.published_input),
            ["-i eth1 -s 203.0.113.0/24 -d 192.0.2.10 -p tcp -m tcp --dport 8080"]
        );
        assert_eq!(specs(&ctx.raw.input), ["-p udp --dport 51820 -j ACCEPT"]);
        assert_eq!(ctx.raw.input[0].comment, "raw rule");
        assert_eq!((ctx.deny, ctx.ipv6), ("reject", false));
    }

    #[test]
    fn ports_are_spelled_as_iptables_reads_them() {
        let range = |first, last| PortRange::new(first, last).expect("range");
        assert_eq!(port_spelling(&range(22, 22)), "22");
        assert_eq!(port_spelling(&range(8000, 8100)), "8000:8100");
    }
}
