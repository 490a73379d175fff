//! The packet evaluator against the kernel. For 32 generated policies, each rendered and
//! loaded (with `iptables-restore -n`) into a Docker-like host namespace beside Docker's
//! rules (Docker 20.10's layout for even policies, 28.2+'s with DOCKER-FORWARD and raw
//! drops for odd ones), every probe is answered twice: by the evaluator, from the host's
//! `iptables-save` and `ip -j` output, and by a real TCP connect from the client
//! namespace. Where the evaluator answers, it must agree with the kernel every time, and
//! it must answer at least 95% of the probes.
//!
//! Probes cover both families, three client addresses (allowed and denied sources),
//! published ports (listed, unlisted, in ranges, pinned to a host address), unpublished
//! host ports, connections routed straight to the container's address, and both deny
//! styles (reject and drop), and allowlists held in ipsets (`[[raw]]` rules matching
//! them; the evaluator reads the sets as the host's `ipset save` lists them).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use common::topology::{Family, Topology, v4, v6};
use common::{
    Dice, Netns, Outcome, file, kernel_tests_enabled, listen, probe_within, render_policy,
};
use iptables_ctl::host::net::HostNet;
use iptables_ctl::iptables::dump;
use iptables_ctl::iptables::walk::{self, Packet, Ruleset, Transport, Verdict};

const POLICIES: u64 = 32;
/// Ports probed on the host: published 8080/8443/9090, host services 2222/2223/3000.
const PORTS: [u16; 6] = [8080, 8443, 9090, 2222, 2223, 3000];
/// How long a dropped probe waits.
/// (Neighbour caches are warm by then: a local handshake takes well under a millisecond.)
const DROP_WAIT: Duration = Duration::from_millis(400);

/// Source restrictions a rule may carry: nothing (anywhere), single clients, networks
/// holding some of them, and the named lists below.
const SOURCES: [&str; 12] = [
    "",
    "\"192.0.2.10\"",
    "\"192.0.2.0/27\"",
    "\"192.0.2.24/29\"",
    "\"2001:db8:1::a\"",
    "\"2001:db8:1::10/124\"",
    "\"office\"",
    "\"lab\"",
    "\"office\", \"2001:db8:1::1e\"",
    "\"192.0.2.16/28\", \"2001:db8:1::/124\"",
    "\"lab\", \"192.0.2.30\"",
    "\"198.51.100.0/24\"",
];

fn from(dice: &mut Dice) -> String {
    match *dice.pick(&SOURCES) {
        "" => String::new(),
        list => format!("from = [{list}]\n"),
    }
}

