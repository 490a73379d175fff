//! What a rule line means: its matches and its target, typed. Only the matches this
//! domain uses are understood (addresses, interfaces, protocol, ports, multiport,
//! iprange, conntrack, state, addrtype, set, tcp flags, icmp, limit, comment); anything
//! else is kept as an unknown option, so an evaluator can say "unknown, because of this
//! rule" instead of guessing.

use std::net::IpAddr;

use ipnet::IpNet;

use super::dump::{RuleLine, Word};

/// A value that a `!` may negate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neg<T> {
    /// `!` was given.
    pub negated: bool,
    /// The value.
    pub value: T,
}

/// A protocol as `-p` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    /// tcp (6).
    Tcp,
    /// udp (17).
    Udp,
    /// icmp (1).
    Icmp,
    /// ipv6-icmp (58).
    Icmpv6,
    /// all (0).
    All,
    /// Any other.
    Other(String),
}

impl Proto {
    /// Parses `-p`'s value.
    pub fn parse(text: &str) -> Proto {
        match text.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Proto::Tcp,
            "udp" | "17" => Proto::Udp,
            "icmp" | "1" => Proto::Icmp,
            "ipv6-icmp" | "icmpv6" | "58" => Proto::Icmpv6,
            "all" | "0" => Proto::All,
            other => Proto::Other(other.to_owned()),
        }
    }
}

/// An inclusive port range (a single port has `low == high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpan {
    /// First port.
    pub low: u16,
    /// Last port.
    pub high: u16,
}

impl PortSpan {
    /// Parses `N` or `N:M` (iptables) or `N-M` (conntrack).
    pub fn parse(text: &str) -> Option<PortSpan> {
        let (low, high) = match text.split_once([':', '-']) {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let port = text.parse().ok()?;
                (port, port)
            }
        };
        (low <= high).then_some(PortSpan { low, high })
    }

    /// `port` lies in the span.
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// A connection tracking state (`--ctstate`, `--state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    /// NEW.
    New,
    /// ESTABLISHED.
    Established,
    /// RELATED.
    Related,
    /// INVALID.
    Invalid,
    /// UNTRACKED.
    Untracked,
    /// SNAT (the connection was source-NATed).
    Snat,
    /// DNAT (the connection was destination-NATed).
    Dnat,
}

impl CtState {
    fn parse(text: &str) -> Option<CtState> {
        Some(match text {
            "NEW" => CtState::New,
            "ESTABLISHED" => CtState::Established,
            "RELATED" => CtState::Related,
            "INVALID" => CtState::Invalid,
            "UNTRACKED" => CtState::Untracked,
            "SNAT" => CtState::Snat,
            "DNAT" => CtState::Dnat,
            _ => return None,
        })
    }
}

/// Which address of the packet a set match looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetDirection {
    /// The source address.
    Source,
    /// The destination address.
    Destination,
}

/// A condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `-s`.
    Source(Neg<IpNet>),
    /// `-d`.
    Destination(Neg<IpNet>),
    /// `-i` (a trailing `+` is a prefix wildcard).
    InInterface(Neg<String>),
    /// `-o`.
    OutInterface(Neg<String>),
    /// `-p`.
    Protocol(Neg<Proto>),
    /// `--sport` (tcp/udp) or `--sports` (multiport).
    SourcePort(Neg<Vec<PortSpan>>),
    /// `--dport` (tcp/udp) or `--dports` (multiport).
    DestinationPort(Neg<Vec<PortSpan>>),
    /// `--ports` (multiport): source or destination.
    EitherPort(Neg<Vec<PortSpan>>),
    /// `--src-range` (iprange).
    SourceRange(Neg<(IpAddr, IpAddr)>),
    /// `--dst-range` (iprange).
    DestinationRange(Neg<(IpAddr, IpAddr)>),
    /// `--ctstate` or `--state`.
    ConnState(Neg<Vec<CtState>>),
    /// `--ctorigsrc`.
    CtOrigSource(Neg<IpNet>),
    /// `--ctorigdst`.
    CtOrigDestination(Neg<IpNet>),
    /// `--ctorigsrcport`.
    CtOrigSourcePort(Neg<PortSpan>),
    /// `--ctorigdstport`.
    CtOrigDestinationPort(Neg<PortSpan>),
    /// `--src-type` (addrtype), such as LOCAL.
    SourceType(Neg<String>),
    /// `--dst-type` (addrtype).
    DestinationType(Neg<String>),
    /// `--match-set NAME src|dst`.
    Set {
        /// `!` was given.
        negated: bool,
        /// The ipset.
        name: String,
        /// Which address.
        direction: SetDirection,
    },
    /// `--tcp-flags MASK SET` (or `--syn`).
    TcpFlags(Neg<(Vec<String>, Vec<String>)>),
    /// `--icmp-type` / `--icmpv6-type`: matches ICMP packets only.
    IcmpType(Neg<String>),
    /// `-m limit`: matches the first packets (within the burst).
    Limit,
    /// `-m physdev --physdev-is-bridged`: the packet is bridged (it crosses one bridge,
    /// port to port) rather than routed.
    PhysdevIsBridged(Neg<()>),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// ACCEPT.
    Accept,
    /// DROP.
    Drop,
    /// REJECT (`--reject-with` kind).
    Reject(String),
    /// RETURN.
    Return,
    /// `-j CHAIN`.
    Jump(String),
    /// `-g CHAIN`.
    Goto(String),
    /// DNAT `--to-destination ADDR[:PORT[-PORT]]`.
    Dnat {
        /// New destination address (None: keep).
        address: Option<IpAddr>,
        /// New destination port (None: keep).
        port: Option<PortSpan>,
    },
    /// Targets that do not decide the packet's fate (LOG, NFLOG, MARK, CT, ...): the
    /// walk goes on with the next rule.
    Continue(String),
    /// No target: a rule that only counts.
    None,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Line in the dump.
    pub line: usize,
    /// Its chain.
    pub chain: String,
    /// The rule as text (`-A CHAIN ...`).
    pub text: String,
    /// All must hold for the rule to match.
    pub matches: Vec<Match>,
    /// Options not understood, by name (with `-m` module where known).
    pub unknown: Vec<String>,
    /// What it does.
    pub target: Target,
}

