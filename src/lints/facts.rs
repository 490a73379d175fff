//! What the lints judge, gathered once per run: the policy's own ports and rules, the
//! host's interfaces, what Docker publishes (its DNAT rules and docker-proxy), its
//! bridges, both iptables variants, and (for `status`) the live owned chains against
//! the rendered ones. Anything that could not be read is said, never taken for "no
//! problem".

use crate::audit::{self, PublishedPort};
use crate::backend::{
    Backend, Conflict, LiveRules, LiveState, OtherVariantRules, PortRule, VariantFindings,
};
use crate::control::{InterfaceProblem, Target, interface_problems};
use crate::family::Family;
use crate::host::net::HostNet;
use crate::policy::{BackendKind, Policy, RawChain};

/// The facts the lints judge.
#[derive(Default)]
pub(crate) struct Facts<'a> {
    /// The policy, when it loads.
    pub policy: Option<&'a Policy>,
    /// What is wrong between the policy's interface names and the host's.
    pub interfaces: Vec<InterfaceProblem>,
    /// The ports Docker publishes now, both families.
    pub published: Vec<PublishedPort>,
    /// The host has an IPv6 address clients could dial (not loopback or link-local, on
    /// an interface that is not a Docker bridge): docker-proxy's `[::]` listeners serve
    /// someone only then.
    pub dialable_ipv6: bool,
    /// The bridges Docker's rules forward to, `(family, bridge)`.
    pub docker_bridges: Vec<(Family, String)>,
    /// Docker's chains sit in the other variant.
    pub variant_conflicts: Vec<Conflict>,
    /// Rules in the variant nobody uses here.
    pub other_variant: Option<OtherVariantRules>,
    /// The policy's `[[raw]]` rules that match destination ports, by index.
    pub raw_ports: Vec<(usize, PortRule)>,
    /// Live rules in the owned chains that iptables-ctl did not render and that match
    /// destination ports: `(family, rule, ports)`.
    pub foreign_rules: Vec<(Family, String, PortRule)>,
    /// The live owned chains against the rendered ones (`status` only).
    pub live: Option<&'a LiveState>,
    /// What could not be read, so the lints that need it did not run.
    pub unread: Vec<String>,
    /// Why the other iptables variant could not be read (its lints did not run): a
    /// problem for `status`, which then cannot say "in force".
    pub variants_unread: Option<String>,
}

impl<'a> Facts<'a> {
    /// The facts of `policy` alone, with the host's interfaces (a staged tree has none
    /// to compare).
    pub fn of_policy(target: &Target<'_>, policy: &'a Policy) -> Facts<'a> {
        Facts {
            policy: Some(policy),
            interfaces: interface_problems(policy, target.host),
            raw_ports: raw_port_rules(policy),
            ..Facts::default()
        }
    }

    /// Gathers the facts for `target` on the live host: `policy` when it loads, the
    /// live rules when they could be read (`rules`, with `net` for docker-proxy's
    /// ports; `Err` says why not), what the other iptables variant holds (`variants`,
    /// the backend's [`Backend::variant_findings`]), and `live` for the owned chains in
    /// force.
    pub fn gather(
        target: &Target<'_>,
        policy: Option<&'a Policy>,
        rules: Result<(&dyn LiveRules, &HostNet), String>,
        variants: Result<VariantFindings, String>,
        live: Option<&'a LiveState>,
    ) -> Facts<'a> {
        let mut facts = match policy {
            Some(policy) => Facts::of_policy(target, policy),
            None => Facts::default(),
        };
        facts.live = live;
        match rules {
            Ok((rules, net)) => {
                facts.published = published(rules, net);
                facts.docker_bridges = rules.docker_bridges();
                facts.dialable_ipv6 = dialable_ipv6(net, policy);
            }
            Err(why) => facts.unread.push(format!(
                "the live rules or the host's addresses could not be read ({why}), so the lints that need what Docker publishes did not run"
            )),
        }
        match variants {
            Ok(found) => {
                facts.variant_conflicts = found.mismatch.into_iter().collect();
                facts.other_variant = found.other_rules;
            }
            Err(why) => {
                facts.variants_unread = Some(format!(
                    "the iptables variants could not be read ({why}), so whether Docker's chains or stray rules are in the other one was not checked"
                ));
            }
        }
        facts.foreign_rules = foreign_rules(target.backend, live);
        facts
    }
}

/// What Docker publishes through `rules`, and through docker-proxy where no DNAT rule
/// of that family takes the port first.
fn published(rules: &dyn LiveRules, net: &HostNet) -> Vec<PublishedPort> {
    rules
        .families()
        .into_iter()
        .flat_map(|(family, ruleset)| {
            let dnat = audit::published_ports(ruleset, family);
            let proxied = audit::proxy_ports(net, family, &dnat);
            dnat.into_iter().chain(proxied).collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `net` has an IPv6 address clients could dial: global or unique-local, on an
/// interface that is not one of Docker's bridges.
fn dialable_ipv6(net: &HostNet, policy: Option<&Policy>) -> bool {
    net.interfaces
        .iter()
        .filter(|i| !policy.is_some_and(|p| p.is_docker_bridge(&i.name)))
        .flat_map(|i| &i.addresses)
        .any(|address| match address.addr() {
            std::net::IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_multicast()
            }
            std::net::IpAddr::V4(_) => false,
        })
}

/// The policy's `[[raw]]` rules that match destination ports, read in the syntax of
/// the backend each is written for.
pub(super) fn raw_port_rules(policy: &Policy) -> Vec<(usize, PortRule)> {
    policy
        .raw
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let chain = match entry.chain {
                RawChain::Input => "INPUT",
                RawChain::DockerUser => "DOCKER-USER",
                RawChain::Output => return None,
            };
            let rule = match entry.backend {
                BackendKind::Iptables => crate::iptables::live::port_rule(&format!(
                    "-A {chain} {}",
                    entry.rule.get_ref().as_str()
                )),
            };
            Some((i, rule?))
        })
        .collect()
}

/// The live lines no rendered rule accounts for that match destination ports.
fn foreign_rules(
    backend: &dyn Backend,
    live: Option<&LiveState>,
) -> Vec<(Family, String, PortRule)> {
    live.iter()
        .flat_map(|state| &state.families)
        .flat_map(|state| {
            let family = Family::from_name(&state.family);
            state
                .unexpected
                .iter()
                .filter_map(move |line| Some((family?, line.clone(), backend.port_rule(line)?)))
        })
        .collect()
}
