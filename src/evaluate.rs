//! Walks the first packet of a new connection through a parsed ruleset as the kernel
//! would: raw PREROUTING, mangle PREROUTING, nat PREROUTING (where DNAT rewrites the
//! destination), the routing decision, then mangle and filter INPUT or FORWARD, with
//! jumps, gotos, returns and chain policies. Every rule that decides something is
//! recorded, so the walk doubles as an explanation.
//!
//! A match or target the model does not understand never becomes a guess: when such a
//! rule could match, the verdict is [`Verdict::Unknown`] naming the rule.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::hostnet::HostNet;
use crate::iptables::dump::Dump;
use crate::iptables::rule::{self, CtState, Match, Neg, Proto, Rule, SetDirection, Target};
use crate::policy::types::interface_pattern_matches;

/// How deep jumps may nest before the walk gives up (the kernel allows no loops).
const MAX_DEPTH: usize = 64;

/// The transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP (the first packet is a SYN).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// The first packet of a connection arriving at the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// Source address.
    pub source: IpAddr,
    /// Destination address, as the client dialed it.
    pub destination: IpAddr,
    /// Protocol.
    pub transport: Transport,
    /// Source port.
    pub source_port: u16,
    /// Destination port, as the client dialed it.
    pub destination_port: u16,
    /// The interface it arrives on.
    pub in_interface: String,
}

/// A parsed ruleset of one family: every table's chains, rules and policies.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    tables: HashMap<String, ParsedTable>,
}

#[derive(Debug, Clone, Default)]
struct ParsedTable {
    policies: HashMap<String, Option<String>>,
    chains: HashMap<String, Vec<Rule>>,
}

impl Ruleset {
    /// Parses every rule of a dump.
    pub fn new(dump: &Dump) -> Ruleset {
        let mut tables = HashMap::new();
        for table in &dump.tables {
            let mut parsed = ParsedTable::default();
            for chain in &table.chains {
                parsed
                    .policies
                    .insert(chain.name.clone(), chain.policy.clone());
                parsed.chains.entry(chain.name.clone()).or_default();
            }
            for line in &table.rules {
                parsed
                    .chains
                    .entry(line.chain.clone())
                    .or_default()
                    .push(rule::parse(line));
            }
            tables.insert(table.name.clone(), parsed);
        }
        Ruleset { tables }
    }

    /// The rules of `table`'s `chain`, in order (empty when absent).
    pub fn rules(&self, table: &str, chain: &str) -> &[Rule] {
        self.tables
            .get(table)
            .and_then(|t| t.chains.get(chain))
            .map_or(&[], Vec::as_slice)
    }

    /// Names of the chains of `table`.
    pub fn chains(&self, table: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .tables
            .get(table)
            .map(|t| t.chains.keys().map(String::as_str).collect())
            .unwrap_or_default();
        names.sort_unstable();
        names
    }
}

/// What happens to the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Accepted: it reaches the host or the container.
    Accept,
    /// Dropped silently.
    Drop,
    /// Rejected (the client gets a reset or an ICMP error).
    Reject {
        /// `--reject-with`.
        with: String,
    },
    /// The model cannot tell.
    Unknown {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("ACCEPT"),
            Verdict::Drop => f.write_str("DROP"),
            Verdict::Reject { with } => write!(f, "REJECT ({with})"),
            Verdict::Unknown { reason } => write!(f, "UNKNOWN ({reason})"),
        }
    }
}

/// One recorded step of a walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's line in the dump (None for a chain policy or the routing decision).
    pub line: Option<usize>,
    /// The rule, policy or decision.
    pub what: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{} {} line {line}: {}",
                self.table, self.chain, self.what
            ),
            None => write!(f, "{} {}: {}", self.table, self.chain, self.what),
        }
    }
}

/// A finished walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Walk {
    /// The packet walked.
    pub packet: Packet,
    /// Where it was destined after nat: `local` or the outgoing interface.
    pub path: String,
    /// Destination after DNAT, if it was translated.
    pub translated_to: Option<(IpAddr, u16)>,
    /// Steps that matched, in order.
    pub steps: Vec<Step>,
    /// The outcome.
    pub verdict: Verdict,
}

/// What the packet looks like at a point of the walk.
struct State<'a> {
    packet: &'a Packet,
    destination: IpAddr,
    destination_port: u16,
    dnat: bool,
    out_interface: Option<String>,
}