/// Targets that never end a packet's walk.
const NON_TERMINATING: [&str; 9] = [
    "LOG", "NFLOG", "ULOG", "MARK", "CONNMARK", "CT", "NOTRACK", "TCPMSS", "CHECKSUM",
];

/// Parses a rule line. Never fails: what is not understood lands in `unknown`.
pub fn parse(rule: &RuleLine) -> Rule {
    let words = &rule.words;
    let mut parsed = Rule {
        line: rule.line,
        chain: rule.chain.clone(),
        text: rule.text(),
        matches: Vec::new(),
        unknown: Vec::new(),
        target: Target::None,
    };
    let mut module = String::new();
    let mut negated = false;
    let mut i = 0;
    // The value after an option, or a note that it is missing.
    let value = |i: usize| words.get(i + 1).map(|w: &Word| w.text.as_str());
    while i < words.len() {
        let word = words[i].text.as_str();
        if word == "!" && !words[i].quoted {
            negated = true;
            i += 1;
            continue;
        }
        let mut consumed = 2;
        let understood: Option<Option<Match>> = match (word, value(i)) {
            ("-s" | "--source", Some(v)) => net(v).map(|n| Some(Match::Source(neg(negated, n)))),
            ("-d" | "--destination", Some(v)) => {
                net(v).map(|n| Some(Match::Destination(neg(negated, n))))
            }
            ("-i" | "--in-interface", Some(v)) => {
                Some(Some(Match::InInterface(neg(negated, v.to_owned()))))
            }
            ("-o" | "--out-interface", Some(v)) => {
                Some(Some(Match::OutInterface(neg(negated, v.to_owned()))))
            }
            ("-p" | "--protocol", Some(v)) => {
                Some(Some(Match::Protocol(neg(negated, Proto::parse(v)))))
            }
            ("-m" | "--match", Some(v)) => {
                module = v.to_owned();
                Some(None)
            }
            ("--dport" | "--destination-port", Some(v)) if module != "multiport" => {
                PortSpan::parse(v).map(|p| Some(Match::DestinationPort(neg(negated, vec![p]))))
            }
            ("--sport" | "--source-port", Some(v)) if module != "multiport" => {
                PortSpan::parse(v).map(|p| Some(Match::SourcePort(neg(negated, vec![p]))))
            }
            ("--dports" | "--destination-ports" | "--dport", Some(v)) => {
                port_list(v).map(|p| Some(Match::DestinationPort(neg(negated, p))))
            }
            ("--sports" | "--source-ports" | "--sport", Some(v)) => {
                port_list(v).map(|p| Some(Match::SourcePort(neg(negated, p))))
            }
            ("--ports", Some(v)) => port_list(v).map(|p| Some(Match::EitherPort(neg(negated, p)))),
            ("--src-range", Some(v)) => range(v).map(|r| Some(Match::SourceRange(neg(negated, r)))),
            ("--dst-range", Some(v)) => {
                range(v).map(|r| Some(Match::DestinationRange(neg(negated, r))))
            }
            ("--ctstate" | "--state", Some(v)) => v
                .split(',')
                .map(CtState::parse)
                .collect::<Option<Vec<_>>>()
                .map(|s| Some(Match::ConnState(neg(negated, s)))),
            ("--ctorigsrc", Some(v)) => net(v).map(|n| Some(Match::CtOrigSource(neg(negated, n)))),
            ("--ctorigdst", Some(v)) => {
                net(v).map(|n| Some(Match::CtOrigDestination(neg(negated, n))))
            }
            ("--ctorigsrcport", Some(v)) => {
                PortSpan::parse(v).map(|p| Some(Match::CtOrigSourcePort(neg(negated, p))))
            }
            ("--ctorigdstport", Some(v)) => {
                PortSpan::parse(v).map(|p| Some(Match::CtOrigDestinationPort(neg(negated, p))))
            }
            ("--src-type", Some(v)) => Some(Some(Match::SourceType(neg(negated, v.to_owned())))),
            ("--dst-type", Some(v)) => {
                Some(Some(Match::DestinationType(neg(negated, v.to_owned()))))
            }
            ("--match-set", Some(name)) => match words.get(i + 2).map(|w| w.text.as_str()) {
                Some(flags) if !flags.contains(',') => {
                    consumed = 3;
                    let direction = if flags == "dst" {
                        SetDirection::Destination
                    } else {
                        SetDirection::Source
                    };
                    Some(Some(Match::Set {
                        negated,
                        name: name.to_owned(),
                        direction,
                    }))
                }
                _ => None,
            },
            ("--tcp-flags", Some(mask)) => words.get(i + 2).map(|set| {
                consumed = 3;
                Some(Match::TcpFlags(neg(
                    negated,
                    (flag_list(mask), flag_list(&set.text)),
                )))
            }),
            ("--syn", _) => {
                consumed = 1;
                Some(Some(Match::TcpFlags(neg(
                    negated,
                    (flag_list("FIN,SYN,RST,ACK"), flag_list("SYN")),
                ))))
            }
            ("--physdev-is-bridged", _) if module == "physdev" => {
                consumed = 1;
                Some(Some(Match::PhysdevIsBridged(neg(negated, ()))))
            }
            ("--icmp-type" | "--icmpv6-type", Some(v)) => {
                Some(Some(Match::IcmpType(neg(negated, v.to_owned()))))
            }
            ("--comment", Some(_)) => Some(None),
            ("--limit" | "--limit-burst", Some(_)) if module == "limit" => {
                if !parsed.matches.contains(&Match::Limit) {
                    parsed.matches.push(Match::Limit);
                }
                Some(None)
            }
            ("-j" | "--jump" | "-g" | "--goto", Some(v)) => {
                parsed.target = target(word, v, &words[i + 2..], &mut parsed.unknown);
                break;
            }
            _ => None,
        };
        match understood {
            Some(Some(found)) => parsed.matches.push(found),
            Some(None) => {}
            None => {
                // Not understood: note it and skip to the next option.
                let name = if module.is_empty() || word == "-m" {
                    word.to_owned()
                } else {
                    format!("-m {module} {word}")
                };
                parsed.unknown.push(name);
                consumed = 1 + words[i + 1..]
                    .iter()
                    .take_while(|w| w.quoted || !(w.text.starts_with('-') || w.text == "!"))
                    .count();
            }
        }
        negated = false;
        i += consumed;
    }
    parsed
}

