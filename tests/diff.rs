//! `iptables-ctl diff` against a real kernel: rules rendered from one policy are loaded
//! into a fresh network namespace (as the units load them, with FORWARD's jump first),
//! then `diff` runs inside it against that policy (no change, exit 0), an edited one
//! (a unified diff of both families, exit 1, `--json` with `changed`), with FORWARD's
//! jump gone (exit 1), and a broken one (exit 2, as diff(1)'s trouble). It never
//! changes the live rules or writes a file.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::{Netns, kernel_tests_enabled, stderr, stdout, tree};

const POLICY: &str = "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = 22\n";

/// The namespace's filter tables, both families, without counters.
fn live(ns: &Netns) -> String {
    ["iptables-save", "ip6tables-save"]
        .iter()
        .map(|save| common::without_comments(&ns.exec_ok(save, &["-t", "filter"], b"")))
        .collect::<Vec<_>>()
        .join("")
        .lines()
        .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(at)) => format!("{}\n", &l[..at]),
            _ => format!("{l}\n"),
        })
        .collect()
}

/// `iptables-ctl --config POLICY diff ARGS` inside `ns`.
fn diff(ns: &Netns, policy: &Path, args: &[&str]) -> Output {
    let mut argv = vec![
        "netns".to_owned(),
        "exec".to_owned(),
        ns.name.clone(),
        env!("CARGO_BIN_EXE_iptables-ctl").to_owned(),
        "--config".to_owned(),
        policy.display().to_string(),
        "diff".to_owned(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    std::process::Command::new("ip")
        .args(&argv)
        .output()
        .expect("run iptables-ctl diff")
}

/// A namespace holding what `policy` renders, loaded as the units load it.
fn loaded(dir: &Path, policy: &str) -> Netns {
    let ns = Netns::new();
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    let root = dir.join("stage");
    fs::create_dir_all(root.join("etc/iptables")).unwrap();
    fs::write(root.join("etc/iptables/base.toml"), policy).unwrap();
    common::staged_command(&root, &["render"])
        .assert()
        .success();
    for (restore, file, iptables) in [
        ("iptables-restore", "base.rules", "iptables"),
        ("ip6tables-restore", "base.rules6", "ip6tables"),
    ] {
        let text = fs::read(root.join("etc/iptables").join(file)).unwrap();
        ns.exec_ok(restore, &["-w", "-n"], &text);
        ns.exec_ok(iptables, &["-w", "-I", "FORWARD", "-j", "DOCKER-USER"], b"");
    }
    ns
}

#[test]
fn diff_shows_what_applying_would_change_and_changes_nothing() {
    if !kernel_tests_enabled("diff_shows_what_applying_would_change_and_changes_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = loaded(dir.path(), POLICY);
    let policies = dir.path().join("policies");
    fs::create_dir(&policies).unwrap();
    let same = policies.join("same.toml");
    fs::write(&same, POLICY).unwrap();
    let edited = policies.join("edited.toml");
    fs::write(&edited, POLICY.replace("port = 22", "port = 2222")).unwrap();
    let broken = policies.join("broken.toml");
    fs::write(&broken, POLICY.replace("port = 22", "port = 70000")).unwrap();
    let before = (live(&ns), tree(&policies));

    // The policy in force: nothing would change.
    let out = diff(&ns, &same, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("applying it would change nothing"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("\n+"), "{}", stdout(&out));

    // An edit: both families' owned chains, live (-) against rendered (+).
    let out = diff(&ns, &edited, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    for family in ["IPv4", "IPv6"] {
        assert!(
            text.contains(&format!("--- {family} live (INPUT, OUTPUT, DOCKER-USER)")),
            "{text}"
        );
    }
    let removed = text
        .lines()
        .filter(|l| l.starts_with("-") && l.contains("--dport 22 "))
        .count();
    let added = text
        .lines()
        .filter(|l| l.starts_with("+") && l.contains("--dport 2222 "))
        .count();
    assert_eq!(
        (removed, added),
        (2, 2),
        "one line each way per family:\n{text}"
    );
    assert!(
        text.ends_with(
            "would change the live rules (IPv4, IPv6): `iptables-ctl reload base` applies it\n"
        ),
        "{text}"
    );
    let out = diff(&ns, &edited, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(json["changed"], true, "{json:#}");
    assert_eq!(json["schema"], 1, "{json:#}");
    assert_eq!(json["families"][1]["family"], "ipv6", "{json:#}");
    assert!(
        json["families"][1]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("--dport 2222 ")),
        "{json:#}"
    );

    // FORWARD no longer meets the rules first (IPv6 only): a change, with the rules equal.
    ns.exec_ok(
        "ip6tables",
        &["-w", "-D", "FORWARD", "-j", "DOCKER-USER"],
        b"",
    );
    let out = diff(&ns, &same, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("IPv4: no change"), "{text}");
    assert!(
        text.contains("IPv6: forwarded traffic does not meet these rules first"),
        "{text}"
    );
    ns.exec_ok(
        "ip6tables",
        &["-w", "-I", "FORWARD", "-j", "DOCKER-USER"],
        b"",
    );

    // Trouble is 2, never 1, and names the file and field.
    let out = diff(&ns, &broken, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("host.services[0].port"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    assert_eq!(
        (live(&ns), tree(&policies)),
        before,
        "diff changed something"
    );
}
