//! Every rendered example loads into a fresh network namespace that already holds
//! Docker's rules, with iptables-nft and iptables-legacy, for IPv4 and IPv6: twice, with
//! the same ruleset after each load, leaving Docker's chains (and FORWARD, and nat)
//! byte-identical; and the `.empty` file then returns every owned chain to pass-through.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use iptables_ctl::iptables::shape::OWNED_CHAINS;

use common::{
    Netns, example_policies, file, kernel_tests_enabled, render_policy, without_comments,
};

/// (backend, family suffix, restore program, save program)
const TOOLS: [(&str, &str, &str, &str); 4] = [
    ("nft", "", "iptables-nft-restore", "iptables-nft-save"),
    ("nft", "6", "ip6tables-nft-restore", "ip6tables-nft-save"),
    (
        "legacy",
        "",
        "iptables-legacy-restore",
        "iptables-legacy-save",
    ),
    (
        "legacy",
        "6",
        "ip6tables-legacy-restore",
        "ip6tables-legacy-save",
    ),
];

/// The lines of a save that belong to Docker (or anything else that is not ours): the
/// nat table whole, and in filter everything but the owned chains' lines.
/// Splits a save into the lines that belong to Docker (or anything else that is not
/// ours: the nat table whole, and in filter everything but the owned chains) and the
/// owned chains' lines with their counters left off.
fn partition(save: &str) -> (String, Vec<String>) {
    let mut in_filter = false;
    let (mut others, mut owned) = (String::new(), Vec::new());
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            in_filter = name == "filter";
        }
        let is_owned = in_filter
            && OWNED_CHAINS.iter().any(|c| {
                line.starts_with(&format!(":{c} ")) || line.starts_with(&format!("-A {c} "))
            });
        if is_owned {
            owned.push(line.split(" [").next().unwrap_or(line).to_owned());
        } else {
            others.push_str(line);
            others.push('\n');
        }
    }
    (others, owned)
}

fn not_owned(save: &str) -> String {
    partition(save).0
}

#[test]
fn rendered_files_load_twice_beside_docker_with_both_backends() {
    if !kernel_tests_enabled("rendered_files_load_twice_beside_docker_with_both_backends") {
        return;
    }
    let mut loads = 0;
    for policy in example_policies() {
        let rendered = render_policy(&policy);
        for (backend, six, restore, save) in TOOLS {
            let fixtures: &[&str] = if six.is_empty() {
                &[
                    "tests/fixtures/docker-20.10.rules",
                    "tests/fixtures/docker-28.rules",
                ]
            } else {
                &["tests/fixtures/docker-20.10.rules6"]
            };
            let rules = file(&rendered, &format!("base.rules{six}"));
            let empty = file(&rendered, &format!("base.rules{six}.empty"));
            for fixture in fixtures {
                let what = format!("{} with {backend} on {fixture}", policy.display());
                let ns = Netns::new();
                let docker = std::fs::read_to_string(fixture).expect("fixture");
                ns.exec_ok(restore, &["-w"], docker.as_bytes());
                let before = without_comments(&ns.exec_ok(save, &[], b""));

                ns.exec_ok(restore, &["-w", "-n"], rules.as_bytes());
                let first = without_comments(&ns.exec_ok(save, &[], b""));
                ns.exec_ok(restore, &["-w", "-n"], rules.as_bytes());
                let second = without_comments(&ns.exec_ok(save, &[], b""));
                loads += 2;

                assert_eq!(first, second, "{what}: a second load changed the ruleset");
                assert_eq!(
                    not_owned(&before),
                    not_owned(&first),
                    "{what}: Docker's chains changed"
                );
                assert!(
                    first.contains(":INPUT DROP") && first.contains("-A DOCKER-USER -j RETURN"),
                    "{what}: rules not in force:\n{first}"
                );
                let forward: Vec<&str> = first
                    .lines()
                    .filter(|l| l.starts_with("-A FORWARD"))
                    .collect();
                assert_eq!(
                    forward.first(),
                    Some(&"-A FORWARD -j DOCKER-USER"),
                    "{what}: FORWARD must jump to DOCKER-USER first"
                );

                ns.exec_ok(restore, &["-w", "-n"], empty.as_bytes());
                loads += 1;
                let stopped = without_comments(&ns.exec_ok(save, &[], b""));
                assert_eq!(
                    not_owned(&before),
                    not_owned(&stopped),
                    "{what}: .empty changed Docker's chains"
                );
                assert_eq!(
                    partition(&stopped).1,
                    [
                        ":INPUT ACCEPT",
                        ":OUTPUT ACCEPT",
                        ":DOCKER-USER -",
                        "-A DOCKER-USER -j RETURN"
                    ],
                    "{what}: .empty must leave the owned chains passing everything"
                );
            }
        }
    }
    println!(
        "{loads} loads into fresh namespaces, all idempotent and leaving Docker's chains intact"
    );
    assert!(loads >= 8 * 4 * 3);
}