fn target(option: &str, name: &str, rest: &[Word], unknown: &mut Vec<String>) -> Target {
    if option == "-g" || option == "--goto" {
        return Target::Goto(name.to_owned());
    }
    let option_value = |option: &str| {
        rest.iter()
            .position(|w| w.text == option)
            .and_then(|at| rest.get(at + 1))
            .map(|w| w.text.clone())
    };
    match name {
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "RETURN" => Target::Return,
        "REJECT" => Target::Reject(
            option_value("--reject-with").unwrap_or_else(|| "icmp-port-unreachable".to_owned()),
        ),
        "DNAT" => match option_value("--to-destination")
            .as_deref()
            .map(dnat_destination)
        {
            Some(Some((address, port))) => Target::Dnat { address, port },
            _ => {
                unknown.push("-j DNAT (destination not understood)".to_owned());
                Target::Continue("DNAT".to_owned())
            }
        },
        other if NON_TERMINATING.contains(&other) => Target::Continue(other.to_owned()),
        other if other.chars().all(|c| c.is_ascii_uppercase()) && !other.starts_with("DOCKER") => {
            // An extension target we do not model (SNAT, MASQUERADE, TPROXY, ...).
            unknown.push(format!("-j {other}"));
            Target::Continue(other.to_owned())
        }
        chain => Target::Jump(chain.to_owned()),
    }
}

