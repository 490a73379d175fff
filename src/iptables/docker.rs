//! The ports Docker publishes, as its iptables rules say: the DNAT rules reachable
//! from nat PREROUTING, read into the audit's backend-neutral [`PublishedPort`]. The
//! tests here also hold the exposure audit ([`crate::audit`]) of Docker's iptables
//! rules: the published ports, who reaches them, and what the policy allows.

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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use ipnet::IpNet;

    use super::*;
    use crate::audit::{AuditedRuleset, Exposure, Reach, audit};
    use crate::host::net::{HostNet, SetMembers};
    use crate::iptables::{dump, walk};
    use crate::policy::Policy;

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

    /// A set-based allowlist of thousands of entries, beside a rule of its own: every
    /// member's edges (first, last, and the addresses just outside) get exactly what
    /// the rules say. The audit walks one address per class of pieces, not per piece.
    #[test]
    fn the_reach_through_a_large_ipset_is_exact_at_every_member_edge() {
        let text = RULES.replace(
            "-A DOCKER-USER -s 192.0.2.0/25 -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n",
            "-A DOCKER-USER -m set --match-set customers src -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -s 192.0.2.0/25 -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n",
        );
        let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
        // 5,000 members: every third /32 of 10.0.0.0/16 and a few networks.
        let members: Vec<IpNet> = (0u32..5000)
            .map(|i| IpNet::from(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i * 3))))
            .chain([
                "172.16.0.0/12".parse().unwrap(),
                "10.200.0.0/16".parse().unwrap(),
            ])
            .collect();
        let mut host = host();
        host.sets
            .insert("customers".to_owned(), members.iter().copied().collect());
        let audited = AuditedRuleset::new(Family::Ipv4, &ruleset, &host);
        let port = published_ports(&ruleset, Family::Ipv4)
            .into_iter()
            .find(|p| p.host_port == 8080)
            .unwrap();
        let exposure = audited.expose(&host, &port, "eth0", None).unwrap();
        let Some(Reach::Only(reach)) = &exposure.reach else {
            panic!("{exposure:#?}");
        };
        // Both sides as sorted ranges, so the check itself stays linear.
        let reached: SetMembers = reach.iter().copied().collect();
        let allowed: SetMembers = members
            .iter()
            .copied()
            .chain(
                [
                    "192.0.2.0/25",
                    "198.51.100.10/31",
                    "198.51.100.12/30",
                    "198.51.100.16/30",
                    "198.51.100.20/32",
                ]
                .map(|n| n.parse::<IpNet>().unwrap()),
            )
            .collect();
        let mut probes = 0;
        for net in &members {
            let (IpAddr::V4(first), IpAddr::V4(last)) = (net.network(), net.broadcast()) else {
                unreachable!("IPv4 members")
            };
            let (first, last) = (u32::from(first), u32::from(last));
            for a in [first.saturating_sub(1), first, last, last.saturating_add(1)] {
                let a = IpAddr::V4(a.into());
                assert_eq!(reached.contains(a), allowed.contains(a), "{a}");
                probes += 1;
            }
        }
        assert_eq!(probes, 4 * members.len());
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