/// The `n`th generated policy.
fn policy(n: u64) -> String {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (n + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let mut text = String::from("[interfaces]\nexternal = \"eth0\"\n\n");
    let deny = if n % 8 == 7 { "drop" } else { "reject" };
    writeln!(text, "[defaults]\ndeny = \"{deny}\"\n").unwrap();
    text.push_str(
        "[lists]\noffice = [\"192.0.2.0/28\", \"2001:db8:1::/124\"]\nlab = [\"192.0.2.16/28\"]\n\n",
    );
    let docker_default = if dice.chance(15) { "allow" } else { "deny" };
    writeln!(text, "[docker]\ndefault = \"{docker_default}\"\n").unwrap();
    for (port, _) in [(2222, ()), (3000, ())] {
        if dice.chance(70) {
            writeln!(
                text,
                "[[host.services]]\nport = {port}\n{}",
                from(&mut dice)
            )
            .unwrap();
        }
    }
    if dice.chance(30) {
        writeln!(
            text,
            "[[host.services]]\nport = \"2222-2223\"\n{}",
            from(&mut dice)
        )
        .unwrap();
    }
    for port in ["8080", "8443", "9090", "\"8000-8500\"", "[8080, 9090]"] {
        if dice.chance(45) {
            if dice.chance(20) {
                // Pinned to the host's IPv4 address: IPv4 sources only.
                let from = dice.pick(&["", "from = [\"192.0.2.10\"]\n", "from = [\"lab\"]\n"]);
                writeln!(
                    text,
                    "[[docker.published]]\nport = {port}\nhost_address = \"192.0.2.1\"\n{from}"
                )
                .unwrap();
            } else {
                writeln!(
                    text,
                    "[[docker.published]]\nport = {port}\n{}",
                    from(&mut dice)
                )
                .unwrap();
            }
        }
    }
    if dice.chance(25) {
        text.push_str("[[raw]]\nchain = \"docker-user\"\nfamily = \"ipv4\"\nrule = \"-m iprange --src-range 192.0.2.18-192.0.2.22 -m conntrack --ctstate DNAT --ctorigdstport 9090 -j RETURN\"\n\n");
    }
    if dice.chance(25) {
        text.push_str("[[raw]]\nchain = \"input\"\nrule = \"-p tcp -m multiport --dports 3000,2223 -j ACCEPT\"\n\n");
    }
    // Allowlists as ipsets (made in the host namespace by the test: see SETS).
    if dice.chance(35) {
        for (family, set) in [("ipv4", "diff4"), ("ipv6", "diff6")] {
            writeln!(text, "[[raw]]\nchain = \"docker-user\"\nfamily = \"{family}\"\nrule = \"-m set --match-set {set} src -m conntrack --ctstate DNAT --ctorigdstport 8443 -j RETURN\"\n").unwrap();
        }
    }
    if dice.chance(35) {
        for (family, set) in [("ipv4", "diff4"), ("ipv6", "diff6")] {
            writeln!(text, "[[raw]]\nchain = \"input\"\nfamily = \"{family}\"\nrule = \"-p tcp -m set --match-set {set} src --dport 2223 -j ACCEPT\"\n").unwrap();
        }
    }
    text
}

/// The ipsets the generated policies' raw rules name, as `ipset restore` input: one
/// client of each family in, the others out (a /30 holds 192.0.2.30).
const SETS: &str = "create diff4 hash:net family inet\nadd diff4 192.0.2.20\nadd diff4 192.0.2.28/30\ncreate diff6 hash:net family inet6\nadd diff6 2001:db8:1::14\n";

/// One probe's two answers.
struct Answer {
    description: String,
    kernel: Outcome,
    model: Verdict,
    /// A rule matching an ipset matched on the evaluator's walk.
    through_set: bool,
}

fn agrees(kernel: Outcome, model: &Verdict) -> Option<bool> {
    match model {
        Verdict::Unknown { .. } => None,
        Verdict::Accept => Some(kernel == Outcome::Open),
        Verdict::Reject { .. } => Some(kernel == Outcome::Refused),
        Verdict::Drop => Some(kernel == Outcome::Timeout),
    }
}

fn load(ns: &Netns, family: &Family, text: &str) {
    let program = format!("ip{}tables-restore", family.six);
    ns.exec_ok(&program, &["-w", "-n"], text.as_bytes());
}

/// Replaces the raw, nat and filter tables with Docker's rules in the layout of
/// policy `n`, as a freshly started Docker would leave them.
fn load_docker(ns: &Netns, family: &Family, n: u64) {
    let program = format!("ip{}tables-restore", family.six);
    let layout = if n.is_multiple_of(2) {
        // 20.10 has no raw rules: reset the table another layout may have filled.
        format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n{}",
            family.docker_rules
        )
    } else {
        family.docker28_rules.clone()
    };
    ns.exec_ok(&program, &["-w"], layout.as_bytes());
}

