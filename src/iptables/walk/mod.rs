//! Walks the first packet of a new connection through a parsed ruleset as the kernel
//! would: raw PREROUTING, mangle PREROUTING, nat PREROUTING (where DNAT rewrites the
//! destination), the routing decision, then mangle and filter INPUT or FORWARD, with
//! jumps, gotos, returns and chain policies. Every rule that decides something is
//! recorded, so the walk doubles as an explanation.
//!
//! A match or target the model does not understand never becomes a guess: when such a
//! rule could match, the verdict is [`Verdict::Unknown`] naming the rule.
//!
//! The work of a walk is linear in the size of the ruleset, whatever shape its jumps
//! take. User chains may form a DAG: chain L0 jumps to L1 eight times, L1 to L2 eight
//! times, and so on. Walked path by path, a packet whose every jump returns enters L8
//! 8^8 times: 19 million steps and gigabytes for a ruleset of 66 rules that the kernel
//! accepts, and eight times that for each level more. But within one built-in chain
//! the packet does not change (DNAT and the routing decision act between built-in
//! chains), so a user chain that returned once returns again, after the same steps,
//! every time it is entered: the walk remembers which chains returned and enters them
//! again without walking them, and one step says so instead of repeating their steps.
//! (A chain that decided ends the walk, so only returns need remembering.) The verdict
//! is exactly the path-by-path verdict. As a backstop for inputs no memo tames, one walk
//! looks at no more than [`MAX_RULE_VISITS`] rules: past that the verdict is
//! [`Verdict::Unknown`], saying the rules are too complex to walk and naming the limit,
//! never a guess.
//!
//! This file owns the walk itself (built-in chains in the kernel's order, jumps, the
//! memo of chains that returned, the verdict and its steps); `ruleset.rs` the parsed
//! ruleset it walks, and `matching.rs` whether one rule matches the packet. The
//! probe it follows and what it returns (the [`Walk`], its [`Step`]s and [`Verdict`])
//! are [`crate::packet`]'s, re-exported here.

mod matching;
mod ruleset;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::host::net::HostNet;
use crate::iptables::rule::Target;

pub use crate::packet::{Endpoint, Packet, Step, Transport, Verdict, Walk};
use matching::{State, Truth, conditions};
pub use ruleset::Ruleset;

/// How deep jumps may nest before the walk gives up (the kernel allows no loops).
const MAX_DEPTH: usize = 64;

/// How many rules one walk may look at (test the conditions of) before it gives up with
/// [`Verdict::Unknown`]. Since a chain that returned is not walked twice, a walk looks
/// at each rule at most once per built-in chain (or again along a path of jumps that
/// ends at the depth limit), so only a ruleset of hundreds of thousands of rules reached
/// by one packet comes near; the limit bounds the time and the memory (the steps) of
/// one walk whatever the input.
pub const MAX_RULE_VISITS: usize = 1_000_000;

/// How a chain ended.
enum ChainEnd {
    /// A final verdict (accept, drop, reject, unknown).
    Verdict(Verdict),
    /// RETURN, or the end of a user chain.
    Return,
    /// DNAT (nat only): the new destination.
    Dnat(Option<IpAddr>, Option<u16>),
}

/// Walks `packet` through `ruleset` on `host`, looking at no more than
/// [`MAX_RULE_VISITS`] rules.
pub fn walk(ruleset: &Ruleset, host: &HostNet, packet: &Packet) -> Walk {
    walk_within(ruleset, host, packet, MAX_RULE_VISITS)
}