/// How a rule's conditions came out.
enum Truth {
    Yes,
    No,
    Unsure(String),
}

/// How a chain ended.
enum ChainEnd {
    /// A final verdict (accept, drop, reject, unknown).
    Verdict(Verdict),
    /// RETURN, or the end of a user chain.
    Return,
    /// DNAT (nat only): the new destination.
    Dnat(Option<IpAddr>, Option<u16>),
}

/// Walks `packet` through `ruleset` on `host`.
pub fn walk(ruleset: &Ruleset, host: &HostNet, packet: &Packet) -> Walk {
    let mut steps = Vec::new();
    let mut state = State {
        packet,
        destination: packet.destination,
        destination_port: packet.destination_port,
        dnat: false,
        out_interface: None,
    };
    let finish = |steps, path: &str, state: &State<'_>, verdict| Walk {
        packet: packet.clone(),
        path: path.to_owned(),
        translated_to: state
            .dnat
            .then_some((state.destination, state.destination_port)),
        steps,
        verdict,
    };
    for table in ["raw", "mangle", "nat"] {
        match run_builtin(ruleset, host, table, "PREROUTING", &mut state, &mut steps) {
            ChainEnd::Verdict(Verdict::Accept) | ChainEnd::Return => {}
            ChainEnd::Dnat(address, port) => {
                state.destination = address.unwrap_or(state.destination);
                state.destination_port = port.unwrap_or(state.destination_port);
                state.dnat = true;
            }
            ChainEnd::Verdict(verdict) => return finish(steps, "prerouting", &state, verdict),
        }
    }
    // The routing decision.
    let chain = if host.is_local(state.destination) {
        "INPUT"
    } else {
        let forwards = if state.destination.is_ipv6() {
            host.forwards_v6
        } else {
            host.forwards_v4
        };
        let Some(out) = host.route(state.destination) else {
            let verdict = Verdict::Unknown {
                reason: format!("no route to {}", state.destination),
            };
            return finish(steps, "unroutable", &state, verdict);
        };
        if !forwards {
            steps.push(Step {
                table: "routing".to_owned(),
                chain: String::new(),
                line: None,
                what: "forwarding is off on this host".to_owned(),
            });
            return finish(steps, out, &state, Verdict::Drop);
        }
        state.out_interface = Some(out.to_owned());
        "FORWARD"
    };
    let path = state
        .out_interface
        .clone()
        .unwrap_or_else(|| "local".to_owned());
    for table in ["mangle", "filter"] {
        match run_builtin(ruleset, host, table, chain, &mut state, &mut steps) {
            ChainEnd::Verdict(Verdict::Accept) | ChainEnd::Return => {}
            ChainEnd::Dnat(..) => {
                let verdict = Verdict::Unknown {
                    reason: format!("DNAT in {table} {chain}"),
                };
                return finish(steps, &path, &state, verdict);
            }
            ChainEnd::Verdict(verdict) => return finish(steps, &path, &state, verdict),
        }
    }
    finish(steps, &path, &state, Verdict::Accept)
}

/// Runs a built-in chain; falling off its end applies its policy.
fn run_builtin(
    ruleset: &Ruleset,
    host: &HostNet,
    table: &str,
    chain: &str,
    state: &mut State<'_>,
    steps: &mut Vec<Step>,
) -> ChainEnd {
    let Some(parsed) = ruleset.tables.get(table) else {
        return ChainEnd::Return;
    };
    match run_chain(ruleset, host, table, chain, state, steps, 0) {
        ChainEnd::Return => {
            let policy = parsed.policies.get(chain).cloned().flatten();
            match policy.as_deref() {
                None | Some("ACCEPT") => ChainEnd::Return,
                Some(policy) => {
                    steps.push(Step {
                        table: table.to_owned(),
                        chain: chain.to_owned(),
                        line: None,
                        what: format!("policy {policy}"),
                    });
                    ChainEnd::Verdict(match policy {
                        "DROP" => Verdict::Drop,
                        other => Verdict::Unknown {
                            reason: format!("{table} {chain} policy {other}"),
                        },
                    })
                }
            }
        }
        other => other,
    }
}

