//! Each lint's judgement over the gathered [`Facts`]: plain functions of plain values,
//! tested on them. A finding names the policy file, line and field, or the live rule,
//! and what Docker publishes that makes it wrong.

use crate::audit::{PortPath, PublishedPort};
use crate::backend::{FamilyState, PortRule, RulePlace};
use crate::control::InterfaceProblem;
use crate::family::Family;
use crate::policy::types::FamilyChoice;
use crate::policy::{DockerDefault, Policy, Published, RawChain};

use super::{Facts, Finding, Lint, Skips};

/// How many lines of a kind a finding quotes.
const QUOTED: usize = 3;

/// What the lints find in `facts`, less those `skips` names, in the registry's order.
pub(crate) fn judge(facts: &Facts<'_>, skips: &Skips) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(policy) = facts.policy {
        findings.extend(policy_ports_in_input(
            policy,
            &facts.published,
            &facts.raw_ports,
        ));
        findings.extend(raw_dports_in_docker_user(
            policy,
            &facts.published,
            &facts.raw_ports,
        ));
        findings.extend(ipv6_without_ipv6_sources(
            policy,
            &facts.published,
            facts.dialable_ipv6,
        ));
        findings.extend(uncovered_bridges(policy, &facts.docker_bridges));
    }
    findings.extend(foreign_port_rules(&facts.published, &facts.foreign_rules));
    findings.extend(facts.interfaces.iter().map(interface_finding));
    findings.extend(facts.variant_conflicts.iter().map(|conflict| {
        Finding::with_fix(
            Lint::IptablesVariantMismatch,
            conflict.found.clone(),
            conflict.advice.clone(),
        )
    }));
    if let Some(other) = &facts.other_variant {
        let program = other.save_program.trim_end_matches("-save");
        findings.push(Finding::with_fix(
            Lint::RulesInOtherVariant,
            format!(
                "the {} tables hold {} rule(s) beside the ones in force ({} lists them): {}",
                other.variant,
                other.rules.len(),
                other.save_program,
                quoted(&other.rules)
            ),
            format!(
                "once nothing loads them, remove them with {program} (e.g. `{program} -F`, and `-P CHAIN ACCEPT` for a chain whose policy is not ACCEPT), and the same with ip6tables"
            ),
        ));
    }
    for state in facts.live.iter().flat_map(|live| &live.families) {
        findings.extend(drift(state));
        findings.extend(forward_not_first(state));
    }
    findings.retain(|f| !skips.skips(f.lint));
    findings.sort_by_key(|f| f.lint);
    findings
}

/// Up to [`QUOTED`] of `lines` in backquotes, and how many more there are.
fn quoted(lines: &[String]) -> String {
    let mut text: Vec<String> = lines
        .iter()
        .take(QUOTED)
        .map(|l| format!("`{l}`"))
        .collect();
    if lines.len() > QUOTED {
        text.push(format!("and {} more", lines.len() - QUOTED));
    }
    text.join(", ")
}

/// The family a published port is of.
fn family_of(port: &PublishedPort) -> Option<Family> {
    Family::from_name(&port.family)
}

/// `port` as a finding names it: `8080/tcp (IPv4, DNAT to 172.17.0.2:80)`.
fn describe(port: &PublishedPort) -> String {
    let how = match port.path {
        PortPath::Dnat => match (port.container_address, port.container_port) {
            (Some(address), Some(to)) => {
                format!("DNAT to {}", std::net::SocketAddr::new(address, to))
            }
            _ => "DNAT".to_owned(),
        },
        PortPath::DockerProxy => "served by docker-proxy on the host".to_owned(),
    };
    format!(
        "{}/{} ({}, {how})",
        port.host_port, port.transport, port.family
    )
}

/// The published ports a rule of `family_choice` that `matches` sees.
fn hits(
    published: &[PublishedPort],
    family_choice: FamilyChoice,
    matches: impl Fn(&PublishedPort) -> bool,
) -> Vec<&PublishedPort> {
    published
        .iter()
        .filter(|p| family_of(p).is_some_and(|f| family_choice.includes(f)))
        .filter(|p| matches(p))
        .collect()
}

