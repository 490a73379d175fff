//! Validated value types: every string or number that can reach a rendered rule passes
//! through one of these, so nothing from the policy file is ever pasted into a rule
//! unchecked (no quotes, spaces, newlines or option look-alikes where they don't belong).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::family::Family;
use crate::iptables::options;

/// Which families a rule applies to, as written in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FamilyChoice {
    /// Both IPv4 and IPv6 (the default).
    #[default]
    Both,
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

impl FamilyChoice {
    /// Whether rules of this choice go into `family`'s file.
    pub fn includes(self, family: Family) -> bool {
        match self {
            FamilyChoice::Both => true,
            FamilyChoice::Ipv4 => family == Family::Ipv4,
            FamilyChoice::Ipv6 => family == Family::Ipv6,
        }
    }
}

/// Transport protocol of a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// Defines a string newtype whose only constructor is a validating `FromStr`.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                $check(text)?;
                Ok($name(text.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                $check(&text)?;
                Ok($name(text))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn check_instance(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an instance name of 1-64 characters from [A-Za-z0-9_-], not starting with '-', found {text:?}"
        ))
    }
}

validated_string!(
    /// Name of a firewall instance (`base` in `iptables@base.service`); also a file name stem.
    InstanceName,
    check_instance
);

impl Default for InstanceName {
    fn default() -> Self {
        InstanceName("base".to_owned())
    }
}

fn check_interface(text: &str) -> Result<(), String> {
    let body = text.strip_suffix('+').unwrap_or(text);
    let ok = !body.is_empty()
        && text.len() <= 15
        && body != "."
        && body != ".."
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an interface name of at most 15 characters from [A-Za-z0-9_.-] (a trailing '+' matches a prefix), found {text:?}"
        ))
    }
}

validated_string!(
    /// A network interface name as iptables takes it (`eth0`, or `br-+` for a prefix).
    InterfaceName,
    check_interface
);

impl InterfaceName {
    /// Whether `interface` is one this name stands for.
    pub fn matches(&self, interface: &str) -> bool {
        interface_pattern_matches(&self.0, interface)
    }
}

/// Whether an interface pattern as iptables reads `-i`/`-o` (a trailing `+` matches a
/// prefix) matches `interface`.
pub fn interface_pattern_matches(pattern: &str, interface: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => interface.starts_with(prefix),
        None => interface == pattern,
    }
}

fn check_comment(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 200 {
        return Err(format!(
            "expected a comment of 1-200 characters, found {} characters",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Err(format!(
            "expected printable ASCII without quotes, backslashes or control characters in a comment, found {bad:?} in {text:?}"
        ));
    }
    // iptables-save prints a one-word comment without quotes, where `-j` or `-g` reads as
    // an option of the rule (the shape check refuses such a line, blaming the rendered
    // file instead of the policy).
    if text.starts_with('-') {
        return Err(format!(
            "expected a comment that does not start with '-' (a one-word comment such as \"-j\" reads as an option of the rule), found {text:?}"
        ));
    }
    Ok(())
}

validated_string!(
    /// Text for `-m comment --comment "..."`: printable ASCII, no quotes or backslashes.
    Comment,
    check_comment
);

impl Comment {
    /// Builds a comment from text the program composed itself from validated parts.
    pub(crate) fn generated(text: String) -> Comment {
        debug_assert!(check_comment(&text).is_ok(), "generated comment {text:?}");
        Comment(text)
    }
}

fn check_list_name(text: &str) -> Result<(), String> {
    let mut bytes = text.bytes();
    let ok = text.len() <= 32
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a list name of 1-32 characters from [A-Za-z0-9_-] starting with a letter, found {text:?}"
        ))
    }
}

validated_string!(
    /// Name of an address list declared under `[lists]`.
    ListName,
    check_list_name
);

fn check_log_prefix(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 20
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a log prefix of 1-20 characters from [A-Za-z0-9_.:-], found {text:?}"
        ))
    }
}

validated_string!(
    /// Start of the kernel log prefix; the chain tag is appended (kernel limit: 29 bytes).
    LogPrefix,
    check_log_prefix
);

impl Default for LogPrefix {
    fn default() -> Self {
        LogPrefix("iptables-ctl".to_owned())
    }
}

fn check_log_rate(text: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "expected a rate like \"5/minute\" (1-10000 per second, minute, hour or day), found {text:?}"
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(expected)?;
    let count: u32 = count.parse().map_err(|_| expected())?;
    if !(1..=10000).contains(&count) || !matches!(unit, "second" | "minute" | "hour" | "day") {
        return Err(expected());
    }
    Ok(())
}