fn run_chain(
    ruleset: &Ruleset,
    host: &HostNet,
    table: &str,
    chain: &str,
    state: &mut State<'_>,
    steps: &mut Vec<Step>,
    depth: usize,
) -> ChainEnd {
    if depth > MAX_DEPTH {
        return ChainEnd::Verdict(Verdict::Unknown {
            reason: format!("jumps nest deeper than {MAX_DEPTH} at {table} {chain}"),
        });
    }
    for rule in ruleset.rules(table, chain) {
        match conditions(rule, host, state) {
            Truth::No => continue,
            Truth::Unsure(why) => {
                return ChainEnd::Verdict(Verdict::Unknown {
                    reason: format!("{why} in line {}: {}", rule.line, rule.text),
                });
            }
            Truth::Yes => {}
        }
        steps.push(Step {
            table: table.to_owned(),
            chain: chain.to_owned(),
            line: Some(rule.line),
            what: rule.text.clone(),
        });
        match &rule.target {
            Target::Accept => return ChainEnd::Verdict(Verdict::Accept),
            Target::Drop => return ChainEnd::Verdict(Verdict::Drop),
            Target::Reject(with) => {
                return ChainEnd::Verdict(Verdict::Reject { with: with.clone() });
            }
            Target::Return => return ChainEnd::Return,
            Target::Continue(_) | Target::None => {}
            Target::Dnat { address, port } => {
                if table != "nat" {
                    return ChainEnd::Verdict(Verdict::Unknown {
                        reason: format!("DNAT outside nat in line {}", rule.line),
                    });
                }
                return ChainEnd::Dnat(*address, port.map(|p| p.low));
            }
            Target::Jump(target) | Target::Goto(target) => {
                if !ruleset
                    .tables
                    .get(table)
                    .is_some_and(|t| t.chains.contains_key(target))
                {
                    return ChainEnd::Verdict(Verdict::Unknown {
                        reason: format!(
                            "target {target} of line {} is not a chain of {table}",
                            rule.line
                        ),
                    });
                }
                match run_chain(ruleset, host, table, target, state, steps, depth + 1) {
                    ChainEnd::Return => {
                        // A goto returns to the caller of this chain, not here.
                        if matches!(rule.target, Target::Goto(_)) {
                            return ChainEnd::Return;
                        }
                    }
                    decided => return decided,
                }
            }
        }
    }
    ChainEnd::Return
}

/// Whether every condition of `rule` holds for the packet in `state`.
fn conditions(rule: &Rule, host: &HostNet, state: &State<'_>) -> Truth {
    let mut unsure = rule
        .unknown
        .first()
        .map(|u| format!("`{u}` is not understood"));
    for condition in &rule.matches {
        match condition_holds(condition, host, state) {
            Some(true) => {}
            Some(false) => return Truth::No,
            None => {
                unsure.get_or_insert_with(|| format!("{condition:?} cannot be decided"));
            }
        }
    }
    match unsure {
        Some(why) => Truth::Unsure(why),
        None => Truth::Yes,
    }
}

fn negate<T>(neg: &Neg<T>, holds: bool) -> bool {
    holds != neg.negated
}