/// The published ports a host-side rule of `family_choice` that `matches` decides
/// nothing for: those Docker publishes on every address. A port published on one
/// address (`-d`, such as 127.0.0.1 or a second IP) leaves the host's other addresses
/// to INPUT, where the same port may well be a host service.
fn host_side_hits(
    published: &[PublishedPort],
    family_choice: FamilyChoice,
    matches: impl Fn(&PublishedPort) -> bool,
) -> Vec<&PublishedPort> {
    hits(published, family_choice, |p| {
        p.host_address.is_none() && matches(p)
    })
}

/// What a host-side rule on `hit` ports means, for the finding.
fn input_consequence(hits: &[&PublishedPort]) -> &'static str {
    if hits.iter().all(|p| p.path == PortPath::Dnat) {
        "its connections are DNATed to a container before INPUT, so this decides nothing for them"
    } else {
        "where docker-proxy serves it this widens who reaches it beyond [[docker.published]]; where Docker DNATs it this decides nothing"
    }
}

fn list(hits: &[&PublishedPort]) -> String {
    hits.iter()
        .map(|p| describe(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `[[host.services]]` entries and input `[[raw]]` rules on ports Docker publishes.
fn policy_ports_in_input(
    policy: &Policy,
    published: &[PublishedPort],
    raw_ports: &[(usize, PortRule)],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, service) in policy.host.services.iter().enumerate() {
        let found = host_side_hits(published, service.family, |p| {
            p.transport == service.proto.transport() && service.port.get_ref().contains(p.host_port)
        });
        if found.is_empty() {
            continue;
        }
        findings.push(Finding::new(
            Lint::PublishedPortInInput,
            format!(
                "{} opens a port Docker publishes, {}: {}",
                policy.place(service.port.span(), &format!("host.services[{i}].port")),
                list(&found),
                input_consequence(&found)
            ),
        ));
    }
    for (i, rule) in raw_ports {
        let Some(entry) = policy.raw.get(*i) else {
            continue;
        };
        if entry.chain != RawChain::Input || rule.place != RulePlace::Host {
            continue;
        }
        let found = hits(published, entry.family, |p| {
            rule.matches(p.transport, p.host_port)
        });
        if found.is_empty() {
            continue;
        }
        findings.push(Finding::new(
            Lint::PublishedPortInInput,
            format!(
                "{} matches a port Docker publishes, {}: {}",
                policy.place(entry.rule.span(), &format!("raw[{i}].rule")),
                list(&found),
                input_consequence(&found)
            ),
        ));
    }
    findings
}

/// The DNATed ports whose container port differs from the host port: a `--dport` on
/// the host port never sees them in DOCKER-USER.
fn remapped<'p>(
    published: &'p [PublishedPort],
    family_choice: FamilyChoice,
    rule: &PortRule,
) -> Vec<&'p PublishedPort> {
    if rule.aims_at_destination {
        // `-d` or `-o` picks a container: --dport on its port is what was meant.
        return Vec::new();
    }
    hits(published, family_choice, |p| {
        p.path == PortPath::Dnat
            && p.container_port.is_some_and(|to| to != p.host_port)
            && rule.matches(p.transport, p.host_port)
    })
}

fn docker_user_message(rule: &str, found: &[&PublishedPort]) -> String {
    let [first, ..] = found else {
        return String::new();
    };
    format!(
        "{rule} matches --dport {port} in DOCKER-USER, but Docker publishes {}: after DNAT the rule sees the container port{}, so it never matches the connections dialed to {port}",
        list(found),
        first
            .container_port
            .map(|to| format!(" ({to})"))
            .unwrap_or_default(),
        port = first.host_port,
    )
}

fn docker_user_fix(found: &[&PublishedPort]) -> String {
    let [first, ..] = found else {
        return String::new();
    };
    format!(
        "match the port the client dialed: list {}/{} under [[docker.published]], or use `-m conntrack --ctorigdstport {}` instead of --dport",
        first.host_port, first.transport, first.host_port
    )
}

