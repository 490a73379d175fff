//! Hostile-value matrix (issue 9): thousands of hostile values in every string field of
//! the policy, and every spelling of a `[[raw]]` rule option that iptables' getopt
//! accepts. Each value is spliced into an otherwise valid policy (TOML-escaped, so it
//! reaches the validator; plus raw TOML fragments that break the TOML itself), read and
//! rendered with the library, and must end one of two ways:
//!
//! - refused, with an error that names the policy file, `line:col` and the field (or,
//!   for a shape refusal, the rendered file and line, or for a raw rule the kernel
//!   refuses, the entry's `rule`), on exactly the three lines of a report and with no raw
//!   control character in it;
//! - rendered, with every line passing `shape::tokenize` and every word the value
//!   changed being either the value itself as one whole quoted word (comments) or a
//!   legal token of its kind (an interface name, a network, a port); then loaded into
//!   the kernel in a throwaway network namespace with `instance::prove` (which also runs
//!   `check_loaded`), and the kernel's own `iptables-save` output checked here once more:
//!   only INPUT, OUTPUT and DOCKER-USER of the filter table hold rules, every rule has
//!   exactly one `-j` among the allowed targets, and each hostile comment, interface,
//!   log prefix and raw rule is there as it was rendered (a raw rule with its target).
//!
//! Values that render are proven in batches (many entries, or list elements, in one
//! policy), after checking that every rule line a value produced on its own is in the
//! batch; a batch the kernel refuses is split until the refused values are found alone.
//! The string fields are listed below ([`SLOTS`]); `fields_are_all_covered` derives the
//! policy's fields from the parser itself and fails when one is added that the matrix
//! does not know.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use ipnet::IpNet;
use iptables_ctl::family::Family;
use iptables_ctl::iptables::instance;
use iptables_ctl::iptables::render::{self, RenderRequest, RenderedFile, Templates};
use iptables_ctl::iptables::shape::{self, ALLOWED_TARGETS, OWNED_CHAINS};
use iptables_ctl::iptables::trial::{NetnsTrial, TrialReport};
use iptables_ctl::policy::Policy;

/// Where the policies claim to come from (never read: they are parsed from memory).
const POLICY_PATH: &str = "/hostile-matrix/base.toml";

/// The policy every case starts from: valid, with every field present. A line `@site@`
/// is a place a case may fill; [`SITES`] gives what it holds by default. `{n}` becomes
/// the case's number in the section that holds the case (0 elsewhere).
const SKELETON: &str = r#"
[interfaces]
@external@
@bridges@

[defaults]
@deny@

[lists]
@office@
@list_name@

[host]
ping = true
@containers@

[[host.services]]
@svc_port@
@svc_proto@
@svc_from@
@svc_iface@
@svc_family@
@svc_comment@

[outbound]
@out_policy@
essentials = true

[[outbound.allow]]
@out_port@
@out_proto@
@out_to@
@out_family@
@out_comment@

[docker]
@docker_default@

[[docker.published]]
@pub_port@
@pub_proto@
@pub_from@
@pub_host@
@pub_iface@
@pub_family@
@pub_comment@

[[docker.published]]
@pub1_port@
@pub1_from@

[log]
enabled = true
@log_prefix@
@log_rate@
burst = 10

[[raw]]
@raw_chain@
@raw_family@
@raw_rule@
@raw_comment@
@raw_backend@

[lints]
@lint_skip@
"#;

