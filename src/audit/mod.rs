//! The exposure audit and packet explain: every port Docker publishes (read from its
//! DNAT rules, and from the docker-proxy processes that serve a family Docker does not
//! NAT, as IPv6 under Docker's default setup), who can reach it from the external
//! interfaces, which rule decides, and whether that agrees with the policy; and the
//! walk of one packet, for `explain`.
//!
//! Reachability is exact for the rules the evaluator understands: the source address
//! space is cut at every boundary any rule or the policy mentions, one address of each
//! piece is walked through the ruleset, and the pieces that get through are reported as
//! networks. Within a piece no rule can tell addresses apart, so one walk speaks for all.
//!
//! Backend-neutral: the rules of each family are asked through
//! [`crate::backend::FamilyRules`] (walk a packet, the source ranges, the ports Docker
//! publishes through its DNAT rules), and the live ones come from the
//! [`crate::backend::Backend`] the command runs with; the answers are
//! [`crate::packet`]'s terms. The audit of a backend's rules is tested beside that
//! backend's reader of Docker's rules.
//!
//! This file owns the flows (`audit`, `audit_live`, `explain_live`) and the choice of
//! interfaces to look from; `published.rs` what Docker publishes (the backend reads its
//! DNAT rules), `reach.rs` the reachability judgement and `report.rs` the report and
//! its rendering.

mod published;
mod reach;
mod report;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::backend::{Backend, FamilyRules};
use crate::family::Family;
use crate::host::HostProbe;
use crate::host::net::HostNet;
use crate::packet::{Endpoint, Packet, Walk};
use crate::policy::{ExternalInterfaces, Policy};

pub use published::{PortPath, PublishedPort, proxy_ports};
pub use reach::{AuditedRuleset, Exposure, Reach};
pub use report::AuditReport;

/// The ports Docker publishes through `rules` (its DNAT rules), of `family`, as the
/// backend that reads them says.
pub fn published_ports<R: FamilyRules + ?Sized>(rules: &R, family: Family) -> Vec<PublishedPort> {
    rules.published_ports(family)
}

/// Audits the rulesets of both families (`(family, ruleset)`) from `interfaces`. An
/// interface the host does not have cannot be evaluated from: its entries say so and
/// are flagged (a policy naming one does not mean what its author thinks).
pub fn audit<R: FamilyRules>(
    rulesets: &[(Family, R)],
    host: &HostNet,
    interfaces: &[String],
    policy: Option<&Policy>,
) -> AuditReport {
    let mut names = host.interface_names();
    names.sort();
    let mut ports = Vec::new();
    let mut exposures = Vec::new();
    for (family, ruleset) in rulesets {
        let audited = AuditedRuleset::new(*family, ruleset, host);
        let dnat = published_ports(ruleset, *family);
        let proxied = proxy_ports(host, *family, &dnat);
        for port in dnat.into_iter().chain(proxied) {
            for interface in interfaces {
                if names.contains(interface) {
                    exposures.extend(audited.expose(host, &port, interface, policy));
                } else {
                    exposures.push(missing_interface(&port, interface, &names));
                }
            }
            ports.push(port);
        }
    }
    AuditReport {
        policy: policy.map(|p| p.path().display().to_string()),
        interfaces: interfaces.to_vec(),
        ports,
        exposures,
    }
}

/// The entry for `port` seen from `interface`, which the host does not have.
fn missing_interface(port: &PublishedPort, interface: &str, names: &[String]) -> Exposure {
    let unspecified: IpAddr = if port.family == Family::Ipv6.to_string() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    Exposure {
        port: port.clone(),
        interface: interface.to_owned(),
        dialed: port.host_address.unwrap_or(unspecified),
        reach: None,
        decided_by: Vec::new(),
        unknown: Some(format!(
            "{interface} does not exist on this host (interfaces here: {})",
            names.join(", ")
        )),
        allowed: None,
        not_allowed: Vec::new(),
    }
}

/// The interfaces the audit looks from: the policy's external interfaces (`auto`: those
/// of the default routes; a name ending in `+` stands for every interface it matches)
/// and the default-route interfaces; when there are none, every interface with an
/// address that is neither loopback nor one of the policy's Docker bridges.
pub fn audit_interfaces(
    host: &HostNet,
    probe: &dyn HostProbe,
    policy: Option<&Policy>,
) -> Vec<String> {
    let names = host.interface_names();
    let mut interfaces: Vec<String> = Vec::new();
    if let Some(policy) = policy
        && let Some(external) = &policy.interfaces.external
        && let ExternalInterfaces::Named(named) = external.get_ref()
    {
        for name in named {
            // A plain name is looked from even when the host lacks it, so the report
            // says so; a prefix stands for the interfaces it matches.
            if name.as_str().ends_with('+') {
                interfaces.extend(names.iter().filter(|n| name.matches(n)).cloned());
            } else {
                interfaces.push(name.to_string());
            }
        }
    }
    interfaces.extend(probe.default_route_interfaces().unwrap_or_default());
    interfaces.extend(host.default_route_interfaces());
    let mut seen = BTreeSet::new();
    interfaces.retain(|i| seen.insert(i.clone()));
    if interfaces.is_empty() {
        let is_bridge = |name: &str| policy.is_some_and(|p| p.is_docker_bridge(name));
        interfaces = host
            .interfaces
            .iter()
            .filter(|i| i.name != "lo" && !i.addresses.is_empty() && !is_bridge(&i.name))
            .map(|i| i.name.clone())
            .collect();
    }
    interfaces
}

/// `audit` on the live host: both families' live rules as `backend` reads them, the
/// policy at `policy_path` when there is one.
pub fn audit_live(
    backend: &dyn Backend,
    host: &HostNet,
    probe: &dyn HostProbe,
    policy_path: &Path,
) -> anyhow::Result<AuditReport> {
    let rules = backend.live_rules()?;
    let policy = if policy_path.exists() {
        Some(Policy::load(policy_path)?)
    } else {
        None
    };
    let interfaces = audit_interfaces(host, probe, policy.as_ref());
    Ok(audit(&rules.families(), host, &interfaces, policy.as_ref()))
}

/// The source port `explain` gives its packet (no rule of ours matches source ports).
const EXPLAIN_SOURCE_PORT: u16 = 40000;

/// `explain` on the live host: the walk of a packet from `from` to `to`, arriving on
/// `in_interface` (default: the interface the host routes `from` through), through the
/// live rules of its family as `backend` reads them.
pub fn explain_live(
    backend: &dyn Backend,
    host: &HostNet,
    from: IpAddr,
    to: &Endpoint,
    in_interface: Option<&str>,
) -> anyhow::Result<Walk> {
    if from.is_ipv6() != to.address.is_ipv6() {
        bail!(
            "--from {from} and --to {} are of different families",
            to.address
        );
    }
    let in_interface = match in_interface {
        Some(name) => name.to_owned(),
        None => host.route(from).map(str::to_owned).with_context(|| {
            format!("no route to {from} on this host, so the interface it arrives on is unknown: pass --in IFACE")
        })?,
    };
    let family = Family::of(&to.address);
    let rules = backend.live_family(family)?;
    Ok(rules.walk(
        host,
        &Packet {
            source: from,
            destination: to.address,
            transport: to.transport,
            source_port: EXPLAIN_SOURCE_PORT,
            destination_port: to.port,
            in_interface,
        },
    ))
}