/// docker-user `[[raw]]` rules with `--dport` on a remapped published port.
fn raw_dports_in_docker_user(
    policy: &Policy,
    published: &[PublishedPort],
    raw_ports: &[(usize, PortRule)],
) -> Vec<Finding> {
    raw_ports
        .iter()
        .filter_map(|(i, rule)| {
            let entry = policy.raw.get(*i)?;
            if entry.chain != RawChain::DockerUser || rule.place != RulePlace::DockerUser {
                return None;
            }
            let found = remapped(published, entry.family, rule);
            (!found.is_empty()).then(|| {
                Finding::with_fix(
                    Lint::DportInDockerUser,
                    docker_user_message(
                        &policy.place(entry.rule.span(), &format!("raw[{i}].rule")),
                        &found,
                    ),
                    docker_user_fix(&found),
                )
            })
        })
        .collect()
}

/// Live rules that iptables-ctl did not render, in INPUT or DOCKER-USER, on ports
/// Docker publishes.
fn foreign_port_rules(
    published: &[PublishedPort],
    foreign: &[(Family, String, PortRule)],
) -> Vec<Finding> {
    foreign
        .iter()
        .filter_map(|(family, text, rule)| {
            let choice = match family {
                Family::Ipv4 => FamilyChoice::Ipv4,
                Family::Ipv6 => FamilyChoice::Ipv6,
            };
            let rule_text = format!("{family}: `{text}` (not in the rendered files)");
            match rule.place {
                RulePlace::Host => {
                    let found = hits(published, choice, |p| {
                        rule.matches(p.transport, p.host_port)
                    });
                    (!found.is_empty()).then(|| {
                        Finding::new(
                            Lint::PublishedPortInInput,
                            format!(
                                "{rule_text} matches a port Docker publishes, {}: {}",
                                list(&found),
                                input_consequence(&found)
                            ),
                        )
                    })
                }
                RulePlace::DockerUser => {
                    let found = remapped(published, choice, rule);
                    (!found.is_empty()).then(|| {
                        Finding::with_fix(
                            Lint::DportInDockerUser,
                            docker_user_message(&rule_text, &found),
                            docker_user_fix(&found),
                        )
                    })
                }
            }
        })
        .collect()
}

/// The family choices of `entry` that admit `family`'s sources.
fn allows_sources_of(policy: &Policy, entry: &Published, family: Family) -> bool {
    entry.family.includes(family)
        && entry
            .from
            .as_ref()
            .is_none_or(|from| !policy.expand_family(from.get_ref(), family).is_empty())
}

/// Ports Docker publishes on IPv6 whose entries allow IPv4 sources only, when IPv4-only
/// was not said (`family = "ipv4"`). docker-proxy listens on `[::]` for every published
/// port under Docker's default setup; that counts only on a host with an IPv6 address
/// clients could dial (`dialable_ipv6`).
fn ipv6_without_ipv6_sources(
    policy: &Policy,
    published: &[PublishedPort],
    dialable_ipv6: bool,
) -> Vec<Finding> {
    if policy.docker.default == DockerDefault::Allow {
        return Vec::new();
    }
    let mut findings = Vec::new();
    let mut seen = Vec::new();
    for port in published.iter().filter(|p| {
        family_of(p) == Some(Family::Ipv6) && (p.path == PortPath::Dnat || dialable_ipv6)
    }) {
        if seen.contains(&(port.host_port, port.transport)) {
            continue;
        }
        seen.push((port.host_port, port.transport));
        let entries: Vec<(usize, &Published)> = policy
            .docker
            .published
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.proto.transport() == port.transport && e.port.get_ref().contains(port.host_port)
            })
            .collect();
        let deliberate = entries.iter().any(|(_, e)| e.family == FamilyChoice::Ipv4);
        let allows_v6 = entries
            .iter()
            .any(|(_, e)| allows_sources_of(policy, e, Family::Ipv6));
        let Some((i, first)) = entries.first() else {
            continue;
        };
        if deliberate || allows_v6 {
            continue;
        }
        let span = first
            .from
            .as_ref()
            .map_or_else(|| first.port.span(), |from| from.span());
        findings.push(Finding::new(
            Lint::Ipv6PublishedWithoutIpv6Sources,
            format!(
                "{} allows {}/{} from IPv4 sources only, but Docker publishes it on IPv6 too, {}: every IPv6 client is refused",
                policy.place(span, &format!("docker.published[{i}].from")),
                port.host_port,
                port.transport,
                describe(port)
            ),
        ));
    }
    findings
}

