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