/// One condition: Some(holds), or None when it cannot be decided.
fn condition_holds(condition: &Match, host: &HostNet, state: &State<'_>) -> Option<bool> {
    let packet = state.packet;
    let in_range = |(low, high): (IpAddr, IpAddr), address: IpAddr| {
        low.is_ipv6() == address.is_ipv6() && low <= address && address <= high
    };
    let address_type = |kind: &str, address: IpAddr| -> Option<bool> {
        match kind {
            "LOCAL" => Some(host.is_local(address)),
            "UNICAST" => {
                Some(!address.is_multicast() && address != IpAddr::from([255, 255, 255, 255]))
            }
            "MULTICAST" => Some(address.is_multicast()),
            "BROADCAST" => Some(address == IpAddr::from([255, 255, 255, 255])),
            _ => None,
        }
    };
    Some(match condition {
        Match::Source(n) => negate(n, n.value.contains(&packet.source)),
        Match::Destination(n) => negate(n, n.value.contains(&state.destination)),
        Match::InInterface(n) => {
            negate(n, interface_pattern_matches(&n.value, &packet.in_interface))
        }
        Match::OutInterface(n) => match &state.out_interface {
            Some(out) => negate(n, interface_pattern_matches(&n.value, out)),
            // -o before the routing decision: iptables refuses such rules; no guess.
            None => return None,
        },
        Match::Protocol(n) => negate(
            n,
            matches!(
                (&n.value, packet.transport),
                (Proto::All, _) | (Proto::Tcp, Transport::Tcp) | (Proto::Udp, Transport::Udp)
            ),
        ),
        Match::SourcePort(n) => negate(n, n.value.iter().any(|p| p.contains(packet.source_port))),
        Match::DestinationPort(n) => negate(
            n,
            n.value.iter().any(|p| p.contains(state.destination_port)),
        ),
        Match::EitherPort(n) => negate(
            n,
            n.value
                .iter()
                .any(|p| p.contains(packet.source_port) || p.contains(state.destination_port)),
        ),
        Match::SourceRange(n) => negate(n, in_range(n.value, packet.source)),
        Match::DestinationRange(n) => negate(n, in_range(n.value, state.destination)),
        Match::ConnState(n) => negate(
            n,
            n.value
                .iter()
                .any(|s| *s == CtState::New || (*s == CtState::Dnat && state.dnat)),
        ),
        Match::CtOrigSource(n) => negate(n, n.value.contains(&packet.source)),
        Match::CtOrigDestination(n) => negate(n, n.value.contains(&packet.destination)),
        Match::CtOrigSourcePort(n) => negate(n, n.value.contains(packet.source_port)),
        Match::CtOrigDestinationPort(n) => negate(n, n.value.contains(packet.destination_port)),
        Match::SourceType(n) => negate(n, address_type(&n.value, packet.source)?),
        Match::DestinationType(n) => negate(n, address_type(&n.value, state.destination)?),
        Match::Set {
            negated,
            name,
            direction,
        } => {
            let members = host.sets.get(name)?;
            let address = match direction {
                SetDirection::Source => packet.source,
                SetDirection::Destination => state.destination,
            };
            members.iter().any(|m| m.contains(&address)) != *negated
        }
        Match::TcpFlags(n) => {
            if packet.transport != Transport::Tcp {
                false
            } else {
                // The first packet of a TCP connection carries SYN alone.
                let (mask, set) = &n.value;
                let seen: Vec<&String> = mask.iter().filter(|f| *f == "SYN").collect();
                let wanted: Vec<&String> = set.iter().filter(|f| mask.contains(f)).collect();
                negate(n, seen == wanted)
            }
        }
        Match::IcmpType(n) => negate(n, false),
        Match::Limit => true,
        // The walk follows a packet routed from one interface to another, never one
        // bridged between two ports of one bridge.
        Match::PhysdevIsBridged(n) => negate(n, false),
    })
}

/// Where a probe goes: `ADDR:PORT[/tcp|udp]`, with `[ADDR]` for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub address: IpAddr,
    /// The port.
    pub port: u16,
    /// tcp unless `/udp` is given.
    pub transport: Transport,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Endpoint, String> {
        let expected =
            || format!("expected ADDR:PORT[/tcp|udp] (IPv6 as [ADDR]:PORT), found {text:?}");
        let (rest, transport) = match text.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Transport::Tcp),
            Some((rest, "udp")) => (rest, Transport::Udp),
            Some(_) => return Err(expected()),
            None => (text, Transport::Tcp),
        };
        let (address, port) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (address, port) = inner.split_once("]:").ok_or_else(expected)?;
                (address, port)
            }
            None => rest.rsplit_once(':').ok_or_else(expected)?,
        };
        let address: IpAddr = address.parse().map_err(|_| expected())?;
        if address.is_ipv6() && !rest.starts_with('[') {
            return Err(expected());
        }
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(expected)?;
        Ok(Endpoint {
            address,
            port,
            transport,
        })
    }
}