/// The bridges Docker's live rules name that the policy's `docker_bridges` do not cover.
fn uncovered_bridges(policy: &Policy, bridges: &[(Family, String)]) -> Vec<Finding> {
    bridges
        .iter()
        .filter(|(_, bridge)| !policy.is_docker_bridge(bridge))
        .map(|(family, bridge)| {
            Finding::new(
                Lint::BridgeOutsideDockerBridges,
                format!(
                    "{family}: Docker's bridge {bridge} (from its FORWARD rules) is outside interfaces.docker_bridges in {}: its published ports are refused like any other, but new connections routed straight to its containers are not",
                    policy.path().display()
                ),
            )
        })
        .collect()
}

fn interface_finding(problem: &InterfaceProblem) -> Finding {
    let lint = match problem {
        InterfaceProblem::Missing(_) | InterfaceProblem::Unreadable(_) => Lint::MissingInterface,
        InterfaceProblem::BridgeIsUplink(_) | InterfaceProblem::RoutesUnreadable(_) => {
            Lint::BridgePatternMatchesUplink
        }
    };
    Finding::new(lint, problem.to_string())
}

/// The owned chains of one family hold other rules than the rendered ones.
fn drift(state: &FamilyState) -> Option<Finding> {
    let sets: Vec<String> = state
        .sets
        .iter()
        .filter(|set| !set.matches())
        .map(ToString::to_string)
        .collect();
    if state.rules_match && sets.is_empty() {
        return None;
    }
    if state.rules_match {
        return Some(Finding::new(
            Lint::Drift,
            format!("{}: {}", state.family, sets.join("; ")),
        ));
    }
    let mut message = if state.reordered {
        format!(
            "{}: the rendered rules are live in another order",
            state.family
        )
    } else {
        let mut message = format!(
            "{}: the live rules differ from the rendered ones ({} missing, {} unexpected)",
            state.family,
            state.missing.len(),
            state.unexpected.len()
        );
        if !state.unexpected.is_empty() {
            message.push_str(&format!("; unexpected: {}", quoted(&state.unexpected)));
        }
        message
    };
    for set in sets {
        message.push_str(&format!("; {set}"));
    }
    Some(Finding::new(Lint::Drift, message))
}

