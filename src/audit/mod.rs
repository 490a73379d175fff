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

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde::Serialize;

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::family::Family;
use crate::host::HostProbe;
use crate::host::net::HostNet;
use crate::iptables::live::{self, LiveFirewall};
use crate::iptables::rule::{Match, Proto, Target};
use crate::iptables::walk::{self, Endpoint, Packet, Ruleset, Transport, Verdict, Walk};
use crate::policy::types::Proto as PolicyProto;
use crate::policy::{DockerDefault, ExternalInterfaces, Policy};

/// How clients reach a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortPath {
    /// Docker's DNAT rule sends them through FORWARD (and DOCKER-USER).
    Dnat,
    /// docker-proxy accepts them on the host (INPUT) and connects to the container.
    DockerProxy,
}

impl std::fmt::Display for PortPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortPath::Dnat => "DNAT",
            PortPath::DockerProxy => "docker-proxy",
        })
    }
}

/// A port Docker publishes, as its DNAT rule (or docker-proxy) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    /// `IPv4` or `IPv6`.
    pub family: String,
    /// Through FORWARD (DNAT) or INPUT (docker-proxy).
    pub path: PortPath,
    /// tcp or udp.
    pub transport: Transport,
    /// Only when dialed to this host address (`-d`); any local address otherwise.
    pub host_address: Option<IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// Where it leads.
    pub container_address: Option<IpAddr>,
    /// The container port.
    pub container_port: Option<u16>,
    /// The DNAT rule, or docker-proxy's command line.
    pub rule: String,
}

/// Who can reach a published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reach", content = "sources", rename_all = "lowercase")]
pub enum Reach {
    /// Every source address.
    Anywhere,
    /// Only these networks.
    Only(Vec<IpNet>),
    /// No source address.
    Nowhere,
}

/// One published port, seen from one external interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// The port.
    pub port: PublishedPort,
    /// The interface the probes came in on.
    pub interface: String,
    /// The address they were sent to.
    pub dialed: IpAddr,
    /// Who gets through (None when some source could not be decided).
    pub reach: Option<Reach>,
    /// Rules that decided, in the order first seen (the last step of each walk).
    pub decided_by: Vec<String>,
    /// Why some sources could not be decided.
    pub unknown: Option<String>,
    /// Sources the policy allows for this port (None: no policy to compare with).
    pub allowed: Option<Reach>,
    /// Sources that get through although the policy does not allow them.
    pub not_allowed: Vec<IpNet>,
}

impl Exposure {
    /// The port is reachable from sources the policy does not allow, or cannot be told.
    pub fn is_flagged(&self) -> bool {
        !self.not_allowed.is_empty() || self.unknown.is_some()
    }
}

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

/// The ports docker-proxy serves in `family` that no DNAT rule of that family takes
/// first: their clients reach the host itself, through INPUT.
pub fn proxy_ports(host: &HostNet, family: Family, dnat: &[PublishedPort]) -> Vec<PublishedPort> {
    let mut ports: Vec<PublishedPort> = host
        .proxies
        .iter()
        .filter(|p| Family::of(&p.host_address) == family)
        .filter(|p| {
            !dnat
                .iter()
                .any(|d| d.transport == p.transport && d.host_port == p.host_port)
        })
        .map(|p| PublishedPort {
            family: family.to_string(),
            path: PortPath::DockerProxy,
            transport: p.transport,
            host_address: (!p.host_address.is_unspecified()).then_some(p.host_address),
            host_port: p.host_port,
            container_address: p.container_address,
            container_port: p.container_port,
            rule: p.command.clone(),
        })
        .collect();
    ports.sort_by_key(|p| (p.host_port, p.transport == Transport::Udp, p.host_address));
    ports.dedup_by_key(|p| (p.host_port, p.transport, p.host_address));
    ports
}

/// One family's ruleset, with the source boundaries its rules and the host's ipsets
/// draw (the same for every port, so found once).
pub struct AuditedRuleset<'a> {
    family: Family,
    ruleset: &'a Ruleset,
    cuts: BTreeSet<IpAddr>,
}