/// [`walk`] with a budget of `budget` rule visits: past it the verdict is
/// [`Verdict::Unknown`], saying the rules are too complex to walk.
fn walk_within(ruleset: &Ruleset, host: &HostNet, packet: &Packet, budget: usize) -> Walk {
    let mut walker = Walker {
        ruleset,
        host,
        steps: Vec::new(),
        visits: 0,
        budget,
    };
    let mut state = State {
        packet,
        destination: packet.destination,
        destination_port: packet.destination_port,
        dnat: false,
        out_interface: None,
    };
    let finish = |walker: Walker<'_>, path: &str, state: &State<'_>, verdict| Walk {
        packet: packet.clone(),
        path: path.to_owned(),
        translated_to: state
            .dnat
            .then_some((state.destination, state.destination_port)),
        steps: walker.steps,
        rule_visits: walker.visits,
        verdict,
    };
    for table in ["raw", "mangle", "nat"] {
        match walker.run_builtin(table, "PREROUTING", &state) {
            ChainEnd::Verdict(Verdict::Accept) | ChainEnd::Return => {}
            ChainEnd::Dnat(address, port) => {
                state.destination = address.unwrap_or(state.destination);
                state.destination_port = port.unwrap_or(state.destination_port);
                state.dnat = true;
            }
            ChainEnd::Verdict(verdict) => return finish(walker, "prerouting", &state, verdict),
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
            return finish(walker, "unroutable", &state, verdict);
        };
        if !forwards {
            walker.steps.push(Step {
                table: "routing".to_owned(),
                chain: String::new(),
                line: None,
                what: "forwarding is off on this host".to_owned(),
            });
            return finish(walker, out, &state, Verdict::Drop);
        }
        state.out_interface = Some(out.to_owned());
        "FORWARD"
    };
    let path = state
        .out_interface
        .clone()
        .unwrap_or_else(|| "local".to_owned());
    for table in ["mangle", "filter"] {
        match walker.run_builtin(table, chain, &state) {
            ChainEnd::Verdict(Verdict::Accept) | ChainEnd::Return => {}
            ChainEnd::Dnat(..) => {
                let verdict = Verdict::Unknown {
                    reason: format!("DNAT in {table} {chain}"),
                };
                return finish(walker, &path, &state, verdict);
            }
            ChainEnd::Verdict(verdict) => return finish(walker, &path, &state, verdict),
        }
    }
    finish(walker, &path, &state, Verdict::Accept)
}

/// A user chain that returned during the walk of one built-in chain. The packet does
/// not change within a built-in chain, so entered again it returns again, after the
/// same steps: it need not be walked twice.
#[derive(Debug, Clone, Copy)]
struct Returned {
    /// How many levels of jumps its walk nested below it. Entered again deeper than
    /// `MAX_DEPTH - height`, its walk would hit the depth limit where it did not before:
    /// then it is walked again, and that walk ends on the limit, as it always did.
    height: usize,
    /// How many steps its walk recorded.
    steps: usize,
}

/// The chains that returned during the walk of one built-in chain.
type ReturnedChains<'a> = HashMap<&'a str, Returned>;

/// One walk in progress: the steps so far and the work done.
struct Walker<'a> {
    ruleset: &'a Ruleset,
    host: &'a HostNet,
    steps: Vec<Step>,
    /// Rules looked at so far.
    visits: usize,
    /// Rules it may look at in all.
    budget: usize,
}