#[test]
fn the_evaluator_agrees_with_the_kernel_on_generated_policies() {
    if !kernel_tests_enabled("the_evaluator_agrees_with_the_kernel_on_generated_policies") {
        return;
    }
    let topology = Topology::build();
    let families = [v4(), v6()];
    for family in &families {
        load(&topology.host, family, &family.docker_rules);
    }
    topology
        .host
        .exec_ok("ipset", &["restore"], SETS.as_bytes());
    let _container = listen(&topology.container, &[80, 443, 9090]);
    let _host = listen(&topology.host, &[2222, 2223, 3000]);
    // Warm-up, not measured: resolve every neighbour (client, host, container) with the
    // firewall still open, so that a first IPv6 neighbour solicitation is never mistaken
    // for a dropped probe.
    for family in &families {
        for client in family.clients {
            for port in [8080, 2222] {
                let outcome = probe_within(
                    &topology.client,
                    Some(client),
                    family.host_ext,
                    port,
                    Duration::from_secs(3),
                );
                assert_eq!(outcome, Outcome::Open, "warm-up {client} -> {port}");
            }
        }
    }
    let host_net = topology
        .host
        .enter(HostNet::read)
        .expect("read the host's network");
    let dir = tempfile::tempdir().unwrap();

    let mut answers: Vec<Answer> = Vec::new();
    for n in 0..POLICIES {
        let path = dir.path().join(format!("generated-{n}.toml"));
        let text = policy(n);
        std::fs::write(&path, &text).unwrap();
        let rendered = render_policy(&path);
        for family in &families {
            load_docker(&topology.host, family, n);
            let rules = file(
                &rendered,
                if family.six.is_empty() {
                    "base.rules"
                } else {
                    "base.rules6"
                },
            );
            load(&topology.host, family, rules);
            let save = topology
                .host
                .exec_ok(&format!("ip{}tables-save", family.six), &[], b"");
            let ruleset = Ruleset::new(&dump::parse(&save).expect("the kernel's own dump parses"));
            let targets = PORTS
                .iter()
                .map(|port| (family.host_ext, *port))
                .chain([(family.container, 80)]);
            for (index, client) in family.clients.iter().copied().enumerate() {
                // Straight to the container: from one client (its fate does not
                // depend on the source, and on 28+ each such probe waits out a drop).
                for (destination, port) in targets
                    .clone()
                    .filter(|(d, _)| index == 0 || *d == family.host_ext)
                {
                    let kernel =
                        probe_within(&topology.client, Some(client), destination, port, DROP_WAIT);
                    let packet = Packet {
                        source: client.parse::<IpAddr>().unwrap(),
                        destination: destination.parse().unwrap(),
                        transport: Transport::Tcp,
                        source_port: 40000,
                        destination_port: port,
                        in_interface: "eth0".to_owned(),
                    };
                    let walk = walk::walk(&ruleset, &host_net, &packet);
                    answers.push(Answer {
                        description: format!(
                            "policy {n} ({path}), {client} -> {destination}:{port}",
                            path = path.display()
                        ),
                        kernel,
                        through_set: walk.steps.iter().any(|s| s.what.contains("--match-set")),
                        model: walk.verdict,
                    });
                }
            }
        }
    }

    let total = answers.len();
    let answered: Vec<&Answer> = answers
        .iter()
        .filter(|a| agrees(a.kernel, &a.model).is_some())
        .collect();
    let wrong: Vec<String> = answered
        .iter()
        .filter(|a| agrees(a.kernel, &a.model) == Some(false))
        .map(|a| {
            format!(
                "{}: kernel {:?}, evaluator {}",
                a.description, a.kernel, a.model
            )
        })
        .collect();
    let count = |o: Outcome| answers.iter().filter(|a| a.kernel == o).count();
    eprintln!(
        "differential: {POLICIES} policies, {total} probes ({} open, {} refused, {} dropped); evaluator answered {} ({:.1}%), agreed with the kernel on {}",
        count(Outcome::Open),
        count(Outcome::Refused),
        count(Outcome::Timeout),
        answered.len(),
        100.0 * answered.len() as f64 / total as f64,
        answered.len() - wrong.len()
    );
    for unknown in answers
        .iter()
        .filter(|a| agrees(a.kernel, &a.model).is_none())
        .take(5)
    {
        eprintln!("  unanswered: {}: {}", unknown.description, unknown.model);
    }
    assert!(total >= 500, "{total} probes");
    let with_sets = (0..POLICIES)
        .filter(|n| policy(*n).contains("--match-set"))
        .count();
    assert!(with_sets >= 8, "only {with_sets} policies use ipsets");
    // Probes the sets decided were answered, and (with every answer) agreed.
    let through_sets: Vec<&Answer> = answers.iter().filter(|a| a.through_set).collect();
    eprintln!(
        "differential: {} probes went through a rule matching an ipset",
        through_sets.len()
    );
    assert!(
        through_sets.len() >= 10
            && through_sets
                .iter()
                .all(|a| agrees(a.kernel, &a.model) == Some(true)),
        "{} probes through a set rule",
        through_sets.len()
    );
    assert!(
        wrong.is_empty(),
        "the evaluator disagrees with the kernel:\n{}",
        wrong.join("\n")
    );
    assert!(
        answered.len() * 100 >= total * 95,
        "answered {} of {total}",
        answered.len()
    );
    for outcome in [Outcome::Open, Outcome::Refused, Outcome::Timeout] {
        assert!(
            count(outcome) > 0,
            "no probe ended {outcome:?}: the policies do not exercise it"
        );
    }
}