/// FORWARD does not send traffic to DOCKER-USER first in one family.
fn forward_not_first(state: &FamilyState) -> Option<Finding> {
    let message = match (&state.docker_user_first, &state.forward_first) {
        (Some(true), _) => return None,
        (Some(false), Some(first)) => format!(
            "{}: FORWARD's first rule is `{first}`, not the jump to DOCKER-USER: what it decides never meets the policy",
            state.family
        ),
        _ => format!(
            "{}: FORWARD does not jump to DOCKER-USER: forwarded traffic never meets the policy",
            state.family
        ),
    };
    Some(Finding::new(Lint::ForwardNotFirst, message))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::*;
    use crate::packet::Transport;

    const POLICY: &str = r#"
[[host.services]]
port = 22

[[docker.published]]
port = 8080
from = ["192.0.2.7", "2001:db8::7"]
"#;

    fn policy(extra: &str) -> Policy {
        Policy::parse(
            Path::new("base.toml"),
            format!("{POLICY}{extra}").as_bytes(),
        )
        .unwrap()
    }

    /// Docker publishing `host_port` to container port 80, by DNAT in IPv4 and through
    /// docker-proxy in IPv6 (Docker's default setup).
    fn published(host_port: u16) -> Vec<PublishedPort> {
        let port = |family: Family, path: PortPath| PublishedPort {
            family: family.to_string(),
            path,
            transport: Transport::Tcp,
            host_address: None,
            host_port,
            container_address: Some("172.17.0.2".parse::<IpAddr>().unwrap()),
            container_port: Some(80),
            rule: String::new(),
        };
        vec![
            port(Family::Ipv4, PortPath::Dnat),
            port(Family::Ipv6, PortPath::DockerProxy),
        ]
    }

    fn names(policy: &Policy, facts: Facts<'_>) -> Vec<&'static str> {
        judge(
            &Facts {
                policy: Some(policy),
                ..facts
            },
            &policy.lint_skips(),
        )
        .iter()
        .map(|f| f.lint.name())
        .collect()
    }

    fn raw(policy: &Policy) -> Vec<(usize, PortRule)> {
        super::super::facts::raw_port_rules(policy)
    }

    #[test]
    fn a_correct_policy_for_what_docker_publishes_has_nothing_to_say() {
        let policy = policy("");
        let facts = Facts {
            published: [published(8080), published(9090)].concat(),
            ..Facts::default()
        };
        assert!(names(&policy, facts).is_empty());
    }

    #[test]
    fn host_side_rules_on_a_published_port_are_found_with_their_place() {
        let policy = policy(
            "\n[[host.services]]\nport = [9000, \"9090-9099\"]\n\n[[raw]]\nchain = \"input\"\nrule = \"-p udp --dport 9090 -j ACCEPT\"\n\n[[raw]]\nchain = \"input\"\nrule = \"-p tcp -m multiport --dports 9090,9443 -j ACCEPT\"\n",
        );
        let facts = Facts {
            published: published(9090),
            raw_ports: raw(&policy),
            ..Facts::default()
        };
        let found = judge(
            &Facts {
                policy: Some(&policy),
                ..facts
            },
            &Skips::default(),
        );
        // The udp rule matches no tcp port Docker publishes.
        let lines: Vec<String> = found.iter().map(Finding::line).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("base.toml:10: host.services[1].port opens a port Docker publishes, 9090/tcp (IPv4, DNAT to 172.17.0.2:80), 9090/tcp (IPv6, served by docker-proxy on the host)"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("base.toml:18: raw[1].rule matches"),
            "{}",
            lines[1]
        );
        assert!(found.iter().all(|f| f.lint == Lint::PublishedPortInInput
            && f.severity == super::super::Severity::Warning));
    }

    #[test]
    fn a_dport_in_docker_user_is_found_only_where_docker_maps_the_port_elsewhere() {
        let policy =
            policy("\n[[raw]]\nchain = \"docker-user\"\nrule = \"-p tcp --dport 9090 -j DROP\"\n");
        let facts = |published| Facts {
            published,
            raw_ports: raw(&policy),
            ..Facts::default()
        };
        assert_eq!(
            names(&policy, facts(published(9090))),
            ["dport-in-docker-user"]
        );
        // 80 -> 80: --dport sees the port that was dialed.
        let mut same = published(9090);
        for port in &mut same {
            port.container_port = Some(9090);
        }
        assert!(names(&policy, facts(same)).is_empty());
    }

    /// A port Docker publishes on one address (a second IP, or 127.0.0.1) leaves the
    /// host's other addresses to INPUT, where the same port may be a host service.
    #[test]
    fn a_port_published_on_one_address_leaves_the_host_service_alone() {
        let policy = policy("");
        let mut on_one_address = published(22);
        for port in &mut on_one_address {
            port.host_address = Some("10.0.0.5".parse().unwrap());
        }
        let facts = Facts {
            published: on_one_address,
            ..Facts::default()
        };
        assert!(names(&policy, facts).is_empty());
        let facts = Facts {
            published: published(22),
            ..Facts::default()
        };
        assert_eq!(names(&policy, facts), ["published-port-in-input"]);
    }

    #[test]
    fn rules_added_by_hand_are_judged_like_the_policys() {
        let policy = policy("");
        let foreign = [
            "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
            "-A DOCKER-USER -p tcp -m tcp --dport 8080 -j DROP",
            "-A INPUT -p tcp -m tcp ! --dport 8080 -j DROP",
        ]
        .iter()
        .filter_map(|line| {
            Some((
                Family::Ipv4,
                (*line).to_owned(),
                crate::iptables::live::port_rule(line)?,
            ))
        })
        .collect();
        let facts = Facts {
            published: published(8080),
            foreign_rules: foreign,
            ..Facts::default()
        };
        assert_eq!(
            names(&policy, facts),
            ["published-port-in-input", "dport-in-docker-user"]
        );
    }

    #[test]
    fn ipv6_published_ports_need_ipv6_sources_unless_ipv4_only_is_said() {
        let text = POLICY.replace(", \"2001:db8::7\"", "");
        let parse = |text: &str| Policy::parse(Path::new("base.toml"), text.as_bytes()).unwrap();
        let facts = || Facts {
            published: published(8080),
            dialable_ipv6: true,
            ..Facts::default()
        };
        assert_eq!(
            names(&parse(&text), facts()),
            ["ipv6-published-without-ipv6-sources"]
        );
        // docker-proxy listens on [::] on a host no IPv6 client can dial, too.
        let no_ipv6 = Facts {
            dialable_ipv6: false,
            ..facts()
        };
        assert!(names(&parse(&text), no_ipv6).is_empty());
        let deliberate = text.replace("port = 8080", "port = 8080\nfamily = \"ipv4\"");
        assert!(names(&parse(&deliberate), facts()).is_empty());
        // A list with IPv6 networks counts as IPv6 sources.
        let listed = text.replace("from = [\"192.0.2.7\"]", "from = [\"office\"]")
            + "\n[lists]\noffice = [\"192.0.2.0/24\", \"2001:db8::/64\"]\n";
        assert!(names(&parse(&listed), facts()).is_empty());
        // A warning the policy skips is not reported.
        let skipped =
            format!("{text}\n[lints]\nskip = [\"ipv6-published-without-ipv6-sources\"]\n");
        assert!(names(&parse(&skipped), facts()).is_empty());
    }

    #[test]
    fn an_error_lint_in_the_policy_skip_list_is_refused_where_it_is_written() {
        let err = Policy::parse(Path::new("base.toml"), b"[lints]\nskip = [\"drift\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("base.toml:2:") && err.contains("lint drift cannot be skipped"),
            "{err}"
        );
    }

    #[test]
    fn drift_and_forward_are_read_from_the_live_state() {
        let state = FamilyState {
            family: "IPv6".to_owned(),
            in_force: false,
            rules_match: false,
            missing: Vec::new(),
            unexpected: vec!["-A INPUT -j ACCEPT".to_owned()],
            reordered: false,
            docker_user_first: Some(false),
            forward_first: Some("-A FORWARD -j ACCEPT".to_owned()),
            forward_repair: None,
            sets: Vec::new(),
        };
        // The same rules, but a set that lost members and one that is gone.
        let sets_only = FamilyState {
            family: "IPv4".to_owned(),
            in_force: false,
            rules_match: true,
            unexpected: Vec::new(),
            docker_user_first: Some(true),
            forward_first: None,
            sets: vec![
                crate::backend::SetContents {
                    name: "ictl.base.customers.v4".to_owned(),
                    expected: 100,
                    live: Some(99),
                    missing: 2,
                    unexpected: 1,
                },
                crate::backend::SetContents {
                    name: "ictl.base.partners.v4".to_owned(),
                    expected: 70,
                    live: None,
                    missing: 70,
                    unexpected: 0,
                },
            ],
            ..state.clone()
        };
        let live = crate::backend::LiveState {
            variant: None,
            families: vec![state, sets_only],
        };
        let found = judge(
            &Facts {
                live: Some(&live),
                ..Facts::default()
            },
            &Skips::default(),
        );
        let lines: Vec<String> = found.iter().map(Finding::line).collect();
        assert_eq!(found.len(), 3, "{lines:#?}");
        assert!(
            lines[0].contains("IPv6: FORWARD's first rule is `-A FORWARD -j ACCEPT`")
                && lines[0].ends_with("[forward-not-first]"),
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("(0 missing, 1 unexpected); unexpected: `-A INPUT -j ACCEPT`"),
            "{lines:#?}"
        );
        assert!(
            lines[2].contains("IPv4: the set ictl.base.customers.v4 holds 99 members, 2 of the 100 rendered missing and 1 unexpected; the set ictl.base.partners.v4 is missing (70 members rendered)")
                && lines[2].ends_with("[drift]"),
            "{lines:#?}"
        );
    }
}