impl<'a> Walker<'a> {
    /// Runs a built-in chain; falling off its end applies its policy.
    fn run_builtin(&mut self, table: &str, chain: &str, state: &State<'_>) -> ChainEnd {
        let ruleset = self.ruleset;
        if !ruleset.has_table(table) {
            return ChainEnd::Return;
        }
        // What is remembered holds for this packet as it is now: forgotten when the
        // built-in chain ends (DNAT and the routing decision change it in between).
        let mut returned = ReturnedChains::new();
        match self.run_chain(table, chain, state, &mut returned, 0).0 {
            ChainEnd::Return => match ruleset.policy(table, chain) {
                None | Some("ACCEPT") => ChainEnd::Return,
                Some(policy) => {
                    self.steps.push(Step {
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
            },
            other => other,
        }
    }

    /// Walks `chain`, entered at `depth`; also says how deep its jumps nested (the
    /// deepest depth a chain was entered at).
    fn run_chain(
        &mut self,
        table: &str,
        chain: &str,
        state: &State<'_>,
        returned: &mut ReturnedChains<'a>,
        depth: usize,
    ) -> (ChainEnd, usize) {
        if depth > MAX_DEPTH {
            let verdict = Verdict::Unknown {
                reason: format!("jumps nest deeper than {MAX_DEPTH} at {table} {chain}"),
            };
            return (ChainEnd::Verdict(verdict), depth);
        }
        let ruleset = self.ruleset;
        let mut deepest = depth;
        for rule in ruleset.rules(table, chain) {
            if self.visits >= self.budget {
                let verdict = Verdict::Unknown {
                    reason: format!(
                        "the rules are too complex to walk: one packet would take more than {} rule visits (stopped at {table} {chain} line {})",
                        self.budget, rule.line
                    ),
                };
                return (ChainEnd::Verdict(verdict), deepest);
            }
            self.visits += 1;
            match conditions(rule, self.host, state) {
                Truth::No => continue,
                Truth::Unsure(why) => {
                    let verdict = Verdict::Unknown {
                        reason: format!("{why} in line {}: {}", rule.line, rule.text),
                    };
                    return (ChainEnd::Verdict(verdict), deepest);
                }
                Truth::Yes => {}
            }
            self.steps.push(Step {
                table: table.to_owned(),
                chain: chain.to_owned(),
                line: Some(rule.line),
                what: rule.text.clone(),
            });
            let end = match &rule.target {
                Target::Accept => ChainEnd::Verdict(Verdict::Accept),
                Target::Drop => ChainEnd::Verdict(Verdict::Drop),
                Target::Reject(with) => ChainEnd::Verdict(Verdict::Reject { with: with.clone() }),
                Target::Return => ChainEnd::Return,
                Target::Continue(_) | Target::None => continue,
                Target::Dnat { address, port } => {
                    if table != "nat" {
                        ChainEnd::Verdict(Verdict::Unknown {
                            reason: format!("DNAT outside nat in line {}", rule.line),
                        })
                    } else {
                        ChainEnd::Dnat(*address, port.map(|p| p.low))
                    }
                }
                Target::Jump(target) | Target::Goto(target) => {
                    if !ruleset.has_chain(table, target) {
                        let verdict = Verdict::Unknown {
                            reason: format!(
                                "target {target} of line {} is not a chain of {table}",
                                rule.line
                            ),
                        };
                        return (ChainEnd::Verdict(verdict), deepest);
                    }
                    let (end, reached) = self.enter(table, target, state, returned, depth + 1);
                    deepest = deepest.max(reached);
                    match end {
                        // A jump comes back here; a goto returns to the caller of this
                        // chain.
                        ChainEnd::Return if matches!(rule.target, Target::Jump(_)) => continue,
                        end => end,
                    }
                }
            };
            return (end, deepest);
        }
        (ChainEnd::Return, deepest)
    }

    /// Enters `chain` at `depth` (a jump or goto): when it returned before in this
    /// built-in chain, it returns again, and one step says so instead of repeating its
    /// steps; otherwise it is walked, and remembered if it returns.
    fn enter(
        &mut self,
        table: &str,
        chain: &'a str,
        state: &State<'_>,
        returned: &mut ReturnedChains<'a>,
        depth: usize,
    ) -> (ChainEnd, usize) {
        if let Some(known) = returned.get(chain)
            && depth + known.height <= MAX_DEPTH
        {
            if known.steps > 0 {
                self.steps.push(Step {
                    table: table.to_owned(),
                    chain: chain.to_owned(),
                    line: None,
                    what: format!(
                        "entered again: it returns, as walked above ({} not repeated)",
                        match known.steps {
                            1 => "1 step".to_owned(),
                            n => format!("{n} steps"),
                        }
                    ),
                });
            }
            return (ChainEnd::Return, depth + known.height);
        }
        let before = self.steps.len();
        let (end, reached) = self.run_chain(table, chain, state, returned, depth);
        if matches!(end, ChainEnd::Return) {
            returned.insert(
                chain,
                Returned {
                    height: reached.saturating_sub(depth),
                    steps: self.steps.len().saturating_sub(before),
                },
            );
        }
        (end, reached)
    }
}

/// A ruleset the kernel accepts and a path-by-path walk cannot finish: the filter table
/// of an `iptables-save`, FORWARD (policy DROP) jumping into L0, and each of the `depth`
/// chains L0, L1, ... jumping `width` times to the next. The jumps carry different
/// matches (a source network, a negated one, a protocol, none), all true for a TCP
/// packet from 198.51.100.7; the last chain accepts 192.0.2.0/24 alone. From
/// 198.51.100.7 every jump returns, so a path-by-path walk enters the last chain
/// `width^depth` times before FORWARD's policy drops the packet.
#[cfg(test)]
pub(crate) fn jump_dag(depth: usize, width: usize) -> String {
    const MATCHES: [&str; 4] = ["", "-s 198.51.100.0/24 ", "! -s 203.0.113.0/24 ", "-p tcp "];
    let mut text =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for level in 0..=depth {
        text.push_str(&format!(":L{level} - [0:0]\n"));
    }
    text.push_str("-A FORWARD -j L0\n");
    for level in 0..depth {
        for jump in 0..width {
            let matches = MATCHES[(level + jump) % MATCHES.len()];
            text.push_str(&format!("-A L{level} {matches}-j L{}\n", level + 1));
        }
    }
    text.push_str(&format!("-A L{depth} -s 192.0.2.0/24 -j ACCEPT\nCOMMIT\n"));
    text
}

/// Runs `work` in a thread and gives its result, failing the test if it has not
/// finished within a minute: an unbounded walk fails the test instead of hanging the
/// run. (Nothing is timed beyond that; timings belong in benchmarks.)
#[cfg(test)]
#[allow(clippy::panic)] // a test's watchdog fails the test
pub(crate) fn within_a_minute<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} has not finished within 60 s: the work is not bounded")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::dump;

    fn host() -> HostNet {
        crate::host::net::docker_test_host()
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
        with_set.sets.insert(
            "office".into(),
            ["192.0.2.0/28".parse().unwrap()].into_iter().collect(),
        );
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

    /// A packet to the container behind docker0, from `source`.
    fn forwarded(source: &str) -> Packet {
        Packet {
            source: source.parse().unwrap(),
            destination: "172.17.0.2".parse().unwrap(),
            transport: Transport::Tcp,
            source_port: 40000,
            destination_port: 80,
            in_interface: "eth0".into(),
        }
    }

    fn rule_lines(text: &str) -> usize {
        text.lines().filter(|l| l.starts_with("-A ")).count()
    }

    #[test]
    fn a_dag_of_jumps_is_walked_once_per_chain_with_the_exact_verdict() {
        // From small to large: on a path-by-path walk the first already fails the step
        // bound (299594 steps for 50 rules), and 9 x 8 needs about 27 GB.
        for (depth, width) in [(6, 8), (8, 8), (9, 8), (12, 8), (16, 16), (40, 32)] {
            let text = jump_dag(depth, width);
            let rules = rule_lines(&text);
            let (stranger, friend) = within_a_minute(&format!("{depth} x {width}"), move || {
                let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
                let walk = |source| walk(&ruleset, &host(), &forwarded(source));
                (walk("198.51.100.7"), walk("192.0.2.7"))
            });
            assert_eq!(stranger.verdict, Verdict::Drop, "{depth} x {width}");
            assert_eq!(
                stranger.steps.last().map(ToString::to_string).as_deref(),
                Some("filter FORWARD: policy DROP"),
            );
            assert_eq!(friend.verdict, Verdict::Accept, "{depth} x {width}");
            // Memory: each rule is recorded at most once, each chain entered again once
            // more: linear in the rules, not width^depth.
            assert!(
                stranger.steps.len() <= 2 * rules,
                "{depth} x {width}: {} steps for {rules} rules",
                stranger.steps.len()
            );
        }
    }

    #[test]
    fn the_work_of_a_walk_grows_linearly_with_the_rules() {
        for depth in 1..=12 {
            for width in [1, 2, 3, 8, 16] {
                let text = jump_dag(depth, width);
                let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
                let stranger = walk(&ruleset, &host(), &forwarded("198.51.100.7"));
                // Every rule looked at exactly once: FORWARD's jump, every jump of every
                // chain, the last chain's rule.
                assert_eq!(stranger.rule_visits, rule_lines(&text), "{depth} x {width}");
                assert_eq!(stranger.rule_visits, 1 + depth * width + 1);
                // A rule step per jump, an "entered again" step per jump after the first
                // into a chain that recorded steps, and the policy.
                assert_eq!(
                    stranger.steps.len(),
                    1 + depth * width + (depth - 1) * (width - 1) + 1,
                    "{depth} x {width}"
                );
                // Fewer jumps match from 192.0.2.7: still no rule looked at twice.
                let friend = walk(&ruleset, &host(), &forwarded("192.0.2.7"));
                assert!(friend.rule_visits <= rule_lines(&text), "{depth} x {width}");
            }
        }
    }

    #[test]
    fn a_chain_entered_again_says_so_and_decides_as_before() {
        let text = "*filter\n:FORWARD DROP [0:0]\n:Count - [0:0]\n:Quiet - [0:0]\n-A FORWARD -j Count\n-A FORWARD -j Quiet\n-A FORWARD -p tcp -j Count\n-A FORWARD -j Quiet\n-A FORWARD -s 198.51.100.0/24 -j ACCEPT\n-A Count -p tcp -j LOG --log-prefix \"seen: \"\n-A Quiet -p udp -j ACCEPT\nCOMMIT\n";
        let ruleset = Ruleset::new(&dump::parse(text).unwrap());
        let walked = walk(&ruleset, &host(), &forwarded("198.51.100.7"));
        assert_eq!(walked.verdict, Verdict::Accept);
        let steps: Vec<String> = walked.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            steps,
            [
                "filter FORWARD line 5: -A FORWARD -j Count",
                "filter Count line 10: -A Count -p tcp -j LOG --log-prefix \"seen: \"",
                "filter FORWARD line 6: -A FORWARD -j Quiet",
                "filter FORWARD line 7: -A FORWARD -p tcp -j Count",
                "filter Count: entered again: it returns, as walked above (1 step not repeated)",
                // Quiet recorded no step: entered again, it records none, as before.
                "filter FORWARD line 8: -A FORWARD -j Quiet",
                "filter FORWARD line 9: -A FORWARD -s 198.51.100.0/24 -j ACCEPT",
            ]
        );
        // Only the second jumps' rules were not looked at again.
        assert_eq!(walked.rule_visits, 5 + 1 + 1);
        // What is remembered is forgotten between built-in chains: a udp packet is
        // accepted by Quiet, the first time it is entered.
        let udp = Packet {
            transport: Transport::Udp,
            ..forwarded("198.51.100.7")
        };
        let walked = walk(&ruleset, &host(), &udp);
        assert_eq!(walked.verdict, Verdict::Accept);
        assert_eq!(
            walked.steps.last().map(ToString::to_string).as_deref(),
            Some("filter Quiet line 11: -A Quiet -p udp -j ACCEPT")
        );
    }

    #[test]
    fn a_chain_that_returned_shallow_still_hits_the_depth_limit_deep() {
        // FORWARD -> Outer jumps to Shared (whose walk nests 10 deep, and returns) and then
        // down a line of 60 chains to Shared again, where its walk would pass the depth
        // limit.
        let mut text =
            String::from("*filter\n:FORWARD DROP [0:0]\n:Outer - [0:0]\n:Shared - [0:0]\n");
        for n in 1..=60 {
            text.push_str(&format!(":B{n} - [0:0]\n"));
        }
        for n in 1..=10 {
            text.push_str(&format!(":Y{n} - [0:0]\n"));
        }
        text.push_str("-A FORWARD -j Outer\n-A Outer -j Shared\n-A Outer -j B1\n");
        for n in 1..60 {
            text.push_str(&format!("-A B{n} -j B{}\n", n + 1));
        }
        text.push_str("-A B60 -j Shared\n-A Shared -j Y1\n");
        for n in 1..10 {
            text.push_str(&format!("-A Y{n} -j Y{}\n", n + 1));
        }
        text.push_str("COMMIT\n");
        let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
        let walked = walk(&ruleset, &host(), &forwarded("198.51.100.7"));
        // FORWARD is depth 0, Outer 1, B60 61, Shared 62, Y1 63, Y2 64, Y3 65: too deep.
        assert_eq!(
            walked.verdict,
            Verdict::Unknown {
                reason: "jumps nest deeper than 64 at filter Y3".to_owned()
            }
        );
        // Shallower, Shared is entered again from what is remembered.
        let shallow = text.replace("-A B50 -j B51", "-A B50 -j Shared");
        let ruleset = Ruleset::new(&dump::parse(&shallow).unwrap());
        let walked = walk(&ruleset, &host(), &forwarded("198.51.100.7"));
        assert_eq!(walked.verdict, Verdict::Drop);
        assert!(
            walked
                .steps
                .iter()
                .any(|s| s.chain == "Shared" && s.what.starts_with("entered again")),
            "{walked:#?}"
        );
    }

    #[test]
    fn a_walk_over_its_budget_is_undecided_and_names_the_limit() {
        let text = jump_dag(8, 8);
        let ruleset = Ruleset::new(&dump::parse(&text).unwrap());
        let packet = forwarded("198.51.100.7");
        let needed = rule_lines(&text);
        let enough = walk_within(&ruleset, &host(), &packet, needed);
        assert_eq!(
            (enough.verdict, enough.rule_visits),
            (Verdict::Drop, needed)
        );
        let short = walk_within(&ruleset, &host(), &packet, needed - 1);
        assert_eq!(short.rule_visits, needed - 1);
        assert!(
            matches!(&short.verdict, Verdict::Unknown { reason } if reason.starts_with(&format!(
                "the rules are too complex to walk: one packet would take more than {} rule visits (stopped at filter L",
                needed - 1
            ))),
            "{:?}",
            short.verdict
        );
        let tiny = walk_within(&ruleset, &host(), &packet, 20);
        assert_eq!(
            tiny.verdict,
            Verdict::Unknown {
                reason: "the rules are too complex to walk: one packet would take more than 20 rule visits (stopped at filter L6 line 67)".to_owned()
            }
        );
        assert!(tiny.steps.len() <= 2 * 20);
        // The public walk has the budget of the README's limit.
        assert_eq!(MAX_RULE_VISITS, 1_000_000);
    }
}