/// Each site's default line.
const SITES: &[(&str, &str)] = &[
    ("external", r#"external = "auto""#),
    ("bridges", r#"docker_bridges = ["docker0", "br-+"]"#),
    ("deny", r#"deny = "reject""#),
    ("office", r#"office = ["192.0.2.0/24", "2001:db8:1::/48"]"#),
    ("list_name", r#"extra = ["198.51.100.0/24"]"#),
    ("containers", r#"containers = "listed""#),
    ("svc_port", "port = 22"),
    ("svc_proto", r#"proto = "tcp""#),
    ("svc_from", r#"from = ["office", "203.0.113.0/24"]"#),
    ("svc_iface", r#"interfaces = ["eth0", "eth1"]"#),
    ("svc_family", r#"family = "both""#),
    ("svc_comment", r#"comment = "ssh""#),
    ("out_policy", r#"policy = "accept""#),
    ("out_port", r#"port = "8000-8100""#),
    ("out_proto", r#"proto = "udp""#),
    ("out_to", r#"to = ["office", "2001:db8:2::/48"]"#),
    ("out_family", r#"family = "both""#),
    ("out_comment", r#"comment = "out""#),
    ("docker_default", r#"default = "deny""#),
    ("pub_port", "port = 8080"),
    ("pub_proto", r#"proto = "tcp""#),
    ("pub_from", r#"from = ["office", "203.0.113.0/24"]"#),
    ("pub_host", r#"host_address = "203.0.113.10""#),
    ("pub_iface", r#"interfaces = ["eth0", "eth1"]"#),
    ("pub_family", r#"family = "both""#),
    ("pub_comment", r#"comment = "web""#),
    ("pub1_port", "port = [8443, 9000]"),
    ("pub1_from", r#"from = ["extra"]"#),
    ("log_prefix", r#"prefix = "iptables-ctl""#),
    ("log_rate", r#"rate = "5/minute""#),
    ("raw_chain", r#"chain = "input""#),
    ("raw_family", r#"family = "both""#),
    ("raw_rule", r#"rule = "-p udp --dport 51820 -j ACCEPT""#),
    ("lint_skip", r#"skip = ["rules-in-other-variant"]"#),
    ("raw_comment", r#"comment = "raw case {n}""#),
    ("raw_backend", r#"backend = "iptables""#),
];

/// What a field holds, which decides the hostile values it gets and which rendered
/// words are legal for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `auto` or an interface name.
    InterfaceOrAuto,
    /// An interface name.
    Interface,
    /// A list name (a key under `[lists]`, and a reference to it).
    ListName,
    /// An address or network.
    Network,
    /// An address, a network or a list name.
    AddressRef,
    /// One address, no prefix length.
    HostAddress,
    /// A port or a range, as a string.
    Port,
    /// One of a few words (`tcp`, `reject`, `input`, ...).
    Enum,
    /// A comment.
    Comment,
    /// `log.prefix`.
    LogPrefix,
    /// `log.rate`.
    LogRate,
    /// `[[raw]] rule`.
    RawRule,
}

/// How values of one field are put together for one kernel check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// One policy per value.
    Single,
    /// The entry holding the field is repeated, once per value.
    Entry,
    /// The values are elements of one list.
    List,
}

/// One string field of the policy and where a value for it goes.
struct Slot {
    /// The field as errors name it.
    field: &'static str,
    /// The field in the policy's schema (array indices dropped), as
    /// `fields_are_all_covered` finds it.
    key: &'static str,
    kind: Kind,
    /// The sites it fills, each with the line it writes there (`{}` is the value).
    sites: &'static [(&'static str, &'static str)],
    batch: Batch,
    /// Other fields an error about this value may name (besides the section's own).
    also: &'static [&'static str],
}

/// Every string field of the policy.
const SLOTS: &[Slot] = &[
    Slot {
        field: "interfaces.external",
        key: "interfaces.external",
        kind: Kind::InterfaceOrAuto,
        sites: &[("external", "external = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "interfaces.external[1]",
        key: "interfaces.external",
        kind: Kind::Interface,
        sites: &[("external", r#"external = ["eth0", {}]"#)],
        batch: Batch::List,
        also: &[],
    },
    Slot {
        field: "interfaces.docker_bridges[1]",
        key: "interfaces.docker_bridges",
        kind: Kind::Interface,
        sites: &[("bridges", r#"docker_bridges = ["docker0", {}]"#)],
        batch: Batch::List,
        also: &[],
    },
    Slot {
        field: "defaults.deny",
        key: "defaults.deny",
        kind: Kind::Enum,
        sites: &[("deny", "deny = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "lists.office[2]",
        key: "lists.<name>[]",
        kind: Kind::Network,
        sites: &[(
            "office",
            r#"office = ["192.0.2.0/24", "2001:db8:1::/48", {}]"#,
        )],
        batch: Batch::List,
        also: &[],
    },
    Slot {
        // The name of a list, declared and used: a hostile name that collides with
        // `office` is a duplicate key, a TOML syntax error.
        field: "lists",
        key: "lists.<name>",
        kind: Kind::ListName,
        sites: &[
            ("list_name", r#"{} = ["198.51.100.0/24"]"#),
            ("pub1_from", "from = [{}]"),
        ],
        batch: Batch::Single,
        also: &["syntax"],
    },
    Slot {
        field: "host.containers",
        key: "host.containers",
        kind: Kind::Enum,
        sites: &[("containers", "containers = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "host.services[0].port",
        key: "host.services.port",
        kind: Kind::Port,
        sites: &[("svc_port", "port = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "host.services[0].proto",
        key: "host.services.proto",
        kind: Kind::Enum,
        sites: &[("svc_proto", "proto = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "host.services[0].from[1]",
        key: "host.services.from",
        kind: Kind::AddressRef,
        sites: &[("svc_from", r#"from = ["office", {}]"#)],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "host.services[0].interfaces[1]",
        key: "host.services.interfaces",
        kind: Kind::Interface,
        sites: &[("svc_iface", r#"interfaces = ["eth0", {}]"#)],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "host.services[0].family",
        key: "host.services.family",
        kind: Kind::Enum,
        sites: &[("svc_family", "family = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "host.services[0].comment",
        key: "host.services.comment",
        kind: Kind::Comment,
        sites: &[("svc_comment", "comment = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "outbound.policy",
        key: "outbound.policy",
        kind: Kind::Enum,
        sites: &[("out_policy", "policy = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "outbound.allow[0].port",
        key: "outbound.allow.port",
        kind: Kind::Port,
        sites: &[("out_port", "port = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "outbound.allow[0].proto",
        key: "outbound.allow.proto",
        kind: Kind::Enum,
        sites: &[("out_proto", "proto = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "outbound.allow[0].to[1]",
        key: "outbound.allow.to",
        kind: Kind::AddressRef,
        sites: &[("out_to", r#"to = ["office", {}]"#)],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "outbound.allow[0].family",
        key: "outbound.allow.family",
        kind: Kind::Enum,
        sites: &[("out_family", "family = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "outbound.allow[0].comment",
        key: "outbound.allow.comment",
        kind: Kind::Comment,
        sites: &[("out_comment", "comment = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.default",
        key: "docker.default",
        kind: Kind::Enum,
        sites: &[("docker_default", "default = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "docker.published[0].port",
        key: "docker.published.port",
        kind: Kind::Port,
        sites: &[("pub_port", "port = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[0].proto",
        key: "docker.published.proto",
        kind: Kind::Enum,
        sites: &[("pub_proto", "proto = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[0].from[1]",
        key: "docker.published.from",
        kind: Kind::AddressRef,
        sites: &[("pub_from", r#"from = ["office", {}]"#)],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[0].host_address",
        key: "docker.published.host_address",
        kind: Kind::HostAddress,
        sites: &[("pub_host", "host_address = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[0].interfaces[1]",
        key: "docker.published.interfaces",
        kind: Kind::Interface,
        sites: &[("pub_iface", r#"interfaces = ["eth0", {}]"#)],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[0].family",
        key: "docker.published.family",
        kind: Kind::Enum,
        sites: &[("pub_family", "family = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[0].comment",
        key: "docker.published.comment",
        kind: Kind::Comment,
        sites: &[("pub_comment", "comment = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "docker.published[1].port[1]",
        key: "docker.published.port",
        kind: Kind::Port,
        sites: &[("pub1_port", "port = [8443, {}]")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "log.prefix",
        key: "log.prefix",
        kind: Kind::LogPrefix,
        sites: &[("log_prefix", "prefix = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "log.rate",
        key: "log.rate",
        kind: Kind::LogRate,
        sites: &[("log_rate", "rate = {}")],
        batch: Batch::Single,
        also: &[],
    },
    Slot {
        field: "raw[0].chain",
        key: "raw.chain",
        kind: Kind::Enum,
        sites: &[("raw_chain", "chain = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "raw[0].family",
        key: "raw.family",
        kind: Kind::Enum,
        sites: &[("raw_family", "family = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "raw[0].rule",
        key: "raw.rule",
        kind: Kind::RawRule,
        sites: &[("raw_rule", "rule = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "lints.skip[1]",
        key: "lints.skip",
        kind: Kind::Enum,
        sites: &[("lint_skip", r#"skip = ["rules-in-other-variant", {}]"#)],
        batch: Batch::List,
        also: &[],
    },
    Slot {
        field: "raw[0].comment",
        key: "raw.comment",
        kind: Kind::Comment,
        sites: &[("raw_comment", "comment = {}")],
        batch: Batch::Entry,
        also: &[],
    },
    Slot {
        field: "raw[0].backend",
        key: "raw.backend",
        kind: Kind::Enum,
        sites: &[("raw_backend", "backend = {}")],
        batch: Batch::Entry,
        also: &[],
    },
];

/// The valid values of the enum fields (README), whose template branches are trusted.
const VARIANTS: &[(&str, &str)] = &[
    ("defaults.deny", "drop"),
    ("host.containers", "all"),
    ("outbound.policy", "allowlist"),
    ("docker.default", "allow"),
    ("host.services[0].proto", "udp"),
    ("host.services[0].family", "ipv4"),
    ("host.services[0].family", "ipv6"),
    ("raw[0].chain", "output"),
    ("raw[0].chain", "docker-user"),
];

/// Every field of the policy's schema that is not a string, and why the matrix leaves
/// it out (its hostile forms are still tried as TOML fragments in the string fields'
/// places, and out-of-range numbers in [`number_cases`]).
const NOT_STRINGS: &[(&str, &str)] = &[
    ("interfaces", "table"),
    ("defaults", "table"),
    ("lists", "table of lists: its names and entries are slots"),
    ("host", "table"),
    ("host.ping", "boolean"),
    ("host.services", "array of tables"),
    ("outbound", "table"),
    ("outbound.essentials", "boolean"),
    ("outbound.allow", "array of tables"),
    ("docker", "table"),
    ("docker.published", "array of tables"),
    ("log", "table"),
    ("log.enabled", "boolean"),
    ("log.burst", "integer"),
    ("raw", "array of tables"),
    ("lints", "table"),
];

// ---------------------------------------------------------------------------------------
// Building policies
// ---------------------------------------------------------------------------------------

/// One table of the skeleton.
struct Section {
    /// The field prefix errors inside it use, such as `host.services[0]`.
    field: String,
    /// Its table path, such as `host.services` (empty for the top level).
    table: String,
    lines: Vec<&'static str>,
}

fn sections() -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in SKELETON.lines() {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = counts.entry(name.to_owned()).or_insert(0);
            out.push(Section {
                field: format!("{name}[{n}]"),
                table: name.to_owned(),
                lines: vec![line],
            });
            *n += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Section {
                field: name.to_owned(),
                table: name.to_owned(),
                lines: vec![line],
            });
        } else if let Some(last) = out.last_mut() {
            last.lines.push(line);
        }
    }
    out
}

fn site_of(line: &str) -> Option<&str> {
    line.strip_prefix('@').and_then(|l| l.strip_suffix('@'))
}

fn default_line(site: &str) -> &'static str {
    SITES
        .iter()
        .find(|(name, _)| *name == site)
        .map(|(_, line)| *line)
        .unwrap_or_else(|| panic!("no default for site {site}"))
}

/// A policy text and where the sections holding the case's sites are.
struct Built {
    text: String,
    /// (field prefix, first line, last line) of each section holding a filled site.
    places: Vec<(String, usize, usize)>,
}

/// The skeleton with `slot`'s sites filled by `values` (TOML fragments, with the case
/// numbers): one value per entry copy for [`Batch::Entry`], all values in one list for
/// [`Batch::List`], the single value otherwise. `extra` lines go into the section
/// whose table is the given one (for probes).
fn build(
    all: &[Section],
    slot: Option<&Slot>,
    values: &[(usize, String)],
    extra: Option<(&str, &str)>,
) -> Built {
    let mut text = String::new();
    let mut places = Vec::new();
    let mut line_no = 0usize;
    if let Some(("", probe)) = extra {
        text.push_str(probe);
        text.push('\n');
        line_no += 1;
    }
    for section in all {
        let filled = |site: &str| slot.and_then(|s| s.sites.iter().find(|(n, _)| *n == site));
        let holds = section
            .lines
            .iter()
            .any(|l| site_of(l).is_some_and(|s| filled(s).is_some()));
        let copies: Vec<Vec<(usize, String)>> = match (holds, slot.map(|s| s.batch)) {
            (true, Some(Batch::Entry)) => values.iter().map(|v| vec![v.clone()]).collect(),
            (true, _) => vec![values.to_vec()],
            (false, _) => vec![Vec::new()],
        };
        for copy in copies {
            let first = line_no + 1;
            let n = if holds {
                copy.first().map_or(0, |(id, _)| *id)
            } else {
                0
            };
            for line in &section.lines {
                let out = match site_of(line) {
                    Some(site) => match filled(site) {
                        Some((_, format)) => {
                            let joined: Vec<&str> = copy.iter().map(|(_, v)| v.as_str()).collect();
                            format.replace("{}", &joined.join(", "))
                        }
                        None => default_line(site).to_owned(),
                    },
                    None => (*line).to_owned(),
                };
                let out = out.replace("{n}", &n.to_string());
                line_no += out.matches('\n').count() + 1;
                text.push_str(&out);
                text.push('\n');
                if let Some((table, probe)) = extra
                    && table == section.table
                    && line.starts_with('[')
                {
                    text.push_str(probe);
                    text.push('\n');
                    line_no += 1;
                }
            }
            if holds {
                places.push((section.field.clone(), first, line_no));
            }
        }
    }
    Built { text, places }
}

/// `value` as a TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string a TOML fragment stands for, if it is a string.
fn decode_fragment(fragment: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(&format!("v = {fragment}")).ok()?;
    table.get("v")?.as_str().map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// Hostile values
// ---------------------------------------------------------------------------------------

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Values every string field gets.
fn generic_values() -> Vec<String> {
    let mut values = strings(&[
        // Empty, blank and whitespace.
        "",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\r\n",
        "a b",
        " a",
        "a ",
        "a\tb",
        "a\nb",
        "a\rb",
        "a\u{b}b",
        "a\u{c}b",
        // Control characters and terminal escapes.
        "\0",
        "a\0b",
        "\u{7}",
        "\u{8}",
        "\u{7f}",
        "\u{85}",
        "\u{9b}31m",
        "\u{1b}[2J",
        "\u{1b}[31mred\u{1b}[0m",
        "\u{1b}]0;owned\u{7}",
        "\u{1b}[1A\u{1b}[2Kiptables-ctl: rules in force",
        "x\n-A FORWARD -j ACCEPT",
        "x\nCOMMIT\n*nat\n-A PREROUTING -j DNAT --to-destination 10.0.0.1",
        "ok\niptables-ctl: in force",
        // Quotes and backslashes.
        "\"",
        "'",
        "`",
        "\\",
        "\\\"",
        "\"\"",
        "a\"b",
        "a'b",
        "a\\b",
        "a\\\" \" -j ACCEPT -m comment --comment \"",
        "\" -j ACCEPT \"",
        "' -j ACCEPT '",
        "x\" -j ACCEPT -m comment --comment \"y",
        "a\\",
        "\\\\",
        "\\n",
        "\\u001b",
        // Rule fragments.
        "-j ACCEPT",
        "-j NFQUEUE --queue-num 7",
        "-j DOCKER",
        "-j DOCKER-USER",
        "-g DOCKER",
        "-j",
        "-g",
        "--jump",
        "--goto",
        "-A",
        "-t",
        "-F",
        "-X",
        "-N",
        "-P",
        "-I",
        "-D",
        "-jACCEPT",
        "--jump=ACCEPT",
        "ACCEPT",
        "DOCKER",
        "x -j ACCEPT",
        "x -j DROP -j ACCEPT",
        "--comment",
        "x --comment y",
        "-m comment --comment x",
        "-A FORWARD -j ACCEPT",
        "-t nat -A PREROUTING -j DNAT",
        "--modprobe=/bin/sh",
        "-M /bin/sh",
        // restore-file syntax.
        "#",
        "# x",
        "x # y",
        "x #",
        "*filter",
        "*nat",
        "COMMIT",
        ":DOCKER - [0:0]",
        ":INPUT ACCEPT [0:0]",
        "-F INPUT",
        "-X DOCKER-USER",
        "[0:0]",
        // Template syntax.
        "{{ x }}",
        "{{ log.prefix }}",
        "{{",
        "}}",
        "{% for r in host.services %}x{% endfor %}",
        "{% raw %}",
        "{%",
        "%}",
        "{#",
        "#}",
        "{# c #}",
        "%",
        "%s%n",
        "$(reboot)",
        "`id`",
        "${IFS}",
        // Punctuation and option look-alikes.
        "=",
        "a=b",
        "--dport=80",
        "-",
        "--",
        "-x",
        "--x",
        "!",
        "! -s 0.0.0.0/0",
        "+",
        "a+",
        ".",
        "..",
        "/",
        "a/b",
        ":",
        "a:b",
        ",",
        "a,b",
        ";",
        "|",
        "&",
        "<",
        ">",
        "~",
        "*",
        "?",
        "@",
        // Unicode.
        "\u{202e}",
        "a\u{202e}b",
        "\u{202e}PCCA j-",
        "\u{2066}x\u{2069}",
        "\u{200b}",
        "a\u{200b}b",
        "\u{feff}",
        "\u{ff0d}j ACCEPT",
        "\u{2010}j",
        "\u{2212}j",
        "e\u{301}",
        "\u{e9}",
        "\u{df}",
        "\u{65e5}\u{672c}",
        "\u{1f600}",
        "\u{2028}",
        "\u{2029}",
        "\u{a0}",
        "a\u{a0}b",
        "\u{ff45}\u{ff54}\u{ff48}0",
        // Numbers.
        "0",
        "-1",
        "1",
        "65535",
        "65536",
        "99999",
        "4294967296",
        "18446744073709551616",
        "0x50",
        "0X50",
        "0o120",
        "0b1",
        "1e3",
        "80.0",
        "+80",
        "080",
        "1_000",
        "NaN",
        "inf",
        // Addresses.
        "::ffff:1.2.3.4",
        "1.2.3.4/33",
        "fe80::1%eth0",
        "0.0.0.0/0",
        "::/0",
        "1.2.3.4/32",
        "256.1.1.1",
        "1.2.3",
        "[::1]",
        "::1/129",
        "192.0.2.0/24",
        "192.0.2.1/24",
        // Words that mean something elsewhere in the policy.
        "auto",
        "office",
        "extra",
        "eth0",
        "br-+",
        "tcp",
        "reject",
        "input",
        "5/minute",
    ]);
    for n in [
        1, 14, 15, 16, 19, 20, 21, 29, 30, 31, 32, 33, 64, 65, 199, 200, 201, 255, 256, 999, 1000,
        1001, 4096,
    ] {
        values.push("a".repeat(n));
    }
    values.push("x ".repeat(100));
    values.push(format!("{}\u{e9}", "a".repeat(199)));
    values.push("\u{e9}".repeat(100));
    values.push("-".repeat(200));
    values.push(format!("-j ACCEPT {}", "x".repeat(190)));
    values.push("a".repeat(70_000));
    // Every C0 control character inside a word, and a few C1 ones.
    for c in (0u32..0x20).chain([0x7f, 0x80, 0x84, 0x8d, 0x90, 0x9b, 0x9c, 0x9f]) {
        let c = char::from_u32(c).expect("char");
        values.push(format!("a{c}b"));
    }
    values
}

/// The words of every enum field, and near misses.
const ENUM_WORDS: &[&str] = &[
    "tcp",
    "udp",
    "TCP",
    "Tcp",
    "tcp ",
    " tcp",
    "icmp",
    "sctp",
    "all",
    "6",
    "17",
    "both",
    "ipv4",
    "ipv6",
    "IPv4",
    "inet",
    "inet6",
    "4",
    "reject",
    "drop",
    "REJECT",
    "DROP",
    "Reject",
    "accept",
    "ACCEPT",
    "deny",
    "allow",
    "DENY",
    "listed",
    "LISTED",
    "none",
    "allowlist",
    "allow-list",
    "allow_list",
    "input",
    "output",
    "docker-user",
    "INPUT",
    "OUTPUT",
    "DOCKER-USER",
    "docker_user",
    "dockeruser",
    "forward",
    "FORWARD",
    "prerouting",
    "nat",
    "docker",
    "DOCKER",
    "input\n",
    "input -j ACCEPT",
    "reject\u{200b}",
];

fn kind_values(kind: Kind) -> Vec<String> {
    match kind {
        Kind::InterfaceOrAuto | Kind::Interface => {
            let mut v = strings(&[
                "eth0",
                "eth0+",
                "br-+",
                "++",
                "eth0++",
                "e+th",
                "a.b",
                "...",
                ".+",
                "..+",
                "a..",
                "-eth0",
                "eth-",
                "eth_0",
                "eth:0",
                "eth/0",
                "eth 0",
                "eth0 ",
                " eth0",
                "abcdefghijklmno",
                "abcdefghijklmn+",
                "abcdefghijklmno+",
                "abcdefghijklmnop",
                "ETH0",
                "eth0\0",
                "eth0\n",
                "eth0!",
                "!eth0",
                "eth*",
                "lo",
                "docker0",
                "any",
                "AUTO",
                "auto+",
                "wg0.5",
                "-",
                "-+",
            ]);
            if kind == Kind::InterfaceOrAuto {
                v.push("auto ".to_owned());
            }
            v
        }
        Kind::ListName => strings(&[
            "a",
            "A",
            "z9",
            "a-b",
            "a_b",
            "a9_-",
            "abcdefghijklmnopqrstuvwxyzabcdef",
            "abcdefghijklmnopqrstuvwxyzabcdefg",
            "1a",
            "_a",
            "-a",
            "a.b",
            "a:b",
            "a/b",
            "\u{ff2f}FFICE",
            "Office",
            "extra2",
            "unknown",
        ]),
        Kind::Network | Kind::AddressRef | Kind::HostAddress => {
            let mut v = strings(&[
                "192.0.2.0/24",
                "192.0.2.1",
                "192.0.2.1/32",
                "1.2.3.4/-1",
                "1.2.3.4/",
                "/24",
                "1.2.3.0/024",
                "1.2.3.0/ 24",
                "1.2.3.0 /24",
                "0/0",
                "0.0.0.0",
                "255.255.255.255",
                "1.2.3.4.5",
                "01.2.3.4",
                "1.2.3.04",
                "0x7f.0.0.1",
                "0177.0.0.1",
                "127.1",
                "2130706433",
                "::",
                "::1",
                "::1/128",
                "::ffff:1.2.3.4/96",
                "::ffff:0:0/96",
                "::ffff:192.0.2.0/120",
                "64:ff9b::192.0.2.1",
                "fe80::1%1",
                "fe80::/10",
                "fe80::1/64",
                "[::1]/128",
                "2001:db8::/32",
                "2001:DB8::/32",
                "2001:db8::1/32",
                "2001:db8:::1",
                "2001:db8::1::2",
                "1:2:3:4:5:6:7:8",
                "1:2:3:4:5:6:7:8:9",
                "1.2.3.4,5.6.7.8",
                "1.2.3.4 5.6.7.8",
                "1.2.3.4-1.2.3.9",
                "!1.2.3.4",
                "-1.2.3.4",
                "1.2.3.4 -j ACCEPT",
                "0.0.0.0/0 -j ACCEPT",
                "192.0.2.1\" -j ACCEPT",
                "localhost",
                "\u{ff11}.2.3.4",
                "\u{661}.2.3.4",
            ]);
            if kind == Kind::AddressRef {
                v.extend(strings(&["Office", "unknown", "a", "extra", "1abc"]));
            }
            v
        }
        Kind::Port => strings(&[
            "1",
            "22",
            "65535",
            "1-65535",
            "8000-8100",
            "80-80",
            "100-1",
            "0-1",
            "1-0",
            "-80",
            "80-",
            "80--90",
            "80-90-100",
            " 80",
            "80 ",
            "\u{ff18}\u{ff10}",
            "\u{668}\u{660}",
            "00080",
            "000000000000000000080",
            "0x50",
            "8000 - 8100",
            "8000:8100",
            "80,443",
            "[80]",
            "80 -j ACCEPT",
            "ssh",
            "4294967376",
            "65536-65537",
            "1-65536",
        ]),
        Kind::Enum => strings(ENUM_WORDS),
        Kind::Comment => strings(&[
            "ssh",
            "web app (prod)",
            "-j ACCEPT",
            "- leading dash",
            "-",
            "-x",
            "--comment",
            "-m",
            "-p",
            "-s",
            "!",
            "! -j ACCEPT",
            "a -j ACCEPT -g DOCKER",
            "#!/bin/sh",
            "COMMIT",
            "{{ rule.spec }}",
            "{% if true %}-j ACCEPT{% endif %}",
            "100%",
            "a=b",
            "~!@#$%^&*()_+-=[]{}|;:,./<>?",
        ]),
        Kind::LogPrefix => strings(&[
            "iptables-ctl",
            "x:y",
            "a.b-c_d",
            "--log-level",
            "A:B:C",
            "12345678901234567890",
            "123456789012345678901",
            "fw:input: ",
            "fw\"",
            "fw -j ACCEPT",
        ]),
        Kind::LogRate => strings(&[
            "5/minute",
            "1/second",
            "1/day",
            "10000/second",
            "10000/day",
            "10001/second",
            "0/minute",
            "-1/minute",
            "5/fortnight",
            "5/min",
            "5/m",
            "5/s",
            "5/Minute",
            "5 /minute",
            "5/ minute",
            "05/minute",
            "+5/minute",
            "5",
            "/minute",
            "5/",
            "5/minute/hour",
            "1e3/second",
            "0x10/second",
            "4294967296/second",
            "5/minute -j ACCEPT",
            "5/minute --limit-burst 1000",
        ]),
        Kind::RawRule => raw_rules(),
    }
}

/// Long options iptables' getopt knows (its own, and those of the matches and targets
/// the tool checks values of), whose every prefix is tried as an abbreviation.
const LONG_OPTIONS: &[&str] = &[
    "append",
    "delete",
    "insert",
    "replace",
    "check",
    "list",
    "list-rules",
    "flush",
    "zero",
    "new-chain",
    "delete-chain",
    "policy",
    "rename-chain",
    "source",
    "src",
    "destination",
    "dst",
    "protocol",
    "in-interface",
    "out-interface",
    "jump",
    "goto",
    "table",
    "match",
    "numeric",
    "verbose",
    "wait",
    "wait-interval",
    "exact",
    "fragment",
    "version",
    "help",
    "line-numbers",
    "modprobe",
    "set-counters",
    "ipv4",
    "ipv6",
    "dport",
    "sport",
    "destination-port",
    "source-port",
    "dports",
    "sports",
    "ports",
    "ctorigdstport",
    "ctorigdst",
    "ctstate",
    "to-ports",
];

/// Raw rules: every spelling getopt accepts for the options that matter, in rules with
/// targets and ports around them.
fn raw_rules() -> Vec<String> {
    let mut rules = strings(&[
        "-p udp --dport 51820 -j ACCEPT",
        "! -s 10.0.0.0/8 -j DROP",
        "-p tcp --sport 0:1023 -j DROP",
        "-p tcp -m multiport --dports 80,443 -j ACCEPT",
        "-m conntrack --ctstate NEW -j LOG",
        "-j NFLOG",
        "-j RETURN",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-j REJECT",
        "-m comment --comm x -j ACCEPT",
        "-p tcp -j LOG --log-p x --log-l 4",
        "-m limit --limit-b 5 -j LOG",
        "-m comment --comment -j ACCEPT",
        "-j LOG --log-prefix -j",
        "-j ACCEPT --",
        "-- -j ACCEPT",
        "-p tcp -j ACCEPT -- -j DROP",
        "! -j ACCEPT",
        "-j ! ACCEPT",
        "-p tcp ! --dport 22 -j ACCEPT",
        "-p tcp --dport 22 ! -j ACCEPT",
        "-j   ACCEPT",
        " -j ACCEPT",
        "-j ACCEPT ",
        "-j\tACCEPT",
        "-j ACCEPT\n-A FORWARD -j ACCEPT",
        "-j ACCEPT\r",
        "-j ACCEPT\0-A FORWARD",
        "-p tcp -m tcp --dport 22 -m comment --comment x -j ACCEPT",
        "-p tcp -m comment --comment \"x\" -j ACCEPT",
        "-m recent --set -j ACCEPT",
        "-i lo -j ACCEPT",
        "-i eth0+ -o docker0 -j RETURN",
        "-p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN",
        "-m conntrack --ctstate DNAT --ctorigdst 203.0.113.10 -j RETURN",
        "-p icmp -j ACCEPT",
        "-f -j DROP",
        "-s 1.2.3.4/33 -j DROP",
        "-s fe80::1%eth0 -j DROP",
    ]);
    // Targets, spelt every way.
    let targets = [
        "ACCEPT",
        "DROP",
        "REJECT",
        "RETURN",
        "LOG",
        "NFLOG",
        "DOCKER",
        "DOCKER-USER",
        "DOCKER-ISOLATION-STAGE-1",
        "INPUT",
        "FORWARD",
        "NFQUEUE",
        "NFQUEUE --queue-num 7",
        "QUEUE",
        "MARK --set-mark 1",
        "CT --notrack",
        "TRACE",
        "DNAT --to-destination 10.0.0.1",
        "MASQUERADE",
        "REDIRECT --to-ports 80",
        "accept",
        "Accept",
        "ACCEPT,DROP",
    ];
    for target in targets {
        for jump in ["-j", "--jump", "-g", "--goto"] {
            rules.push(format!("-p tcp {jump} {target}"));
        }
        for joined in ["-j", "--jump=", "-g", "--goto=", "--jum ", "--ju ", "--go "] {
            rules.push(format!("-p tcp {joined}{target}"));
        }
    }
    rules.push("-p tcp -j".to_owned());
    rules.push("-p tcp --jump".to_owned());
    rules.push("-p tcp".to_owned());
    rules.push("-p tcp -j ACCEPT -j DROP".to_owned());
    rules.push("-p tcp -j ACCEPT --jump DROP".to_owned());
    rules.push("-p tcp -j ACCEPT -g DOCKER".to_owned());
    // Options that change the command, the table, the family or iptables itself,
    // plain, with values, attached, clustered and as --opt=value.
    let spellings = [
        "-t",
        "-A",
        "-I",
        "-D",
        "-R",
        "-C",
        "-L",
        "-S",
        "-F",
        "-Z",
        "-N",
        "-X",
        "-P",
        "-E",
        "-M",
        "-V",
        "-h",
        "-b",
        "-4",
        "-6",
        "-w",
        "-W",
        "-c",
        "-v",
        "-n",
        "-x",
        "-g",
        "-j",
        "-e",
        "-q",
        "-t nat",
        "-t filter",
        "-t raw",
        "-t mangle",
        "-A FORWARD",
        "-A INPUT",
        "-I INPUT 1",
        "-D INPUT 1",
        "-F INPUT",
        "-X DOCKER-USER",
        "-N X",
        "-P INPUT ACCEPT",
        "-E DOCKER-USER X",
        "-M /bin/sh",
        "--modprobe /bin/sh",
        "-w 5",
        "-W 1",
        "-c 1 2",
        "-g DOCKER",
        "--goto DOCKER",
        "--table nat",
        "--append FORWARD",
        "--insert INPUT",
        "--delete INPUT",
        "--flush",
        "--new-chain X",
        "--delete-chain",
        "--policy INPUT ACCEPT",
        "--rename-chain X Y",
        "--zero",
        "--list",
        "--list-rules",
        "--check INPUT",
        "--replace INPUT 1",
        "--wait",
        "--wait 5",
        "--wait-interval 1",
        "--exact",
        "--numeric",
        "--verbose",
        "--version",
        "--help",
        "--line-numbers",
        "--set-counters 1 2",
        "--ipv4",
        "--ipv6",
        "--modprobe",
        "-tnat",
        "-tfilter",
        "-AFORWARD",
        "-AINPUT",
        "-IINPUT",
        "-DINPUT",
        "-FINPUT",
        "-XDOCKER",
        "-NX",
        "-PINPUT",
        "-M/bin/sh",
        "-gDOCKER",
        "-jACCEPT",
        "-jDOCKER",
        "-jNFQUEUE",
        "-p6",
        "-ptcp",
        "-s1.2.3.4",
        "-d::1",
        "-ieth0",
        "-oeth0",
        "-mtcp",
        "-w5",
        "-W1",
        "-c1",
        "-46",
        "-64",
        "-4v",
        "-vn",
        "-nvx",
        "-fv",
        "-pf",
        "-sd",
        "-Vh",
        "--dport=99999",
        "--dport=80",
        "--sport=1",
        "--jump=ACCEPT",
        "--jump=DOCKER",
        "--table=nat",
        "--append=FORWARD",
        "--modprobe=/x",
        "--protocol=tcp",
        "--source=1.2.3.4",
        "--in-interface=eth0",
        "--match=tcp",
        "--ctorigdstport=80",
        "--comment=x",
        "--log-prefix=x",
        "--dports=80,99999",
        "--goto=DOCKER",
        "--wait=5",
        "--set-counters=1",
        "--=x",
        "-=x",
        "---dport",
        "--Dport",
        "--DPORT",
        "-P6",
    ];
    for spelling in spellings {
        for context in [
            "{} -j ACCEPT",
            "-p tcp {} -j DROP",
            "-p tcp --dport 22 {}",
            "{}",
            "-p udp -m udp --dport 53 {} -j RETURN",
        ] {
            rules.push(context.replace("{}", spelling));
        }
    }
    // Every abbreviation getopt would expand.
    for name in LONG_OPTIONS {
        for len in 1..name.len() {
            let prefix = &name[..len];
            rules.push(format!("-p tcp --{prefix} 80 -j ACCEPT"));
            rules.push(format!("--{prefix} -j ACCEPT"));
        }
    }
    // Ports, in every option that takes one.
    let ports = [
        "0",
        "1",
        "65535",
        "65536",
        "99999",
        "0:65535",
        "1:65536",
        "80:",
        ":80",
        "80:70",
        "-1",
        "0x50",
        "0X50",
        "0x1869f",
        "010",
        "065535",
        "+99999",
        "+80",
        "1e3",
        "ssh",
        "00080",
        "099999",
        "4294967376",
        "\u{ff18}\u{ff10}",
    ];
    for port in ports {
        for spec in [
            "-p tcp --dport {}",
            "-p udp --sport {}",
            "-p tcp --destination-port {}",
            "-p tcp -m multiport --dports 80,{}",
            "-p tcp -m multiport --ports {}",
            "-p tcp -m conntrack --ctstate DNAT --ctorigdstport {}",
            "-p tcp --dport={}",
            "-p tcp --dpo {}",
            "-p tcp --destination-p {}",
            "-p tcp -m conntrack --ctorigdstp {}",
        ] {
            rules.push(format!("{} -j ACCEPT", spec.replace("{}", port)));
        }
    }
    rules
}

/// Raw TOML text put where a string value goes: syntax errors, other types, and other
/// spellings of strings.
const TOML_FRAGMENTS: &[&str] = &[
    "\"unterminated",
    "\"a\u{1b}[2Jb\"",
    "\"a\u{0}b\"",
    "\"a\rb\"",
    "'it's'",
    "\"\"\"\na\nb\"\"\"",
    "\"\"\"-j ACCEPT\"\"\"",
    "'''\n-A FORWARD -j ACCEPT'''",
    "'a\tb'",
    "'\\\"'",
    "\"\\q\"",
    "\"\\x41\"",
    "\"\\uD800\"",
    "\"\\U0010FFFF\"",
    "\"\\U00110000\"",
    "\"\u{202e}abc\"",
    "5",
    "-1",
    "0x50",
    "0o120",
    "65536",
    "99999999999999999999",
    "1e3",
    "1.5",
    "nan",
    "inf",
    "true",
    "[]",
    "[\"a\", [\"b\"]]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "\"x\" \"y\"",
    "\"x\" # a comment",
    "",
    "=",
    "\"x\"]",
];

/// Whole policies broken at the TOML or file level, each with the line its error must
/// name (the field is `syntax` or the one given).
fn file_cases() -> Vec<(&'static str, Vec<u8>, usize, &'static str)> {
    let valid =
        "[interfaces]\nexternal = \"auto\"\n[[host.services]]\nport = 22\ncomment = \"ssh\"\n";
    let mut cases: Vec<(&'static str, Vec<u8>, usize, &'static str)> = vec![
        (
            "NUL byte in a value",
            valid.replace("ssh", "s\0sh").into_bytes(),
            5,
            "syntax",
        ),
        (
            "invalid UTF-8 in a value",
            [&valid.as_bytes()[..valid.len() - 3], b"\xff\xfe\"\n"].concat(),
            5,
            "syntax",
        ),
        (
            "escape sequence in a key",
            format!("{valid}\u{1b}[2J = 1\n").into_bytes(),
            6,
            "syntax",
        ),
        (
            "quoted key with an escape sequence",
            format!("{valid}\"\\u001b[2J\\n\" = 1\n").into_bytes(),
            6,
            "host.services[0].\"\\u{1b}[2J\\n\"",
        ),
        (
            "lone CR",
            valid.replace("\n[[host", "\r[[host").into_bytes(),
            2,
            "syntax",
        ),
        (
            "duplicate table",
            format!("{valid}[interfaces]\n").into_bytes(),
            6,
            "syntax",
        ),
        (
            "unclosed array",
            "[interfaces]\ndocker_bridges = [\"docker0\",\n"
                .as_bytes()
                .to_vec(),
            2,
            "syntax",
        ),
        (
            "table header with an escape",
            b"[interfaces]\nexternal = \"auto\"\n[\"\x1b[31m\"]\n".to_vec(),
            3,
            "syntax",
        ),
    ];
    // More rules than one file may hold: 300 ports x 100 networks, in an otherwise
    // valid policy, counted before anything is expanded and refused at the entry's
    // `from`.
    // A list short enough to stay rules (a longer one is one ipset, one rule per port).
    let ports: Vec<String> = (1..=500).map(|p| (p * 2).to_string()).collect();
    let nets: Vec<String> = (0..60).map(|i| format!("\"10.0.{i}.0/24\"")).collect();
    cases.push((
        "more than 25000 rules",
        format!(
            "[lists]\nmany = [{}]\n[[host.services]]\nport = [{}]\nfrom = [\"many\"]\n",
            nets.join(", "),
            ports.join(", ")
        )
        .into_bytes(),
        5,
        "host.services[0]",
    ));
    cases
}

/// Out-of-range and ill-typed numbers where a port goes (a string, a number or a list),
/// each refused at exactly that field: (slot field, TOML fragment).
fn number_cases() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for value in [
        "0",
        "-1",
        "65536",
        "99999999999999999999",
        "0x10000",
        "-0x1",
        "1e3",
        "22.0",
        "[]",
        "[0]",
        "true",
        "{ port = 22 }",
    ] {
        for field in [
            "host.services[0].port",
            "outbound.allow[0].port",
            "docker.published[0].port",
            "docker.published[1].port[1]",
        ] {
            out.push((field, value));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// One case: a value for a slot.
struct Case {
    id: usize,
    slot: usize,
    /// The TOML text put at the slot.
    fragment: String,
    /// The string the policy holds there, when it is one.
    value: Option<String>,
    /// Whether the fragment is raw TOML (may be a syntax error).
    toml_level: bool,
}

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A located policy error.
    Refused,
    /// The shape check refused the rendered file.
    ShapeRefused,
    /// The kernel refused a raw rule, reported at the entry.
    KernelRefused,
    /// Rendered, and the kernel loaded it as checked.
    Loaded,
}

/// Characters a report may hold besides its line breaks: none of the control ones
/// (tabs excepted, as `output::terminal_safe` keeps them).
fn control_chars(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect()
}

/// Checks a policy error: three lines, the first `PATH:LINE:COL: FIELD: message`, the
/// second the policy's line, the third its underline; no control characters.
fn check_located(
    error: &str,
    text: &str,
    places: &[(String, usize, usize)],
    accepted: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let controls = control_chars(error);
    if !controls.is_empty() {
        return Err(format!("raw control characters {controls:?} in the error"));
    }
    let lines: Vec<&str> = error.split('\n').collect();
    let [head, quoted, underline] = lines.as_slice() else {
        return Err(format!(
            "expected a report of 3 lines, found {}",
            lines.len()
        ));
    };
    let rest = head
        .strip_prefix(&format!("{POLICY_PATH}:"))
        .ok_or("the error does not start with the policy's path")?;
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no line number")?;
    let column: usize = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or("no column")?;
    let after = parts.next().unwrap_or_default();
    let field = after
        .strip_prefix(' ')
        .and_then(|a| a.split_once(": "))
        .map(|(f, _)| f)
        .ok_or("no field")?;
    if !accepted(field) {
        return Err(format!("the error names the field {field:?}"));
    }
    // A TOML syntax error may be found on the line after the value (a string left
    // open, a comment that swallowed the closing bracket).
    let slack = usize::from(field == "syntax");
    if !places.is_empty()
        && !places
            .iter()
            .any(|(_, a, b)| (*a..=*b + slack).contains(&line))
    {
        return Err(format!(
            "the error points at line {line}, outside the entry ({places:?})"
        ));
    }
    let source = text
        .split('\n')
        .nth(line - 1)
        .ok_or("the line is past the end of the policy")?
        .trim_end_matches('\r');
    if column == 0 || column > source.chars().count() + 1 {
        return Err(format!("column {column} is outside the line"));
    }
    if !quoted.starts_with(&format!("{line:>5} | ")) {
        return Err("the second line does not quote the policy's line".to_owned());
    }
    if !underline.trim_start().starts_with("| ") || !underline.ends_with('^') {
        return Err("the third line does not underline the value".to_owned());
    }
    Ok(field.to_owned())
}

/// A rendered rule line's words, with whether each was quoted, read independently of
/// the library: split at spaces, a `"` opens and closes a word.
fn words(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            ' ' if !in_quotes => {
                if !current.is_empty() || quoted {
                    out.push((std::mem::take(&mut current), quoted));
                }
                quoted = false;
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() || quoted {
        out.push((current, quoted));
    }
    out
}

/// The words of a rule as `iptables-save` prints it: quoted words may hold `\"` and `\\`.
fn saved_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ' ' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Rule lines (`-A ...`) of the rendered files, as (file, line).
fn rule_lines(files: &[RenderedFile]) -> BTreeSet<(String, String)> {
    files
        .iter()
        .flat_map(|f| {
            f.text
                .lines()
                .filter(|l| l.starts_with("-A "))
                .map(|l| (f.file_name.clone(), l.to_owned()))
        })
        .collect()
}

fn is_interface_token(word: &str) -> bool {
    let body = word.strip_suffix('+').unwrap_or(word);
    !body.is_empty()
        && word.len() <= 15
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_port_token(word: &str) -> bool {
    let mut parts = word.split(':');
    let ok = |p: Option<&str>| p.is_some_and(|p| p.parse::<u16>().is_ok_and(|n| n >= 1));
    let first = parts.next();
    match (first, parts.next(), parts.next()) {
        (Some(_), None, None) => ok(first),
        (Some(_), Some(second), None) => ok(first) && ok(Some(second)),
        _ => false,
    }
}

fn is_rate_token(word: &str) -> bool {
    word.split_once('/').is_some_and(|(n, unit)| {
        n.parse::<u32>().is_ok_and(|n| (1..=10000).contains(&n))
            && matches!(unit, "second" | "minute" | "hour" | "day")
    })
}

fn is_generated_label(word: &str) -> bool {
    ["host service ", "outbound ", "published "]
        .iter()
        .find_map(|p| word.strip_prefix(p))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(proto, port)| {
            matches!(proto, "tcp" | "udp")
                && port
                    .split('-')
                    .all(|p| p.parse::<u16>().is_ok_and(|n| n >= 1))
        })
}

/// Whether `word` of a changed rule line may come from `case`'s value.
fn legal_word(word: &str, quoted: bool, case: &Case, kind: Kind, vocab: &Vocab) -> bool {
    if vocab.contains(&(word.to_owned(), quoted)) {
        return true;
    }
    // This test's own tag on raw entries.
    if quoted
        && word
            .strip_prefix("raw case ")
            .is_some_and(|n| n.parse::<usize>().is_ok())
    {
        return true;
    }
    let value = case.value.as_deref();
    if quoted {
        return match kind {
            Kind::Comment => Some(word) == value,
            Kind::LogPrefix => value.is_some_and(|v| {
                ["input", "output", "docker"]
                    .iter()
                    .any(|chain| word == format!("{v}:{chain}: "))
            }),
            _ => is_generated_label(word),
        };
    }
    match kind {
        Kind::Interface | Kind::InterfaceOrAuto => is_interface_token(word) && Some(word) == value,
        Kind::Network | Kind::AddressRef | Kind::ListName => word
            .parse::<IpNet>()
            .is_ok_and(|net| net.to_string() == word && net.trunc() == net),
        Kind::HostAddress => word
            .parse::<IpAddr>()
            .is_ok_and(|addr| addr.to_string() == word),
        Kind::Port => is_port_token(word),
        Kind::LogRate => is_rate_token(word) && Some(word) == value,
        Kind::RawRule => value.is_some_and(|v| v.split_whitespace().any(|w| w == word)),
        Kind::Enum | Kind::Comment | Kind::LogPrefix => false,
    }
}

/// Words (with whether they were quoted) of trusted renders: the skeleton and the
/// example policies.
type Vocab = BTreeSet<(String, bool)>;

/// Checks a rendered case: every line of every file reads the same to `tokenize` and to
/// [`words`], and every word of a changed rule line is legal for the value.
fn check_rendered(
    case: &Case,
    kind: Kind,
    files: &[RenderedFile],
    baseline: &BTreeSet<(String, String)>,
    vocab: &Vocab,
) -> Result<BTreeSet<(String, String)>, String> {
    for file in files {
        for line in file.text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let tokens = shape::tokenize(line)
                .map_err(|e| format!("{}: {line:?} does not tokenize: {e}", file.file_name))?;
            let mine: Vec<String> = words(line).into_iter().map(|(w, _)| w).collect();
            if tokens != mine {
                return Err(format!(
                    "{}: {line:?} reads as {tokens:?} to tokenize and {mine:?} here",
                    file.file_name
                ));
            }
        }
    }
    let new: BTreeSet<(String, String)> = rule_lines(files).difference(baseline).cloned().collect();
    for (file, line) in &new {
        for (word, quoted) in words(line) {
            if !legal_word(&word, quoted, case, kind, vocab) {
                return Err(format!(
                    "{file}: the word {word:?} (quoted: {quoted}) in {line:?} is not a legal token for the value"
                ));
            }
        }
        if let Some(value) = &case.value
            && kind != Kind::RawRule
            && value.contains(char::is_whitespace)
            && line.contains(value.as_str())
            && !words(line).iter().any(|(w, q)| *q && w == value)
        {
            return Err(format!(
                "{file}: the value {value:?} is in {line:?} but not as one quoted word"
            ));
        }
    }
    Ok(new)
}

/// Checks what the kernel holds (an `iptables-save` of the trial's namespace) without
/// the library's parser: the filter table only, declared chains among the built-in ones
/// and DOCKER-USER, rules only in INPUT, OUTPUT and DOCKER-USER, each with exactly one
/// `-j` among the allowed targets and no `-g`. Returns the rules' words.
fn check_kernel_save(saved: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rules = Vec::new();
    for line in saved.lines() {
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(table) = line.strip_prefix('*') {
            if table != "filter" {
                return Err(format!("the kernel holds table {table}"));
            }
        } else if let Some(decl) = line.strip_prefix(':') {
            let chain = decl.split(' ').next().unwrap_or_default();
            if !["INPUT", "FORWARD", "OUTPUT", "DOCKER-USER"].contains(&chain) {
                return Err(format!("the kernel holds chain {chain}"));
            }
        } else if line.starts_with("-A ") {
            let words = saved_words(line);
            let chain = words.get(1).map(String::as_str).unwrap_or_default();
            if !OWNED_CHAINS.contains(&chain) {
                return Err(format!("the kernel holds a rule in {chain}: {line}"));
            }
            let jumps: Vec<&str> = words
                .iter()
                .enumerate()
                .filter(|(_, w)| matches!(w.as_str(), "-j" | "--jump"))
                .map(|(i, _)| words.get(i + 1).map(String::as_str).unwrap_or_default())
                .collect();
            match jumps.as_slice() {
                [target] if ALLOWED_TARGETS.contains(target) => {}
                _ => return Err(format!("the kernel holds {line}: targets {jumps:?}")),
            }
            if words.iter().any(|w| matches!(w.as_str(), "-g" | "--goto")) {
                return Err(format!("the kernel holds a goto: {line}"));
            }
            rules.push(words);
        } else {
            return Err(format!("unexpected line in the kernel's ruleset: {line}"));
        }
    }
    Ok(rules)
}

/// The value of `option` in each kernel rule that has it.
fn option_values<'a>(rules: &'a [Vec<String>], option: &str) -> BTreeSet<&'a str> {
    rules
        .iter()
        .flat_map(|words| {
            words
                .windows(2)
                .filter(|w| w[0] == option)
                .map(|w| w[1].as_str())
        })
        .collect()
}

/// What a raw rule jumps to, as the validator reads it.
fn raw_target(rule: &str) -> Option<&str> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words
        .iter()
        .position(|w| matches!(*w, "-j" | "--jump"))
        .and_then(|i| words.get(i + 1).copied())
}

/// Whether the kernel's rule has the ports a raw rule wrote in decimal (with or without
/// a `+` or leading zeros: what the admin evidently meant), option by option. iptables
/// reads some spellings as other ports (octal, wrapped above 65535).
fn same_ports(rule: &str, kernel_words: &[String]) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words.windows(2).all(|pair| {
        let option = match pair[0] {
            "--destination-port" => "--dport",
            "--source-port" => "--sport",
            "--destination-ports" => "--dports",
            "--source-ports" => "--sports",
            o @ ("--dport" | "--sport" | "--dports" | "--sports" | "--ports"
            | "--ctorigdstport" | "--ctorigsrcport" | "--ctrepldstport"
            | "--ctreplsrcport") => o,
            _ => return true,
        };
        let meant: Option<Vec<String>> = pair[1]
            .split(',')
            .map(|item| {
                item.split(':')
                    .map(|n| {
                        let digits = n.strip_prefix('+').unwrap_or(n);
                        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                            .then(|| digits.trim_start_matches('0'))
                            .map(|d| if d.is_empty() { "0" } else { d }.to_owned())
                    })
                    .collect::<Option<Vec<String>>>()
                    .map(|parts| match parts.as_slice() {
                        // iptables-save prints `80:80` as 80.
                        [a, b] if a == b => a.clone(),
                        _ => parts.join(":"),
                    })
            })
            .collect();
        let Some(meant) = meant else {
            return true;
        };
        let meant = meant.join(",");
        // tcp and udp leave a full range out of iptables-save.
        if meant == "0:65535" {
            return true;
        }
        kernel_words
            .windows(2)
            .any(|k| k[0] == option && k[1] == meant)
    })
}

/// Checks that the kernel loaded each case's value as it was rendered.
fn check_kernel_holds(cases: &[&Case], kind: Kind, rules: &[Vec<String>]) -> Result<(), String> {
    for case in cases {
        let Some(value) = case.value.as_deref() else {
            continue;
        };
        let found = match kind {
            Kind::Comment => option_values(rules, "--comment").contains(value),
            Kind::Interface => {
                option_values(rules, "-i").contains(value)
                    || option_values(rules, "-o").contains(value)
            }
            Kind::LogPrefix => {
                option_values(rules, "--log-prefix").contains(format!("{value}:input: ").as_str())
            }
            Kind::RawRule => {
                let tag = format!("raw case {}", case.id);
                let tagged: Vec<&Vec<String>> = rules
                    .iter()
                    .filter(|w| w.windows(2).any(|p| p[0] == "--comment" && p[1] == tag))
                    .collect();
                let expected = raw_target(value);
                !tagged.is_empty()
                    && tagged.iter().all(|words| {
                        let at = words.iter().position(|w| w == "-j");
                        at.and_then(|i| words.get(i + 1)).map(String::as_str) == expected
                            && same_ports(value, words)
                    })
            }
            _ => true,
        };
        if !found {
            return Err(format!(
                "case {} ({value:?}) is not in the kernel's ruleset as rendered",
                case.id
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------

struct Matrix {
    sections: Vec<Section>,
    templates: Templates,
    baseline: BTreeSet<(String, String)>,
    vocab: Vocab,
}

impl Matrix {
    fn new() -> Matrix {
        let templates = Templates::load(Path::new("/nonexistent-root/etc/iptables/templates"))
            .expect("built-in templates");
        let sections = sections();
        let mut matrix = Matrix {
            sections,
            templates,
            baseline: BTreeSet::new(),
            vocab: BTreeSet::new(),
        };
        let base = build(&matrix.sections, None, &[], None);
        let files = matrix
            .render_text(base.text.as_bytes())
            .unwrap_or_else(|e| panic!("the skeleton must render: {e:?}\n{}", base.text));
        matrix.baseline = rule_lines(&files);
        let mut trusted = vec![files];
        // The templates' other branches, chosen by the enum fields' valid values.
        for (field, value) in VARIANTS {
            let slot = SLOTS.iter().find(|s| s.field == *field).expect("slot");
            let built = build(
                &matrix.sections,
                Some(slot),
                &[(0, toml_string(value))],
                None,
            );
            let files = matrix
                .render_text(built.text.as_bytes())
                .unwrap_or_else(|e| panic!("{field} = {value:?} must render: {e:?}"));
            trusted.push(files);
        }
        for path in common::example_policies() {
            trusted.push(common::render_policy(&path));
        }
        for files in &trusted {
            for (_, line) in rule_lines(files) {
                matrix.vocab.extend(words(&line));
            }
        }
        matrix
    }

    /// Reads and renders a policy with the library, as `render_policy` does (the
    /// templates loaded once).
    fn render_text(&self, bytes: &[u8]) -> Result<Vec<RenderedFile>, Refusal> {
        let policy = Policy::parse(Path::new(POLICY_PATH), bytes)
            .map_err(|e| Refusal::Policy(e.to_string()))?;
        self.render(&policy)
    }

    fn render(&self, policy: &Policy) -> Result<Vec<RenderedFile>, Refusal> {
        let instance = "base".parse().expect("instance");
        render::render(
            &self.templates,
            &RenderRequest {
                instance: &instance,
                policy,
                policy_path: Path::new(POLICY_PATH),
            },
        )
        .map_err(|e| Refusal::Render(e.to_string()))
    }
}

#[derive(Debug)]
enum Refusal {
    Policy(String),
    Render(String),
}

/// Checks a shape refusal: it names a rendered file of the instance and its line.
fn check_shape_refusal(error: &str) -> Result<(), String> {
    let head = error.lines().next().unwrap_or_default();
    let named = ["base.rules", "base.rules6"]
        .iter()
        .any(|f| head.starts_with(&format!("{f}, ")) || head.starts_with(&format!("{f}.empty, ")));
    if named && head.contains(", is refused at line ") {
        Ok(())
    } else {
        Err(format!(
            "the shape refusal does not name file and line: {head}"
        ))
    }
}

/// Per field: outcome counts, and how many rendered values changed a rule.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<Outcome, usize>,
    reached: usize,
    exact_field: usize,
}

/// A rendered case waiting for the kernel.
struct Pending {
    case: usize,
    text: String,
    new_lines: BTreeSet<(String, String)>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let generic = generic_values();
    for (slot_index, slot) in SLOTS.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for value in generic.iter().cloned().chain(kind_values(slot.kind)) {
            if !seen.insert(value.clone()) {
                continue;
            }
            let fragment = toml_string(&value);
            assert_eq!(
                decode_fragment(&fragment).as_deref(),
                Some(value.as_str()),
                "TOML escaping of {value:?}"
            );
            out.push(Case {
                id: out.len() + 1,
                slot: slot_index,
                fragment,
                value: Some(value),
                toml_level: false,
            });
        }
        for fragment in TOML_FRAGMENTS {
            out.push(Case {
                id: out.len() + 1,
                slot: slot_index,
                fragment: (*fragment).to_owned(),
                value: decode_fragment(fragment),
                toml_level: true,
            });
        }
    }
    out
}

#[test]
fn fields_are_all_covered() {
    let all = sections();
    // serde names every field of a table when it refuses an unknown one.
    let mut tables: Vec<String> = vec![String::new()];
    for section in &all {
        if section.table != "lists" && !tables.contains(&section.table) {
            tables.push(section.table.clone());
        }
    }
    let mut found = BTreeSet::new();
    for table in &tables {
        let built = build(&all, None, &[], Some((table, "zz_probe = 1")));
        let error = match Policy::parse(Path::new(POLICY_PATH), built.text.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the probe in [{table}] was accepted"),
        };
        let expected = error
            .lines()
            .next()
            .and_then(|l| l.split_once("unknown field `zz_probe`, expected "))
            .map(|(_, list)| list.to_owned())
            .unwrap_or_else(|| panic!("no field list in {error}"));
        for name in expected.split('`').skip(1).step_by(2) {
            found.insert(if table.is_empty() {
                name.to_owned()
            } else {
                format!("{table}.{name}")
            });
        }
    }
    let mut declared: BTreeSet<String> = NOT_STRINGS.iter().map(|(k, _)| (*k).to_owned()).collect();
    for slot in SLOTS {
        let key = slot.key.split(".<name>").next().unwrap_or(slot.key);
        declared.insert(key.to_owned());
    }
    assert_eq!(
        found, declared,
        "the policy's fields (left) differ from those the matrix covers or lists as not strings (right)"
    );
    // Every string kind has hostile values of its own, besides the generic ones.
    for slot in SLOTS {
        assert!(!kind_values(slot.kind).is_empty(), "{}", slot.field);
    }
}

#[test]
fn hostile_values_are_refused_where_they_are_or_stay_one_quoted_word() {
    let started = Instant::now();
    let matrix = Matrix::new();
    let all_cases = cases();
    let mut run = Run::default();
    for case in &all_cases {
        run.one_value(&matrix, case);
    }
    run.whole_files(&matrix);
    run.numbers(&matrix);
    let static_done = started.elapsed();
    let kernel = common::kernel_tests_enabled("hostile_matrix kernel loads");
    if kernel {
        run.kernel(&matrix, &all_cases);
    }
    let kernel_done = started.elapsed();

    let totals = run.print_tallies();
    let total = all_cases.len() + run.extra_cases;
    println!(
        "{total} cases ({} field x value, {} whole-file and number cases): {totals:?}; {} distinct renders, {} kernel checks; static {:.1?}, kernel {:.1?}",
        all_cases.len(),
        run.extra_cases,
        run.seen_renders.len(),
        run.kernel_checks,
        static_done,
        kernel_done - static_done
    );
    if let Some(path) = std::env::var_os("HOSTILE_MATRIX_FAILURES") {
        std::fs::write(path, run.failures.join("\n\n")).expect("write the failures");
    }
    assert!(
        run.failures.is_empty(),
        "{} of {total} cases failed (HOSTILE_MATRIX_FAILURES=FILE writes them all):\n{}",
        run.failures.len(),
        run.failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(total >= 2000, "only {total} cases");
    if kernel {
        let rendered: usize =
            run.pending.values().map(Vec::len).sum::<usize>() + run.duplicates.len();
        let proven = totals.get(&Outcome::Loaded).copied().unwrap_or(0)
            + totals.get(&Outcome::KernelRefused).copied().unwrap_or(0);
        assert_eq!(proven, rendered, "every rendered value reaches the kernel");
    }
}

/// The state of one run of the matrix.
#[derive(Default)]
struct Run {
    tallies: BTreeMap<&'static str, Tally>,
    failures: Vec<String>,
    /// Rendered cases waiting for the kernel, per slot, one per distinct render.
    pending: BTreeMap<usize, Vec<Pending>>,
    /// Each distinct render and the first case that made it.
    seen_renders: BTreeMap<String, usize>,
    /// Cases that rendered exactly like an earlier one, and that one.
    duplicates: BTreeMap<usize, usize>,
    extra_cases: usize,
    kernel_checks: usize,
    kernel_outcomes: BTreeMap<usize, Outcome>,
    kernel_refused: Vec<String>,
}

impl Run {
    fn count(&mut self, field: &'static str, outcome: Outcome, n: usize) {
        *self
            .tallies
            .entry(field)
            .or_default()
            .outcomes
            .entry(outcome)
            .or_default() += n;
    }

    /// One value in one slot: read, rendered and checked without the kernel.
    fn one_value(&mut self, matrix: &Matrix, case: &Case) {
        let slot = &SLOTS[case.slot];
        let built = build(
            &matrix.sections,
            Some(slot),
            &[(case.id, case.fragment.clone())],
            None,
        );
        let prefixes: Vec<&str> = built.places.iter().map(|(f, _, _)| f.as_str()).collect();
        let accepted = |field: &str| {
            prefixes.iter().any(|p| {
                field == *p
                    || field.starts_with(&format!("{p}."))
                    || field.starts_with(&format!("{p}["))
            }) || slot.also.contains(&field)
                || (case.toml_level && field == "syntax")
        };
        let describe = |why: String| {
            format!(
                "case {} {} = {}: {why}",
                case.id,
                slot.field,
                case.fragment.chars().take(120).collect::<String>()
            )
        };
        match matrix.render_text(built.text.as_bytes()) {
            Err(Refusal::Policy(error)) => {
                match check_located(&error, &built.text, &built.places, &accepted) {
                    Ok(field) => {
                        self.count(slot.field, Outcome::Refused, 1);
                        if field == slot.field
                            || (slot.field == "lists" && field.starts_with("lists."))
                        {
                            self.tallies.entry(slot.field).or_default().exact_field += 1;
                        }
                    }
                    Err(why) => self.failures.push(describe(format!("{why}\n{error}"))),
                }
            }
            // One field's value that the validator passed and the shape check refused
            // is reported against the rendered file, not the field: a finding.
            Err(Refusal::Render(error)) => self.failures.push(describe(format!(
                "the validator passed it, the shape check refused it: {error}"
            ))),
            Ok(files) => {
                match check_rendered(case, slot.kind, &files, &matrix.baseline, &matrix.vocab) {
                    Ok(new_lines) => {
                        if !new_lines.is_empty() {
                            self.tallies.entry(slot.field).or_default().reached += 1;
                        }
                        let key: String = files.iter().map(|f| f.text.as_str()).collect();
                        // The same rendered files need one kernel check only (the raw
                        // rule's tag makes each raw case its own).
                        if let Some(first) = self.seen_renders.get(&key) {
                            self.duplicates.insert(case.id, *first);
                        } else {
                            self.seen_renders.insert(key, case.id);
                            self.pending.entry(case.slot).or_default().push(Pending {
                                case: case.id,
                                text: built.text,
                                new_lines,
                            });
                        }
                    }
                    Err(why) => self.failures.push(describe(why)),
                }
            }
        }
    }

    /// TOML- and file-level breakage.
    fn whole_files(&mut self, matrix: &Matrix) {
        for (name, bytes, line, field) in file_cases() {
            self.extra_cases += 1;
            let field_name = "(whole file)";
            match matrix.render_text(&bytes) {
                Err(Refusal::Policy(error)) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let places = [(String::new(), line, line)];
                    match check_located(&error, &text, &places, &|f| f == field) {
                        Ok(_) => self.count(field_name, Outcome::Refused, 1),
                        Err(why) => self
                            .failures
                            .push(format!("file case {name}: {why}\n{error}")),
                    }
                }
                Err(Refusal::Render(error)) if field == "render" => {
                    match check_shape_refusal(&error) {
                        Ok(()) => self.count(field_name, Outcome::ShapeRefused, 1),
                        Err(why) => self.failures.push(format!("file case {name}: {why}")),
                    }
                }
                Err(Refusal::Render(error)) => self
                    .failures
                    .push(format!("file case {name}: refused by rendering: {error}")),
                Ok(_) => self.failures.push(format!("file case {name}: accepted")),
            }
        }
    }

    /// Numbers out of range, and other types, where ports go.
    fn numbers(&mut self, matrix: &Matrix) {
        for (field, fragment) in number_cases() {
            self.extra_cases += 1;
            let slot = SLOTS.iter().find(|s| s.field == field).expect("slot");
            let built = build(
                &matrix.sections,
                Some(slot),
                &[(0, fragment.to_owned())],
                None,
            );
            // `[0]` in a list slot is a list in a list: the error may name the element.
            let accepted =
                |f: &str| f == field || f.starts_with(&format!("{field}[")) || f == "syntax";
            match matrix.render_text(built.text.as_bytes()) {
                Err(Refusal::Policy(error)) => {
                    match check_located(&error, &built.text, &built.places, &accepted) {
                        Ok(_) => self.count("(numbers in port fields)", Outcome::Refused, 1),
                        Err(why) => self
                            .failures
                            .push(format!("{field} = {fragment}: {why}\n{error}")),
                    }
                }
                Err(Refusal::Render(error)) => self.failures.push(format!(
                    "{field} = {fragment}: not refused as a policy error: {error}"
                )),
                Ok(_) => self
                    .failures
                    .push(format!("{field} = {fragment}: rendered")),
            }
        }
    }

    /// Every distinct render proven in the kernel, in batches; a batch the kernel
    /// refuses is halved until the refused values stand alone.
    fn kernel(&mut self, matrix: &Matrix, all_cases: &[Case]) {
        let pending = std::mem::take(&mut self.pending);
        for (slot_index, list) in &pending {
            let slot = &SLOTS[*slot_index];
            let limit = match slot.batch {
                Batch::Single => 1,
                Batch::Entry if slot.kind == Kind::RawRule => 24,
                Batch::Entry | Batch::List => 64,
            };
            for chunk in list.chunks(limit) {
                let mut queue: Vec<&[Pending]> = vec![chunk];
                while let Some(batch) = queue.pop() {
                    self.kernel_checks += 1;
                    match prove_batch(matrix, slot, batch, all_cases) {
                        Ok(()) => {
                            self.count(slot.field, Outcome::Loaded, batch.len());
                            for p in batch {
                                self.kernel_outcomes.insert(p.case, Outcome::Loaded);
                            }
                        }
                        Err(BatchError::Kernel(_)) if batch.len() > 1 => {
                            let (a, b) = batch.split_at(batch.len() / 2);
                            queue.push(a);
                            queue.push(b);
                        }
                        Err(BatchError::Kernel(error)) => {
                            let case = &all_cases[batch[0].case - 1];
                            self.kernel_refusal(matrix, slot, case, &error);
                        }
                        Err(BatchError::Check(why)) => {
                            let ids: Vec<usize> = batch.iter().map(|p| p.case).collect();
                            self.failures
                                .push(format!("{} cases {ids:?}: {why}", slot.field));
                        }
                    }
                }
            }
        }
        self.pending = pending;
        // A duplicate render ends as the case it repeats.
        for (case, first) in self.duplicates.clone() {
            if let Some(outcome) = self.kernel_outcomes.get(&first).copied() {
                self.count(SLOTS[all_cases[case - 1].slot].field, outcome, 1);
            }
        }
    }

    /// A value the kernel refused on its own: only a raw rule may be, reported at the
    /// entry's `rule`.
    fn kernel_refusal(&mut self, matrix: &Matrix, slot: &Slot, case: &Case, error: &str) {
        let built = build(
            &matrix.sections,
            Some(slot),
            &[(case.id, case.fragment.clone())],
            None,
        );
        if slot.kind == Kind::RawRule && check_kernel_refusal(error, &built.places).is_ok() {
            self.kernel_refused.push(case.fragment.clone());
            self.kernel_outcomes.insert(case.id, Outcome::KernelRefused);
            self.count(slot.field, Outcome::KernelRefused, 1);
        } else {
            self.failures.push(format!(
                "case {} {} = {}: the kernel check failed: {error}",
                case.id, slot.field, case.fragment
            ));
        }
    }

    /// Prints the tallies per field; returns the totals.
    fn print_tallies(&self) -> BTreeMap<Outcome, usize> {
        println!("raw rules the validator passes and the kernel refuses (reported at the entry):");
        for rule in &self.kernel_refused {
            println!("    {rule}");
        }
        let mut totals: BTreeMap<Outcome, usize> = BTreeMap::new();
        println!(
            "{:<36} {:>8} {:>6} {:>7} {:>7} {:>8} {:>8}",
            "field", "refused", "exact", "shape", "kernel", "loaded", "reached"
        );
        for (field, tally) in &self.tallies {
            let get = |o| tally.outcomes.get(&o).copied().unwrap_or(0);
            println!(
                "{:<36} {:>8} {:>6} {:>7} {:>7} {:>8} {:>8}",
                field,
                get(Outcome::Refused),
                tally.exact_field,
                get(Outcome::ShapeRefused),
                get(Outcome::KernelRefused),
                get(Outcome::Loaded),
                tally.reached
            );
            for (o, n) in &tally.outcomes {
                *totals.entry(*o).or_default() += n;
            }
        }
        println!(
            "(refused: a located policy error, `exact` of them naming the field itself; shape: refused by the shape check; kernel: a raw rule the kernel refused; loaded: proven in the kernel; reached: changed a rendered rule)"
        );
        totals
    }
}

enum BatchError {
    /// `prove` failed.
    Kernel(String),
    /// A check of this test failed.
    Check(String),
}

/// Builds one policy holding every value of `batch`, checks that it holds each value's
/// own rule lines, proves it in the kernel and checks what the kernel loaded.
fn prove_batch(
    matrix: &Matrix,
    slot: &Slot,
    batch: &[Pending],
    all_cases: &[Case],
) -> Result<(), BatchError> {
    let cases: Vec<&Case> = batch.iter().map(|p| &all_cases[p.case - 1]).collect();
    let text = if batch.len() == 1 {
        batch[0].text.clone()
    } else {
        let values: Vec<(usize, String)> =
            cases.iter().map(|c| (c.id, c.fragment.clone())).collect();
        build(&matrix.sections, Some(slot), &values, None).text
    };
    let policy = Policy::parse(Path::new(POLICY_PATH), text.as_bytes())
        .map_err(|e| BatchError::Check(format!("the batch policy is refused: {e}")))?;
    let files = matrix.render(&policy).map_err(|e| {
        BatchError::Check(match e {
            Refusal::Policy(e) | Refusal::Render(e) => format!("the batch does not render: {e}"),
        })
    })?;
    let lines = rule_lines(&files);
    for p in batch {
        if let Some(missing) = p.new_lines.iter().find(|l| !lines.contains(*l)) {
            return Err(BatchError::Check(format!(
                "case {}'s line {missing:?} is not in the batch",
                p.case
            )));
        }
    }
    let reports: Vec<(Family, TrialReport)> =
        instance::prove(&policy, &files, &NetnsTrial::default())
            .map_err(|e| BatchError::Kernel(format!("{e:#}")))?;
    let mut loaded = Vec::new();
    for (family, report) in &reports {
        let rules = check_kernel_save(&report.loaded)
            .map_err(|why| BatchError::Check(format!("{family}: {why}\n{}", report.loaded)))?;
        loaded.extend(rules);
        check_kernel_save(&report.loaded_empty).map_err(|why| {
            BatchError::Check(format!(
                "{family} pass-through: {why}\n{}",
                report.loaded_empty
            ))
        })?;
    }
    check_kernel_holds(&cases, slot.kind, &loaded).map_err(BatchError::Check)
}

/// Checks a kernel refusal of a raw rule: reported at the entry's `rule`, located.
fn check_kernel_refusal(error: &str, places: &[(String, usize, usize)]) -> Result<(), String> {
    let controls = control_chars(error);
    if !controls.is_empty() {
        return Err(format!("raw control characters {controls:?}"));
    }
    let at = error
        .find(&format!("{POLICY_PATH}:"))
        .ok_or("the refusal does not name the policy")?;
    let rest = &error[at + POLICY_PATH.len() + 1..];
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts.next().and_then(|l| l.parse().ok()).ok_or("no line")?;
    let _column: usize = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or("no column")?;
    let field_ok = parts
        .next()
        .is_some_and(|r| r.starts_with(" raw[0].rule: the kernel's parser refused this rule"));
    if !field_ok || !places.iter().any(|(_, a, b)| (*a..=*b).contains(&line)) {
        return Err(format!("not located at raw[0].rule: {error}"));
    }
    Ok(())
}

/// The matrix's own checks catch what they are there for (on made-up renders, errors
/// and kernel dumps), so a passing matrix means something.
#[test]
fn the_checks_catch_what_they_are_for() {
    let vocab: Vocab =
        words("-A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"ssh\" -j ACCEPT")
            .into_iter()
            .collect();
    let comment = Case {
        id: 1,
        slot: 0,
        fragment: String::new(),
        value: Some("a b".to_owned()),
        toml_level: false,
    };
    let file = |line: &str| {
        vec![RenderedFile {
            family: Family::Ipv4,
            kind: render::FileKind::Rules,
            file_name: "base.rules".to_owned(),
            text: format!("*filter\n{line}\nCOMMIT\n"),
        }]
    };
    let none = BTreeSet::new();
    let good = "-A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"a b\" -j ACCEPT";
    assert!(check_rendered(&comment, Kind::Comment, &file(good), &none, &vocab).is_ok());
    for bad in [
        // The value split into words, or outside quotes.
        "-A INPUT -p tcp -m comment --comment a b -j ACCEPT",
        "-A INPUT -p tcp -m comment --comment \"a\" b -j ACCEPT",
        // A quote that does not end its word, a backslash.
        "-A INPUT -m comment --comment \"a b\"x -j ACCEPT",
        "-A INPUT -m comment --comment \"a\\\" b\" -j ACCEPT",
        // A word the value brought that is no legal token.
        "-A INPUT -p tcp -m comment --comment \"a b\" -j NFQUEUE",
    ] {
        assert!(
            check_rendered(&comment, Kind::Comment, &file(bad), &none, &vocab).is_err(),
            "{bad}"
        );
    }
    let iface = Case {
        value: Some("eth0 -j".to_owned()),
        ..comment
    };
    assert!(
        check_rendered(
            &iface,
            Kind::Interface,
            &file("-A INPUT -i eth0 -j -j ACCEPT"),
            &none,
            &vocab
        )
        .is_err()
    );

    let text = "a = 1\nport = 65536\n";
    let places = [("host.services[0]".to_owned(), 2, 2)];
    let any = |_: &str| true;
    let located = format!(
        "{POLICY_PATH}:2:8: host.services[0].port: expected a port\n    2 | port = 65536\n      |        ^^^^^"
    );
    assert_eq!(
        check_located(&located, text, &places, &any).as_deref(),
        Ok("host.services[0].port")
    );
    for bad in [
        located.replace("expected", "\u{1b}[2Jexpected"),
        located.replace("expected a port", "expected\na port"),
        located.replace(":2:8:", ":1:8:"),
        located.replace(":2:8:", ":2:"),
        located.replace(POLICY_PATH, "/elsewhere.toml"),
    ] {
        assert!(check_located(&bad, text, &places, &any).is_err(), "{bad:?}");
    }

    let saved = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -m comment --comment \"a -j b\" -j ACCEPT\nCOMMIT\n";
    assert!(check_kernel_save(saved).is_ok());
    for (from, to) in [
        ("-j ACCEPT", "-j NFQUEUE --queue-num 7"),
        ("-j ACCEPT", "-g DOCKER"),
        ("-j ACCEPT", "-j ACCEPT -j DROP"),
        ("-A INPUT", "-A FORWARD"),
        (":DOCKER-USER", ":DOCKER"),
        ("*filter", "*nat"),
    ] {
        let bad = saved.replacen(from, to, 1);
        assert!(check_kernel_save(&bad).is_err(), "{bad}");
    }
    let kernel: Vec<String> = "-A INPUT -p udp -m udp --sport 34463 -j ACCEPT"
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert!(!same_ports("-p udp --sport +99999 -j ACCEPT", &kernel));
    assert!(same_ports("-p udp --sport 34463 -j ACCEPT", &kernel));
}