validated_string!(
    /// A `-m limit --limit` rate such as `5/minute`.
    LogRate,
    check_log_rate
);

impl Default for LogRate {
    fn default() -> Self {
        LogRate("5/minute".to_owned())
    }
}

/// An IPv4 or IPv6 network (or single address) whose host bits are zero.
///
/// `192.0.2.7/24` is refused rather than silently widened, since the admin most likely
/// meant either `192.0.2.0/24` or `192.0.2.7/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Network(IpNet);

impl Network {
    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// The family of the network.
    pub fn family(&self) -> Family {
        Family::of_net(&self.0)
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(Network(IpNet::from(addr)));
        }
        let net: IpNet = text.parse().map_err(|_| {
            format!("expected an IPv4 or IPv6 address or network like \"192.0.2.0/24\" or \"2001:db8::/32\", found {text:?}")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "{text} has host bits set: write the network {} or the single address {}",
                net.trunc(),
                IpNet::from(net.addr())
            ));
        }
        Ok(Network(net))
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A single address of this host, as the client dialed it (`--ctorigdst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostAddress(IpAddr);

impl HostAddress {
    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl TryFrom<String> for HostAddress {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(HostAddress).map_err(|_| {
            format!(
                "expected one IPv4 or IPv6 address of this host, like \"203.0.113.10\" (no prefix length), found {text:?}"
            )
        })
    }
}

/// One source or destination in a rule: a literal network or the name of a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AddressRef {
    /// A literal address or network.
    Net(Network),
    /// A list declared under `[lists]`.
    List(ListName),
}

impl TryFrom<String> for AddressRef {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        // List names start with a letter and never contain '.', ':' or '/', so the two
        // kinds cannot be confused.
        if let Ok(name) = text.parse::<ListName>() {
            return Ok(AddressRef::List(name));
        }
        if text.contains(['.', ':', '/']) || text.starts_with(|c: char| c.is_ascii_digit()) {
            // Looks like an address: give the precise reason (such as host bits set).
            return text.parse().map(AddressRef::Net);
        }
        Err(format!(
            "expected an address, a network like \"192.0.2.0/24\", or the name of a list under [lists], found {text:?}"
        ))
    }
}

/// A port or an inclusive port range, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// Builds a range; `first` must be at least 1 and not above `last`.
    pub fn new(first: u16, last: u16) -> Result<PortRange, String> {
        if first == 0 {
            return Err("expected ports from 1 to 65535, found 0".to_owned());
        }
        if first > last {
            return Err(format!(
                "expected a range whose first port is not above its last, found {first}-{last}"
            ));
        }
        Ok(PortRange { first, last })
    }

    /// First port of the range.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// Last port of the range (equal to `first` for a single port).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// The port in iptables syntax: `22` or `8000:8100`.
    pub fn iptables(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }

    fn from_number(value: i64) -> Result<PortRange, String> {
        let port = u16::try_from(value)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| format!("expected a port from 1 to 65535, found {value}"))?;
        PortRange::new(port, port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!("expected a port from 1 to 65535 or a range like \"8000-8100\", found {text:?}")
        };
        let parse_one = |t: &str| -> Result<u16, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(expected());
            }
            let n: u32 = t.parse().map_err(|_| expected())?;
            u16::try_from(n)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| format!("expected ports from 1 to 65535, found {n}"))
        };
        match text.split_once('-') {
            Some((a, b)) => PortRange::new(parse_one(a)?, parse_one(b)?),
            None => {
                let port = parse_one(text)?;
                PortRange::new(port, port)
            }
        }
    }
}

/// One or more ports: `port = 22`, `port = "8000-8100"` or `port = [80, 443]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(Vec<PortRange>);

impl Ports {
    /// The ports, in the order written.
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        const EXPECTED: &str =
            "a port from 1 to 65535, a range like \"8000-8100\", or a list of them";

        impl<'de> Visitor<'de> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ports, E> {
                PortRange::from_number(v)
                    .map(|p| Ports(vec![p]))
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ports, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ports, E> {
                v.parse().map(|p| Ports(vec![p])).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ports, A::Error> {
                let mut ports = Vec::new();
                while let Some(one) = seq.next_element::<Ports>()? {
                    ports.extend(one.0);
                }
                if ports.is_empty() {
                    return Err(de::Error::custom(format!(
                        "expected {EXPECTED}, found an empty list"
                    )));
                }
                Ok(Ports(ports))
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

/// Targets a raw rule may jump to: those of any rule in an owned chain (verdicts and
/// logging, never another chain).
const RAW_TARGETS: [&str; 6] = crate::iptables::shape::ALLOWED_TARGETS;

fn check_raw_rule(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 1000 {
        return Err(format!(
            "expected a rule of 1-1000 characters, found {} characters",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Err(format!(
            "expected printable ASCII without quotes or backslashes in a raw rule (use the entry's `comment` field for comments), found {bad:?}"
        ));
    }
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if !tokens
        .first()
        .is_some_and(|t| t.starts_with('-') || *t == "!")
    {
        return Err(format!(
            "expected rule options such as \"-p udp --dport 51820 -j ACCEPT\" (without -A CHAIN), found {text:?}"
        ));
    }
    // Every word, values included: getopt takes a word as an option wherever it is not
    // the value of the option before it, and which options take values depends on the
    // modules iptables loads.
    for token in &tokens {
        options::plain_spelling(token)?;
        options::rule_option(token)?;
    }
    check_raw_ports(&tokens)?;
    let jumps: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(**t, "-j" | "--jump"))
        .map(|(i, _)| i)
        .collect();
    match jumps.as_slice() {
        [at] => {
            let target = tokens.get(at + 1).copied().unwrap_or("");
            if !RAW_TARGETS.contains(&target) {
                return Err(format!(
                    "expected -j with one of {}, found {target:?}",
                    RAW_TARGETS.join(", ")
                ));
            }
            Ok(())
        }
        [] => Err(format!(
            "expected exactly one -j TARGET (one of {}), found none",
            RAW_TARGETS.join(", ")
        )),
        _ => Err("expected exactly one -j TARGET, found several".to_owned()),
    }
}

impl RawRule {
    /// The rule with its words separated by single spaces, as it is rendered.
    pub fn normalized(&self) -> String {
        self.0.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Options whose value is a port, a `A:B` range or a comma list of them.
const PORT_OPTIONS: [&str; 14] = [
    "--dport",
    "--sport",
    "--destination-port",
    "--source-port",
    "--dports",
    "--sports",
    "--destination-ports",
    "--source-ports",
    "--ports",
    "--ctorigdstport",
    "--ctorigsrcport",
    "--ctrepldstport",
    "--ctreplsrcport",
    "--to-ports",
];

/// Numeric ports in raw rules must be plain decimal numbers that fit in 16 bits, because
/// iptables 1.8.9 reads the others differently from option to option, and the kernel
/// check cannot tell: udp's `--sport` and conntrack's `--ctorigdstport` wrap 99999 (and
/// `+99999`) to 34463, while tcp's `--dport` and multiport read `010` as octal 8,
/// `065535` as 27485 and `0x50` as hex 80. Service names (`ssh`) are left to iptables.
fn check_raw_ports(tokens: &[&str]) -> Result<(), String> {
    for pair in tokens.windows(2) {
        let [option, value] = pair else { continue };
        if !PORT_OPTIONS.contains(option) {
            continue;
        }
        for number in value.split([',', ':']) {
            // A service name starts with a letter; anything else is read as a number.
            if number.is_empty() || number.starts_with(|c: char| c.is_ascii_alphabetic()) {
                continue;
            }
            let plain = number.bytes().all(|b| b.is_ascii_digit())
                && (number == "0" || !number.starts_with('0'));
            if !plain || number.parse::<u16>().is_err() {
                return Err(format!(
                    "expected ports from 0 to 65535 in plain decimal after {option}, found {number} in {value:?} (iptables wraps ports above 65535 and reads a leading 0 as octal, 0x as hex, differently from option to option)"
                ));
            }
        }
    }
    Ok(())
}

validated_string!(
    /// Extra rule options for one chain (the escape hatch), checked to stay one filter rule.
    RawRule,
    check_raw_rule
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in ["eth0", "br-+", "docker0", "wg0.5", "a", "abcdefghijklmno"] {
            assert!(ok.parse::<InterfaceName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "abcdefghijklmnop",
            "eth 0",
            "eth\"0",
            "eth0\n",
            "-j",
            "..",
            "e/1",
            "é",
        ] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn networks_refuse_host_bits_and_garbage() {
        assert_eq!(
            "192.0.2.7".parse::<Network>().map(|n| n.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            "2001:db8::/32".parse::<Network>().map(|n| n.family()),
            Ok(Family::Ipv6)
        );
        let err = "192.0.2.7/24".parse::<Network>().expect_err("host bits");
        assert!(
            err.contains("192.0.2.0/24") && err.contains("192.0.2.7/32"),
            "{err}"
        );
        for bad in ["192.0.2.300", "192.0.2.0/33", "2001:db8::/129", "x", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn address_refs_tell_lists_from_networks() {
        assert_eq!(
            AddressRef::try_from("office".to_owned()),
            Ok(AddressRef::List("office".parse().expect("name")))
        );
        assert!(matches!(
            AddressRef::try_from("fe80::1".to_owned()),
            Ok(AddressRef::Net(_))
        ));
        let err = AddressRef::try_from("10.0.0.1/8".to_owned()).expect_err("host bits");
        assert!(err.contains("host bits"), "{err}");
        assert!(AddressRef::try_from("bad name!".to_owned()).is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            "8000-8100".parse::<PortRange>().map(|p| p.iptables()),
            Ok("8000:8100".into())
        );
        assert!("0".parse::<PortRange>().is_err());
        assert!("65536".parse::<PortRange>().is_err());
        assert!("9-1".parse::<PortRange>().is_err());
        assert!("1-".parse::<PortRange>().is_err());
        assert!("+5".parse::<PortRange>().is_err());
        assert!(PortRange::from_number(-1).is_err());
    }

    #[test]
    fn comments_refuse_quotes_and_control_characters() {
        assert!("web server (prod)".parse::<Comment>().is_ok());
        for bad in [
            "", "a\"b", "a'b", "a\\b", "a\nb", "a\tb", "x\u{7f}", "-j", "-g", "--jump", "-A", "- x",
        ] {
            assert!(bad.parse::<Comment>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn raw_rules_stay_one_filter_rule() {
        assert!("-p udp --dport 51820 -j ACCEPT".parse::<RawRule>().is_ok());
        assert!("! -s 10.0.0.0/8 -j DROP".parse::<RawRule>().is_ok());
        assert!("-p tcp --sport 0:1023 -j DROP".parse::<RawRule>().is_ok());
        assert!(
            "-p tcp --dport ssh:http -j ACCEPT"
                .parse::<RawRule>()
                .is_ok()
        );
        assert!(
            "-p tcp --dport 0:65535 -j ACCEPT"
                .parse::<RawRule>()
                .is_ok()
        );
        for bad in [
            "-p tcp -j ACCEPT\n-A FORWARD -j ACCEPT",
            "-A INPUT -j ACCEPT",
            "-t nat -j ACCEPT",
            "-p tcp -j DOCKER",
            "-p tcp",
            "-j ACCEPT -j DROP",
            "-m comment --comment \"x\" -j ACCEPT",
            "ACCEPT",
            "-p tcp -g ACCEPT",
            "-p udp --dport 99999 -j ACCEPT",
            "-p tcp -m multiport --dports 80,70000 -j ACCEPT",
            "-p tcp --sport 1:65536 -j ACCEPT",
            // Spellings iptables reads as other ports (octal, hex, wrapped).
            "-p udp --sport +99999 -j ACCEPT",
            "-p tcp -m conntrack --ctorigdstport +99999 -j ACCEPT",
            "-p tcp --dport 010 -j ACCEPT",
            "-p tcp --dport 065535 -j ACCEPT",
            "-p tcp -m multiport --dports 80,0x50 -j ACCEPT",
            "-p tcp --dport 0X50:90 -j ACCEPT",
            "-p tcp --dport +80 -j ACCEPT",
            "-p tcp --dport 1e3 -j ACCEPT",
            // The spellings that getopt reads as something else.
            "-p tcp --dport=99999 -j ACCEPT",
            "-p tcp --dpo 99999 -j ACCEPT",
            "-p tcp --destination-p 99999 -j ACCEPT",
            "-m conntrack --ctorigdstp 99999 -j ACCEPT",
            "-tnat -j ACCEPT",
            "--tab nat -j ACCEPT",
            "--app FORWARD -j ACCEPT",
            "-AFORWARD -j ACCEPT",
            "-p tcp -gDOCKER",
            "-p tcp --jump=DOCKER",
            "--modprobe=/x -j ACCEPT",
            "-M /x -j ACCEPT",
            "-6 -j ACCEPT",
        ] {
            assert!(bad.parse::<RawRule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_rates() {
        assert!("5/minute".parse::<LogRate>().is_ok());
        for bad in ["0/minute", "5/fortnight", "5", "x/second", "10001/day"] {
            assert!(bad.parse::<LogRate>().is_err(), "{bad}");
        }
    }
}
