//! The reference of the policy file: every key, its type, its default and what it
//! means, in one table. The manual page `iptables-ctl.toml(5)` is printed from it, and
//! a test holds it to the parser: every key the parser knows is here, and nothing else.

/// One key of the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Its path: `section.key`, with `[[...]]` tables named by their section
    /// (`host.services.port`), a top-level table by itself (`lists`).
    pub path: &'static str,
    /// What it takes.
    pub kind: &'static str,
    /// What it is when left out (`required` when it must be given).
    pub default: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// The sections, in the order the manual describes them, with what each is for.
pub const SECTIONS: [(&str, &str); 12] = [
    (
        "interfaces",
        "Which interfaces face untrusted networks, and which are Docker's bridges.",
    ),
    ("defaults", "How denied packets are refused."),
    (
        "lists",
        "Named lists of addresses and networks, used by `from` and `to`. IPv4 and IPv6 entries go to their own family's rules.",
    ),
    ("host", "INPUT: what reaches the host itself."),
    (
        "host.services",
        "One `[[host.services]]` table per service open on the host.",
    ),
    ("outbound", "OUTPUT: where the host may connect."),
    (
        "outbound.allow",
        "One `[[outbound.allow]]` table per allowed destination.",
    ),
    (
        "docker",
        "DOCKER-USER: who may reach the ports Docker publishes (and docker-proxy's clients in INPUT).",
    ),
    (
        "docker.published",
        "One `[[docker.published]]` table per published port that may be reached. It means the same whichever way Docker takes the connection: DNAT through DOCKER-USER, or docker-proxy on the host (IPv6 under Docker's default setup), where it allows the host port in INPUT.",
    ),
    ("log", "Rate-limited logging of denied packets."),
    (
        "raw",
        "One `[[raw]]` table per rule in a backend's own syntax: the escape hatch, checked to stay one rule in a chain this tool owns.",
    ),
    (
        "lints",
        "Which lints `check`, `status` and the commands that end with its check do not report for this policy (`iptables-ctl lints` lists them all).",
    ),
];

const PORTS: &str = "port, \"first-last\" range, or a list of them";
const ADDRESSES: &str = "list of addresses, networks and list names";
const FAMILY: &str = "\"both\", \"ipv4\" or \"ipv6\"";
const INTERFACES: &str = "list of interface names (a trailing + matches a prefix)";

