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
//! This file owns the flows (`audit`, `audit_live`, `explain_live`) and the choice of
//! interfaces to look from; `published.rs` what Docker publishes (its DNAT rules are
//! read by [`crate::iptables::docker`]), `reach.rs` the reachability judgement and
//! `report.rs` the report and its rendering.

mod published;
mod reach;
mod report;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::family::Family;
use crate::host::HostProbe;
use crate::host::net::HostNet;
use crate::iptables::live::{self, LiveFirewall};
use crate::iptables::walk::{self, Ruleset, Walk};
use crate::packet::{Endpoint, Packet};
use crate::policy::{ExternalInterfaces, Policy};

pub use crate::iptables::docker::published_ports;
pub use published::{PortPath, PublishedPort, proxy_ports};
pub use reach::{AuditedRuleset, Exposure, Reach};
pub use report::AuditReport;

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
    use ipnet::IpNet;

    use super::*;
    use crate::iptables::dump;
    use crate::packet::Transport;

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