impl<'a> AuditedRuleset<'a> {
    /// Prepares `ruleset` (of `family`) on `host` for exposure questions.
    pub fn new(family: Family, ruleset: &'a Ruleset, host: &HostNet) -> AuditedRuleset<'a> {
        AuditedRuleset {
            family,
            ruleset,
            cuts: boundaries(ruleset, host, family == Family::Ipv6),
        }
    }

    /// Works out who can reach `port` coming in on `interface`, and compares it with
    /// `policy` when there is one.
    pub fn expose(
        &self,
        host: &HostNet,
        port: &PublishedPort,
        interface: &str,
        policy: Option<&Policy>,
    ) -> Option<Exposure> {
        let (ruleset, ipv6) = (self.ruleset, self.family == Family::Ipv6);
        let dialed = match port.host_address {
            Some(address) => address,
            None => host.address_of(interface, ipv6)?,
        };
        let allowed = policy.map(|p| allowed_sources(p, port, dialed, interface));
        let mut boundaries = self.cuts.clone();
        if let Some(Reach::Only(nets)) = &allowed {
            for net in nets {
                add_boundaries(&mut boundaries, *net);
            }
        }
        let pieces = pieces(&boundaries, ipv6);
        let mut open: Vec<(IpAddr, IpAddr)> = Vec::new();
        let mut decided_by: Vec<String> = Vec::new();
        let mut unknown = None;
        for (first, last) in &pieces {
            let walk = walk::walk(
                ruleset,
                host,
                &Packet {
                    source: *first,
                    destination: dialed,
                    transport: port.transport,
                    source_port: 40000,
                    destination_port: port.host_port,
                    in_interface: interface.to_owned(),
                },
            );
            if let Some(step) = walk.steps.last() {
                let text = step.to_string();
                if !decided_by.contains(&text) {
                    decided_by.push(text);
                }
            }
            match walk.verdict {
                Verdict::Accept => match open.last_mut() {
                    Some((_, end)) if next_address(*end) == Some(*first) => *end = *last,
                    _ => open.push((*first, *last)),
                },
                Verdict::Unknown { reason } => {
                    unknown.get_or_insert(reason);
                }
                Verdict::Drop | Verdict::Reject { .. } => {}
            }
        }
        let open_nets: Vec<IpNet> = open.iter().flat_map(|(a, b)| networks(*a, *b)).collect();
        let reach = unknown.is_none().then(|| {
            if open.is_empty() {
                Reach::Nowhere
            } else if open.len() == 1
                && pieces.first().map(|p| p.0) == Some(open[0].0)
                && pieces.last().map(|p| p.1) == Some(open[0].1)
            {
                Reach::Anywhere
            } else {
                Reach::Only(open_nets.clone())
            }
        });
        let not_allowed = match &allowed {
            None | Some(Reach::Anywhere) => Vec::new(),
            Some(allowed) => open_nets
                .into_iter()
                .filter(|net| match allowed {
                    Reach::Only(allowed) => !allowed.iter().any(|a| a.contains(net)),
                    _ => true,
                })
                .collect(),
        };
        Some(Exposure {
            port: port.clone(),
            interface: interface.to_owned(),
            dialed,
            reach,
            decided_by,
            unknown,
            allowed,
            not_allowed,
        })
    }
}

/// What the policy allows to reach `port` dialed at `dialed`, arriving on `interface`.
fn allowed_sources(
    policy: &Policy,
    port: &PublishedPort,
    dialed: IpAddr,
    interface: &str,
) -> Reach {
    if policy.docker.default == DockerDefault::Allow {
        return Reach::Anywhere;
    }
    let family = Family::of(&dialed);
    let mut nets = Vec::new();
    for entry in &policy.docker.published {
        let proto = match entry.proto {
            PolicyProto::Tcp => Transport::Tcp,
            PolicyProto::Udp => Transport::Udp,
        };
        let covers_port = entry
            .port
            .ranges()
            .iter()
            .any(|r| (r.first()..=r.last()).contains(&port.host_port));
        let covers_address = entry
            .host_address
            .as_ref()
            .is_none_or(|a| a.get_ref().addr() == dialed);
        let covers_interface = entry.interfaces.is_empty()
            || entry
                .interfaces
                .iter()
                .any(|i| i.get_ref().matches(interface));
        if proto != port.transport
            || !covers_port
            || !covers_address
            || !covers_interface
            || !entry.family.includes(family)
        {
            continue;
        }
        match &entry.from {
            None => return Reach::Anywhere,
            Some(from) => nets.extend(
                policy
                    .expand(from.get_ref())
                    .iter()
                    .map(|n| n.net())
                    .filter(|n| n.addr().is_ipv6() == dialed.is_ipv6()),
            ),
        }
    }
    if nets.is_empty() {
        Reach::Nowhere
    } else {
        Reach::Only(nets)
    }
}

/// Every address where a source match in any rule (or a known ipset) starts or ends.
fn boundaries(ruleset: &Ruleset, host: &HostNet, ipv6: bool) -> BTreeSet<IpAddr> {
    let mut cuts = BTreeSet::new();
    for table in ["raw", "mangle", "nat", "filter"] {
        for chain in ruleset.chains(table) {
            for rule in ruleset.rules(table, chain) {
                for condition in &rule.matches {
                    match condition {
                        Match::Source(n) | Match::CtOrigSource(n) => {
                            add_boundaries(&mut cuts, n.value)
                        }
                        Match::SourceRange(n) => {
                            cuts.insert(n.value.0);
                            if let Some(after) = next_address(n.value.1) {
                                cuts.insert(after);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    for members in host.sets.values() {
        for net in members {
            add_boundaries(&mut cuts, *net);
        }
    }
    cuts.retain(|a| a.is_ipv6() == ipv6);
    cuts
}

fn add_boundaries(cuts: &mut BTreeSet<IpAddr>, net: IpNet) {
    cuts.insert(net.network());
    if let Some(after) = next_address(net.broadcast()) {
        cuts.insert(after);
    }
}

/// The address space of one family cut at `cuts`, as (first, last) pieces.
fn pieces(cuts: &BTreeSet<IpAddr>, ipv6: bool) -> Vec<(IpAddr, IpAddr)> {
    let (zero, max): (IpAddr, IpAddr) = if ipv6 {
        (
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::from(u128::MAX).into(),
        )
    } else {
        (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into())
    };
    let mut starts: Vec<IpAddr> = std::iter::once(zero).chain(cuts.iter().copied()).collect();
    starts.dedup();
    starts
        .iter()
        .enumerate()
        .map(|(i, start)| {
            let last = starts
                .get(i + 1)
                .and_then(|next| previous_address(*next))
                .unwrap_or(max);
            (*start, last)
        })
        .collect()
}

fn next_address(address: IpAddr) -> Option<IpAddr> {
    match address {
        IpAddr::V4(a) => u32::from(a)
            .checked_add(1)
            .map(|n| Ipv4Addr::from(n).into()),
        IpAddr::V6(a) => u128::from(a)
            .checked_add(1)
            .map(|n| Ipv6Addr::from(n).into()),
    }
}

fn previous_address(address: IpAddr) -> Option<IpAddr> {
    match address {
        IpAddr::V4(a) => u32::from(a)
            .checked_sub(1)
            .map(|n| Ipv4Addr::from(n).into()),
        IpAddr::V6(a) => u128::from(a)
            .checked_sub(1)
            .map(|n| Ipv6Addr::from(n).into()),
    }
}

/// The fewest networks that cover exactly `first..=last`.
fn networks(first: IpAddr, last: IpAddr) -> Vec<IpNet> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect(),
        (IpAddr::V6(a), IpAddr::V6(b)) => Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect(),
        _ => Vec::new(),
    }
}

/// The whole audit: every published port of both families from every external
/// interface.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The policy compared with (None: reachability only).
    pub policy: Option<String>,
    /// The interfaces probed from.
    pub interfaces: Vec<String>,
    /// Every published port found, both families and both paths.
    pub ports: Vec<PublishedPort>,
    /// One entry per published port and interface.
    pub exposures: Vec<Exposure>,
}

impl AuditReport {
    /// Some port is reachable beyond the policy, or could not be decided.
    pub fn is_flagged(&self) -> bool {
        self.exposures.iter().any(Exposure::is_flagged)
    }

    /// The published ports by family and path, such as "IPv4 DNAT: 2, IPv6
    /// docker-proxy: 2".
    pub fn port_summary(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for port in &self.ports {
            let key = format!("{} {}", port.family, port.path);
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per flagged exposure, for `status`.
    pub fn flagged_lines(&self) -> Vec<String> {
        self.exposures
            .iter()
            .filter(|e| e.is_flagged())
            .map(|e| {
                let port = &e.port;
                let target = format!(
                    "{} {}:{} (in on {})",
                    port.transport,
                    bracketed(e.dialed),
                    port.host_port,
                    e.interface
                );
                match &e.unknown {
                    Some(reason) => format!("cannot tell who reaches {target}: {reason}"),
                    None => {
                        let nets: Vec<String> =
                            e.not_allowed.iter().map(ToString::to_string).collect();
                        format!(
                            "{target} is reachable beyond the policy from {}",
                            nets.join(", ")
                        )
                    }
                }
            })
            .collect()
    }

    /// The report for a person.
    pub fn human(&self) -> String {
        let mut text = String::new();
        if self.ports.is_empty() {
            text.push_str(
                "no published ports (no DNAT rules from Docker, no docker-proxy listening)\n",
            );
        } else if self.exposures.is_empty() {
            text.push_str(&format!(
                "published ports ({}) not evaluated: no external interface with an address to evaluate them from\n",
                self.port_summary()
            ));
        }
        for exposure in &self.exposures {
            let port = &exposure.port;
            let container = match (port.container_address, port.container_port) {
                (Some(a), Some(p)) if a.is_ipv6() => format!("[{a}]:{p}"),
                (Some(a), Some(p)) => format!("{a}:{p}"),
                (Some(a), None) => a.to_string(),
                (None, _) => "?".to_owned(),
            };
            let dialed = bracketed(exposure.dialed);
            let verdict = if !exposure.not_allowed.is_empty() {
                "  NOT ALLOWED BY THE POLICY"
            } else if exposure.unknown.is_some() {
                "  UNDECIDED"
            } else if exposure.allowed.is_some() {
                "  ok"
            } else {
                ""
            };
            let via = match port.path {
                PortPath::Dnat => "",
                PortPath::DockerProxy => " via docker-proxy",
            };
            text.push_str(&format!(
                "{} {dialed}:{} -> {container}{via} (in on {}): {}{verdict}\n",
                port.transport,
                port.host_port,
                exposure.interface,
                describe(exposure.reach.as_ref()),
            ));
            if let Some(allowed) = &exposure.allowed {
                text.push_str(&format!("    policy allows: {}\n", describe(Some(allowed))));
            }
            if !exposure.not_allowed.is_empty() {
                let nets: Vec<String> = exposure
                    .not_allowed
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                text.push_str(&format!(
                    "    reachable beyond the policy from: {}\n",
                    nets.join(", ")
                ));
            }
            if let Some(reason) = &exposure.unknown {
                text.push_str(&format!("    cannot tell: {reason}\n"));
            }
            for rule in &exposure.decided_by {
                text.push_str(&format!("    decided by {rule}\n"));
            }
        }
        if self.policy.is_none() {
            text.push_str("no policy to compare with: reachability only\n");
        }
        text
    }
}

/// An address as it is written before `:PORT`.
fn bracketed(address: IpAddr) -> String {
    if address.is_ipv6() {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

fn describe(reach: Option<&Reach>) -> String {
    match reach {
        None => "reachability unknown".to_owned(),
        Some(Reach::Anywhere) => "reachable from anywhere".to_owned(),
        Some(Reach::Nowhere) => "reachable from nowhere".to_owned(),
        Some(Reach::Only(nets)) => {
            let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
            format!("reachable only from {}", nets.join(", "))
        }
    }
}

/// Audits the rulesets of both families (`(family, ruleset)`) from `interfaces`. An
/// interface the host does not have cannot be evaluated from: its entries say so and
/// are flagged (a policy naming one does not mean what its author thinks).
pub fn audit(
    rulesets: &[(Family, Ruleset)],
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

/// `audit` on the live host: both families' rulesets, the policy at `policy_path` when
/// there is one.
pub fn audit_live(
    firewall: &dyn LiveFirewall,
    host: &HostNet,
    probe: &dyn HostProbe,
    policy_path: &Path,
) -> anyhow::Result<AuditReport> {
    let rulesets = Family::ALL
        .into_iter()
        .map(|family| Ok((family, live::ruleset(firewall, family)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = if policy_path.exists() {
        Some(Policy::load(policy_path)?)
    } else {
        None
    };
    let interfaces = audit_interfaces(host, probe, policy.as_ref());
    Ok(audit(&rulesets, host, &interfaces, policy.as_ref()))
}

/// The source port `explain` gives its packet (no rule of ours matches source ports).
const EXPLAIN_SOURCE_PORT: u16 = 40000;

/// `explain` on the live host: the walk of a packet from `from` to `to`, arriving on
/// `in_interface` (default: the interface the host routes `from` through).
pub fn explain_live(
    firewall: &dyn LiveFirewall,
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
    let ruleset = live::ruleset(firewall, family)?;
    Ok(walk::walk(
        &ruleset,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::dump;

    const RULES: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.17.0.2:9090\n-A DOCKER -d 203.0.113.10/32 ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.2:53\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n-A DOCKER -d 172.17.0.2/32 -o docker0 -j ACCEPT\n-A DOCKER-USER -s 192.0.2.0/25 -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -m iprange --src-range 198.51.100.10-198.51.100.20 -m conntrack --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -p udp -j RETURN\n-A DOCKER-USER -i eth0 -o docker0 -j DROP\nCOMMIT\n";

    fn host() -> HostNet {
        crate::host::net::docker_test_host()
    }

    fn exposures(policy: Option<&Policy>) -> Vec<Exposure> {
        let ruleset = Ruleset::new(&dump::parse(RULES).unwrap());
        let audited = AuditedRuleset::new(Family::Ipv4, &ruleset, &host());
        published_ports(&ruleset, Family::Ipv4)
            .iter()
            .filter_map(|p| audited.expose(&host(), p, "eth0", policy))
            .collect()
    }

    #[test]
    fn published_ports_come_from_the_dnat_rules() {
        let ruleset = Ruleset::new(&dump::parse(RULES).unwrap());
        let ports = published_ports(&ruleset, Family::Ipv4);
        let summary: Vec<(u16, Transport, Option<IpAddr>, Option<u16>)> = ports
            .iter()
            .map(|p| (p.host_port, p.transport, p.host_address, p.container_port))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    5353,
                    Transport::Udp,
                    Some("203.0.113.10".parse().unwrap()),
                    Some(53)
                ),
                (8080, Transport::Tcp, None, Some(80)),
                (9090, Transport::Tcp, None, Some(9090)),
            ]
        );
    }

    #[test]
    fn reach_is_computed_exactly_from_the_rules() {
        let found = exposures(None);
        assert_eq!(
            found[0].reach,
            Some(Reach::Anywhere),
            "udp is let through for all"
        );
        let web: Vec<String> = match &found[1].reach {
            Some(Reach::Only(nets)) => nets.iter().map(ToString::to_string).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            web,
            [
                "192.0.2.0/25",
                "198.51.100.10/31",
                "198.51.100.12/30",
                "198.51.100.16/30",
                "198.51.100.20/32"
            ]
        );
        assert_eq!(found[2].reach, Some(Reach::Nowhere));
        assert!(
            found[2]
                .decided_by
                .iter()
                .any(|d| d.contains("-A DOCKER-USER -i eth0 -o docker0 -j DROP")),
            "{:?}",
            found[2].decided_by
        );
    }

    #[test]
    fn sources_beyond_the_policy_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[interfaces]\nexternal = [\"eth0\"]\n[[docker.published]]\nport = 8080\nfrom = [\"192.0.2.0/24\"]\n").unwrap();
        let policy = Policy::load(&path).unwrap();
        let found = exposures(Some(&policy));
        // udp 5353: open to all, the policy lists nothing for it.
        assert!(found[0].is_flagged());
        assert_eq!(
            found[0].not_allowed,
            ["0.0.0.0/0".parse::<IpNet>().unwrap()]
        );
        // 8080: the /25 is inside the allowed /24, the iprange is not.
        assert_eq!(found[1].not_allowed.len(), 4);
        assert!(
            found[1]
                .not_allowed
                .iter()
                .all(|n| n.to_string().starts_with("198.51.100."))
        );
        // 9090: reachable from nowhere, nothing to flag.
        assert!(!found[2].is_flagged());
    }

    #[test]
    fn the_audit_of_a_dag_of_jumps_is_decided_for_every_port() {
        // Two published ports, and FORWARD's jumps a DAG 12 chains deep, 8 wide: each
        // port's source space is cut in 7 pieces, one walk each, every walk linear.
        let text = format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 172.17.0.2:443\nCOMMIT\n{}",
            walk::jump_dag(12, 8)
        );
        let report = walk::within_a_minute("the audit of a 12 x 8 DAG", move || {
            let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
            audit(
                &[(Family::Ipv4, ruleset)],
                &host(),
                &["eth0".to_owned()],
                None,
            )
        });
        assert_eq!(report.exposures.len(), 2);
        for exposure in &report.exposures {
            assert_eq!(
                exposure.reach,
                Some(Reach::Only(vec!["192.0.2.0/24".parse().unwrap()])),
                "{exposure:#?}"
            );
            assert_eq!(exposure.unknown, None);
        }
    }
}