/// Every key of the policy file.
pub const KEYS: &[Key] = &[
    Key {
        path: "interfaces.external",
        kind: "\"auto\", an interface name, or a list of names",
        default: "\"auto\"",
        meaning: "The interfaces facing untrusted networks, as the audit and status see them; \"auto\" takes those of the default routes wherever the rules run. Protection of published ports does not depend on it.",
    },
    Key {
        path: "interfaces.docker_bridges",
        kind: INTERFACES,
        default: "[\"docker0\", \"br-+\"]",
        meaning: "Docker's bridge interfaces: traffic forwarded to them is what DOCKER-USER guards.",
    },
    Key {
        path: "defaults.deny",
        kind: "\"reject\" or \"drop\"",
        default: "\"reject\"",
        meaning: "How denied packets are refused: a TCP reset or ICMP port-unreachable (clients fail fast), or silently (clients time out).",
    },
    Key {
        path: "lists",
        kind: "table of NAME = list of addresses and networks, or NAME = { file = \"PATH\" }",
        default: "no lists",
        meaning: "Named lists; a list must not be empty. A file (relative to the policy's directory, inside it) holds one address or network per line; `#` starts a comment. A bad line is reported with its file and line, and nothing is rendered. A list with more than 64 networks of one family is matched in that family as one ipset (hash:net, named ictl.INSTANCE.LIST.v4 or .v6), loaded from /etc/iptables/INSTANCE.sets (.sets6) before the rules and swapped in whole on every reload; at most 500000 networks of a family.",
    },
    Key {
        path: "host.ping",
        kind: "boolean",
        default: "true",
        meaning: "Answer ICMP echo requests.",
    },
    Key {
        path: "host.containers",
        kind: "\"listed\" or \"all\"",
        default: "\"listed\"",
        meaning: "Whether containers reach only the services listed, like any other client, or every service on the host.",
    },
    Key {
        path: "host.services",
        kind: "array of tables",
        default: "none",
        meaning: "The services open on the host.",
    },
    Key {
        path: "host.services.port",
        kind: PORTS,
        default: "required",
        meaning: "The port(s) on the host.",
    },
    Key {
        path: "host.services.proto",
        kind: "\"tcp\" or \"udp\"",
        default: "\"tcp\"",
        meaning: "The protocol.",
    },
    Key {
        path: "host.services.from",
        kind: ADDRESSES,
        default: "anywhere",
        meaning: "The allowed sources.",
    },
    Key {
        path: "host.services.interfaces",
        kind: INTERFACES,
        default: "any",
        meaning: "Only connections arriving on these interfaces.",
    },
    Key {
        path: "host.services.family",
        kind: FAMILY,
        default: "\"both\"",
        meaning: "Limit the entry to one family.",
    },
    Key {
        path: "host.services.comment",
        kind: "string",
        default: "one made from the entry",
        meaning: "Shown in the rule.",
    },
    Key {
        path: "outbound.policy",
        kind: "\"accept\" or \"allowlist\"",
        default: "\"accept\"",
        meaning: "Whether the host may connect anywhere, or only where listed.",
    },
    Key {
        path: "outbound.essentials",
        kind: "boolean",
        default: "true",
        meaning: "With an allowlist, still allow DNS, NTP, HTTP(S), DHCP and ICMP.",
    },
    Key {
        path: "outbound.allow",
        kind: "array of tables",
        default: "none",
        meaning: "The allowed destinations.",
    },
    Key {
        path: "outbound.allow.port",
        kind: PORTS,
        default: "required",
        meaning: "The destination port(s).",
    },
    Key {
        path: "outbound.allow.proto",
        kind: "\"tcp\" or \"udp\"",
        default: "\"tcp\"",
        meaning: "The protocol.",
    },
    Key {
        path: "outbound.allow.to",
        kind: ADDRESSES,
        default: "anywhere",
        meaning: "The allowed destinations.",
    },
    Key {
        path: "outbound.allow.family",
        kind: FAMILY,
        default: "\"both\"",
        meaning: "Limit the entry to one family.",
    },
    Key {
        path: "outbound.allow.comment",
        kind: "string",
        default: "one made from the entry",
        meaning: "Shown in the rule.",
    },
    Key {
        path: "docker.default",
        kind: "\"deny\" or \"allow\"",
        default: "\"deny\"",
        meaning: "Whether new connections from outside to containers are denied unless listed under docker.published, or left to Docker (publishing then means open to all).",
    },
    Key {
        path: "docker.published",
        kind: "array of tables",
        default: "none",
        meaning: "The published ports that may be reached, and by whom.",
    },
    Key {
        path: "docker.published.port",
        kind: PORTS,
        default: "required",
        meaning: "The host port the client dialed (8080 for -p 8080:80), matched with the connection's original destination.",
    },
    Key {
        path: "docker.published.proto",
        kind: "\"tcp\" or \"udp\"",
        default: "\"tcp\"",
        meaning: "The protocol.",
    },
    Key {
        path: "docker.published.from",
        kind: ADDRESSES,
        default: "anywhere",
        meaning: "The allowed sources.",
    },
    Key {
        path: "docker.published.host_address",
        kind: "address",
        default: "any",
        meaning: "Only connections dialed to this host address.",
    },
    Key {
        path: "docker.published.interfaces",
        kind: INTERFACES,
        default: "any",
        meaning: "Only connections arriving on these interfaces; names only narrow what the entry allows.",
    },
    Key {
        path: "docker.published.family",
        kind: FAMILY,
        default: "\"both\"",
        meaning: "Limit the entry to one family.",
    },
    Key {
        path: "docker.published.comment",
        kind: "string",
        default: "one made from the entry",
        meaning: "Shown in the rule.",
    },
    Key {
        path: "log.enabled",
        kind: "boolean",
        default: "false",
        meaning: "Log denied packets, rate-limited.",
    },
    Key {
        path: "log.prefix",
        kind: "string of up to 20 characters",
        default: "\"iptables-ctl\"",
        meaning: "The start of the log prefix; a tag of the chain follows it.",
    },
    Key {
        path: "log.rate",
        kind: "\"N/second\", \"N/minute\", \"N/hour\" or \"N/day\"",
        default: "\"5/minute\"",
        meaning: "The average rate of log lines.",
    },
    Key {
        path: "log.burst",
        kind: "integer from 1 to 10000",
        default: "10",
        meaning: "Log lines allowed before the rate applies.",
    },
    Key {
        path: "raw.backend",
        kind: "\"iptables\"",
        default: "\"iptables\"",
        meaning: "The backend whose syntax the rule is written in; only that backend renders it.",
    },
    Key {
        path: "raw.chain",
        kind: "\"input\", \"output\" or \"docker-user\"",
        default: "required",
        meaning: "The chain the rule is appended to, before that chain's final deny.",
    },
    Key {
        path: "raw.family",
        kind: FAMILY,
        default: "\"both\"",
        meaning: "Which families get the rule.",
    },
    Key {
        path: "raw.rule",
        kind: "string of 1 to 1000 characters",
        default: "required",
        meaning: "The rule's options without -A CHAIN, such as \"-p udp --dport 51820 -j ACCEPT\": one -j with ACCEPT, DROP, REJECT, RETURN, LOG or NFLOG.",
    },
    Key {
        path: "raw.comment",
        kind: "string",
        default: "\"raw rule\"",
        meaning: "Shown in the rule.",
    },
    Key {
        path: "lints.skip",
        kind: "list of lint names",
        default: "none",
        meaning: "Warnings not to report, such as \"rules-in-other-variant\". Only a warning can be skipped: an error says the rules do not protect what the policy says.",
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::policy::Policy;

    /// The keys the parser accepts in `table` (`""`: the top level), as serde lists them
    /// when it refuses an unknown one. `prefix` is a policy that makes the table exist.
    fn parser_keys(table: &str, prefix: &str) -> Vec<String> {
        let text = format!("{prefix}zz_probe = 1\n");
        let error = Policy::parse(Path::new("probe.toml"), text.as_bytes())
            .expect_err("the probe is refused")
            .to_string();
        let (_, list) = error
            .lines()
            .next()
            .and_then(|l| l.split_once("unknown field `zz_probe`, expected "))
            .unwrap_or_else(|| panic!("no field list in {error}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(|key| {
                if table.is_empty() {
                    key.to_owned()
                } else {
                    format!("{table}.{key}")
                }
            })
            .collect()
    }

    /// Every key the parser knows is in the reference, and the reference has no other.
    #[test]
    fn the_reference_names_every_key_the_parser_knows() {
        let tables = [
            ("", ""),
            ("interfaces", "[interfaces]\n"),
            ("defaults", "[defaults]\n"),
            ("host", "[host]\n"),
            ("host.services", "[[host.services]]\nport = 22\n"),
            ("outbound", "[outbound]\n"),
            ("outbound.allow", "[[outbound.allow]]\nport = 53\n"),
            ("docker", "[docker]\n"),
            ("docker.published", "[[docker.published]]\nport = 80\n"),
            ("log", "[log]\n"),
            ("raw", "[[raw]]\nchain = \"input\"\nrule = \"-j ACCEPT\"\n"),
            ("lints", "[lints]\n"),
        ];
        let mut known = BTreeSet::new();
        for (table, prefix) in tables {
            for key in parser_keys(table, prefix) {
                // A table is described by its own keys (and by SECTIONS).
                let is_table = tables.iter().any(|(t, _)| *t == key) && key != "lists";
                if !is_table {
                    known.insert(key);
                }
            }
        }
        let described: BTreeSet<String> = KEYS
            .iter()
            .map(|k| k.path.to_owned())
            .filter(|p| {
                !["host.services", "outbound.allow", "docker.published"].contains(&p.as_str())
            })
            .collect();
        assert_eq!(known, described);
        let sections: BTreeSet<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
        for key in KEYS {
            let section = key.path.rsplit_once('.').map_or(key.path, |(s, _)| s);
            assert!(sections.contains(section), "{} has no section", key.path);
        }
    }
}