/// `ADDR`, `ADDR:PORT`, `ADDR:PORT-PORT`, `[V6]:PORT`, `:PORT`.
fn dnat_destination(text: &str) -> Option<(Option<IpAddr>, Option<PortSpan>)> {
    let (address, port) = if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        (address, after.strip_prefix(':'))
    } else if text.matches(':').count() > 1 {
        (text, None) // a bare IPv6 address
    } else {
        match text.split_once(':') {
            Some((address, port)) => (address, Some(port)),
            None => (text, None),
        }
    };
    let address = if address.is_empty() {
        None
    } else {
        Some(address.parse().ok()?)
    };
    let port = match port {
        Some(p) => Some(PortSpan::parse(p)?),
        None => None,
    };
    Some((address, port))
}

fn neg<T>(negated: bool, value: T) -> Neg<T> {
    Neg { negated, value }
}

fn net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn port_list(text: &str) -> Option<Vec<PortSpan>> {
    text.split(',').map(PortSpan::parse).collect()
}

fn range(text: &str) -> Option<(IpAddr, IpAddr)> {
    let (a, b) = text.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn flag_list(text: &str) -> Vec<String> {
    if text == "ALL" {
        return ["FIN", "SYN", "RST", "PSH", "ACK", "URG"]
            .map(str::to_owned)
            .to_vec();
    }
    if text == "NONE" {
        return Vec::new();
    }
    text.split(',').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::dump;

    fn rule(text: &str) -> Rule {
        let dump = dump::parse(&format!("*filter\n{text}\nCOMMIT\n")).unwrap();
        parse(&dump.tables[0].rules[0])
    }

    #[test]
    fn docker_user_rules_are_understood() {
        let r = rule(
            "-A DOCKER-USER -s 192.0.2.0/24 -i eth0 -p tcp -m conntrack --ctstate DNAT --ctorigdst 203.0.113.10 --ctorigdstport 8080 -m comment --comment \"office app\" -j RETURN",
        );
        assert!(r.unknown.is_empty(), "{:?}", r.unknown);
        assert_eq!(r.target, Target::Return);
        assert_eq!(r.matches.len(), 6);
        assert!(r.matches.contains(&Match::CtOrigDestinationPort(Neg {
            negated: false,
            value: PortSpan {
                low: 8080,
                high: 8080
            }
        })));
        assert!(r.matches.contains(&Match::CtOrigDestination(Neg {
            negated: false,
            value: "203.0.113.10/32".parse().unwrap()
        })));
    }

    #[test]
    fn negation_multiport_iprange_and_targets() {
        let r = rule(
            "-A DOCKER ! -i docker0 -p tcp -m multiport --dports 80,8000:8100 -m iprange --src-range 10.0.0.1-10.0.0.9 -j DNAT --to-destination 172.17.0.2:80",
        );
        assert!(r.unknown.is_empty(), "{:?}", r.unknown);
        assert_eq!(
            r.matches[0],
            Match::InInterface(Neg {
                negated: true,
                value: "docker0".into()
            })
        );
        assert_eq!(
            r.matches[2],
            Match::DestinationPort(Neg {
                negated: false,
                value: vec![
                    PortSpan { low: 80, high: 80 },
                    PortSpan {
                        low: 8000,
                        high: 8100
                    }
                ]
            })
        );
        assert_eq!(
            r.target,
            Target::Dnat {
                address: Some("172.17.0.2".parse().unwrap()),
                port: Some(PortSpan { low: 80, high: 80 })
            }
        );
        let v6 = rule(
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80",
        );
        assert_eq!(
            v6.target,
            Target::Dnat {
                address: Some("fd00::2".parse().unwrap()),
                port: Some(PortSpan { low: 80, high: 80 })
            }
        );
    }

    #[test]
    fn what_is_not_understood_is_named() {
        let r = rule("-A INPUT -m mark --mark 0x1 -m hl --hl-eq 255 -j ACCEPT");
        assert_eq!(r.unknown, ["-m mark --mark", "-m hl --hl-eq"]);
        assert_eq!(r.target, Target::Accept);
        let r = rule("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE");
        assert_eq!(r.unknown, ["-j MASQUERADE"]);
        let r = rule("-A INPUT -p tcp --syn -m limit --limit 5/min -j LOG --log-prefix \"x: \"");
        assert!(r.unknown.is_empty(), "{:?}", r.unknown);
        assert!(r.matches.contains(&Match::Limit));
        assert_eq!(r.target, Target::Continue("LOG".into()));
    }
}