/// What the kernel holds, all tables, after `loads` in a fresh namespace: each load a
/// restore process of its own, as `systemctl reload` and `stop` run them one after the
/// other; or, with `one_process`, one restore reading them all (a transaction each), as
/// the kernel check runs them.
fn held_after(restore: &str, save: &str, loads: &[&str], one_process: bool) -> String {
    let ns = Netns::new();
    if one_process {
        ns.exec_ok(restore, &["-w", "-n"], loads.concat().as_bytes());
    } else {
        for load in loads {
            ns.exec_ok(restore, &["-w", "-n"], load.as_bytes());
        }
    }
    without_comments(&ns.exec_ok(save, &[], b""))
}

/// The kernel check loads the rules before their second load, and before the
/// pass-through file, without the policies that load sets again (so that the pair waits
/// for one RCU grace period, not two). The kernel must then hold exactly what the whole
/// rules followed by that load leave, as the units run them: for every example, both
/// backends and both families, and for a pass-through file that leaves a policy alone.
#[test]
fn a_first_load_without_the_policies_set_again_leaves_what_the_whole_one_does() {
    if !kernel_tests_enabled(
        "a_first_load_without_the_policies_set_again_leaves_what_the_whole_one_does",
    ) {
        return;
    }
    use iptables_ctl::iptables::trial::without_policies_set_again;
    let mut pairs = Vec::new();
    for policy in example_policies() {
        let rendered = render_policy(&policy);
        for six in ["", "6"] {
            let rules = file(&rendered, &format!("base.rules{six}")).to_owned();
            let empty = file(&rendered, &format!("base.rules{six}.empty")).to_owned();
            pairs.push((format!("{}{six}", policy.display()), six, rules, empty));
        }
    }
    // OUTPUT closed by the rules and not named by the pass-through file: it stays closed
    // after both, and so it must after the shortened first load.
    let closed_output = "*filter\n:INPUT DROP [0:0]\n:OUTPUT DROP [0:0]\n:DOCKER-USER - [0:0]\n\
        -F INPUT\n-F OUTPUT\n-A INPUT -i lo -j ACCEPT\n-A OUTPUT -o lo -j ACCEPT\n\
        -A DOCKER-USER -j RETURN\nCOMMIT\n";
    let input_only = "*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-F INPUT\n\
        -A DOCKER-USER -j RETURN\nCOMMIT\n";
    for six in ["", "6"] {
        pairs.push((
            format!("OUTPUT closed, pass-through file silent on it{six}"),
            six,
            closed_output.to_owned(),
            input_only.to_owned(),
        ));
    }
    let mut compared = 0;
    for (what, six, rules, empty) in &pairs {
        for (backend, family, restore, save) in TOOLS {
            if family != *six {
                continue;
            }
            for (then, name) in [(rules, "the rules again"), (empty, "the pass-through file")] {
                let whole = held_after(restore, save, &[rules, then], false);
                let first = without_policies_set_again(rules, then);
                let shortened = held_after(restore, save, &[&first, then], true);
                assert_eq!(
                    whole, shortened,
                    "{what} with {backend}, then {name}: the shortened first load left something else"
                );
                compared += 1;
            }
        }
    }
    let silent = held_after(TOOLS[0].2, TOOLS[0].3, &[closed_output, input_only], false);
    assert!(
        silent.contains(":OUTPUT DROP"),
        "the case that needs a policy kept is not one:\n{silent}"
    );
    println!("{compared} pairs of loads leave the same ruleset either way");
    assert!(compared >= pairs.len() * 4);
}

/// A rules file that appends to INPUT without flushing it first piles its rules up on
/// every load: the kernel check refuses it as not idempotent, its second load starting
/// from the first without the policies the second sets again, for both families.
#[test]
fn a_file_that_piles_rules_up_is_refused_as_not_idempotent() {
    if !kernel_tests_enabled("a_file_that_piles_rules_up_is_refused_as_not_idempotent") {
        return;
    }
    use iptables_ctl::family::Family;
    use iptables_ctl::iptables::trial::{NetnsTrial, RulesetTrial, TrialError};
    let rules = "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n\
        -F OUTPUT\n-A INPUT -i lo -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
    let empty = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n\
        -F INPUT\n-F OUTPUT\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
    for family in Family::ALL {
        let result = NetnsTrial::default().trial(
            family,
            ("base.sets", ""),
            ("base.rules", rules),
            ("base.rules.empty", empty),
        );
        assert!(
            matches!(&result, Err(TrialError::NotIdempotent { file }) if file == "base.rules"),
            "{family}: {result:?}"
        );
    }
}