impl Walk {
    /// The walk for a person: each step, then the verdict.
    pub fn human(&self) -> String {
        let packet = &self.packet;
        let mut text = format!(
            "{} {} port {} -> {} port {}, in on {}\n",
            packet.transport,
            packet.source,
            packet.source_port,
            packet.destination,
            packet.destination_port,
            packet.in_interface
        );
        for step in &self.steps {
            text.push_str(&format!("  {step}\n"));
        }
        if let Some((address, port)) = self.translated_to {
            text.push_str(&format!("  translated to {address} port {port}\n"));
        }
        text.push_str(&format!(
            "  path: {}\n",
            if self.path == "local" {
                "to the host itself (INPUT)".to_owned()
            } else {
                format!("forwarded out of {} (FORWARD)", self.path)
            }
        ));
        text.push_str(&format!("verdict: {}\n", self.verdict));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::dump;

    fn host() -> HostNet {
        crate::hostnet::docker_test_host()
    }

    const DOCKER: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -j REJECT --reject-with tcp-reset\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n-A DOCKER-USER -s 192.0.2.0/24 -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -i eth0 -o docker0 -j DROP\n-A DOCKER-USER -j RETURN\nCOMMIT\n";

    fn probe(source: &str, port: u16) -> Walk {
        let ruleset = Ruleset::new(&dump::parse(DOCKER).unwrap());
        walk(
            &ruleset,
            &host(),
            &Packet {
                source: source.parse().unwrap(),
                destination: "203.0.113.10".parse().unwrap(),
                transport: Transport::Tcp,
                source_port: 40000,
                destination_port: port,
                in_interface: "eth0".into(),
            },
        )
    }

    #[test]
    fn a_published_port_is_dnated_and_filtered_in_docker_user() {
        let allowed = probe("192.0.2.7", 8080);
        assert_eq!(allowed.verdict, Verdict::Accept);
        assert_eq!(allowed.path, "docker0");
        assert_eq!(
            allowed.translated_to,
            Some(("172.17.0.2".parse().unwrap(), 80))
        );
        assert!(
            allowed
                .steps
                .iter()
                .any(|s| s.what.contains("--ctorigdstport 8080 -j RETURN"))
        );
        assert_eq!(probe("198.51.100.1", 8080).verdict, Verdict::Drop);
    }

    #[test]
    fn set_matches_use_the_hosts_ipsets_and_an_unknown_set_is_unknown() {
        let text = DOCKER.replace(
            "-A DOCKER-USER -s 192.0.2.0/24 -m conntrack",
            "-A DOCKER-USER -m set --match-set office src -m conntrack",
        );
        let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
        let packet = probe("192.0.2.7", 8080).packet;
        let mut with_set = host();
        with_set
            .sets
            .insert("office".into(), vec!["192.0.2.0/28".parse().unwrap()]);
        assert_eq!(walk(&ruleset, &with_set, &packet).verdict, Verdict::Accept);
        let outsider = Packet {
            source: "192.0.2.77".parse().unwrap(),
            ..packet.clone()
        };
        assert_eq!(walk(&ruleset, &with_set, &outsider).verdict, Verdict::Drop);
        let verdict = walk(&ruleset, &host(), &packet).verdict;
        assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict:?}");
    }

    #[test]
    fn endpoints_parse_with_clear_errors() {
        let web: Endpoint = "203.0.113.10:8080".parse().unwrap();
        assert_eq!((web.port, web.transport), (8080, Transport::Tcp));
        let dns: Endpoint = "[2001:db8::1]:53/udp".parse().unwrap();
        assert_eq!(
            (dns.address, dns.transport),
            ("2001:db8::1".parse().unwrap(), Transport::Udp)
        );
        for bad in [
            "203.0.113.10",
            "203.0.113.10:0",
            "2001:db8::1:80",
            "x:80",
            "1.2.3.4:80/sctp",
            "1.2.3.4:99999",
        ] {
            let error = bad.parse::<Endpoint>().unwrap_err();
            assert!(
                error.starts_with("expected ADDR:PORT[/tcp|udp]"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn host_ports_go_through_input() {
        let ssh = probe("198.51.100.1", 22);
        assert_eq!((ssh.verdict, ssh.path.as_str()), (Verdict::Accept, "local"));
        assert_eq!(
            probe("198.51.100.1", 23).verdict,
            Verdict::Reject {
                with: "tcp-reset".into()
            }
        );
    }

    #[test]
    fn an_unknown_match_that_could_decide_makes_the_answer_unknown() {
        let text = DOCKER.replace(
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
            "-A INPUT -p tcp -m mark --mark 0x1 -j ACCEPT",
        );
        let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
        let mut packet = probe("198.51.100.1", 22).packet;
        let verdict = walk(&ruleset, &host(), &packet).verdict;
        assert!(
            matches!(&verdict, Verdict::Unknown { reason } if reason.contains("-m mark --mark") && reason.contains("line")),
            "{verdict:?}"
        );
        // ...but not when another condition of that rule is already false.
        packet.transport = Transport::Udp;
        assert_eq!(walk(&ruleset, &host(), &packet).verdict, Verdict::Drop);
    }
}
