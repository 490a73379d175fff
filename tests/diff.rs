//! `iptables-ctl diff` against a real kernel: rules rendered from one policy are loaded
//! into a fresh network namespace (as the units load them, with FORWARD's jump first)
//! and installed as the instance's files, then `diff` runs inside it against that
//! policy (no change, exit 0), an edited one (a unified diff of both families and the
//! files it would write, exit 1, `--json` with `changed`; `reload --dry-run` and
//! `apply --dry-run` say the same and exit 0), files on disk that differ
//! from the live rules (exit 1), FORWARD's jump gone (exit 1), and a broken policy
//! (exit 2, as diff(1)'s trouble). It never changes the live rules or writes a file.
//!
//! The instance's files must sit in /etc/iptables, where `diff` reads them: each run
//! gets a private mount namespace whose /etc is an overlay of the host's, with the
//! test's files in the upper layer, so the host's /etc is never written.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Netns, kernel_tests_enabled, run_ok, stderr, stdout, tree};

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

/// An /etc for `diff`: the host's, with `upper/iptables` on top.
struct Etc {
    upper: PathBuf,
    work: PathBuf,
}

impl Etc {
    /// The instance's directory as the test writes it (the overlay's upper layer).
    fn iptables(&self) -> PathBuf {
        self.upper.join("iptables")
    }
}

/// `iptables-ctl diff ARGS` inside `ns`, with `etc` as /etc.
fn diff(ns: &Netns, etc: &Etc, args: &[&str]) -> Output {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    ctl(ns, etc, &all)
}

/// `iptables-ctl ARGS` inside `ns`, with `etc` as /etc.
fn ctl(ns: &Netns, etc: &Etc, args: &[&str]) -> Output {
    let script = "mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$1,workdir=$2\" /etc && shift 2 && exec ip netns exec \"$@\"";
    let mut argv: Vec<String> = [
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ]
    .map(str::to_owned)
    .to_vec();
    argv.push(etc.upper.display().to_string());
    argv.push(etc.work.display().to_string());
    argv.push(ns.name.clone());
    argv.push(env!("CARGO_BIN_EXE_iptables-ctl").to_owned());
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    std::process::Command::new("unshare")
        .args(&argv)
        .output()
        .expect("run iptables-ctl diff")
}

/// A namespace holding what `policy` renders, loaded as the units load it, and the
/// same files installed as the instance's in an /etc overlay.
fn loaded(dir: &Path, policy: &str) -> (Netns, Etc) {
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
    let etc = Etc {
        upper: dir.join("upper"),
        work: dir.join("work"),
    };
    fs::create_dir_all(&etc.upper).unwrap();
    fs::create_dir_all(&etc.work).unwrap();
    run_ok(
        "cp",
        &[
            "-a",
            &root.join("etc/iptables").display().to_string(),
            &etc.upper.display().to_string(),
        ],
        b"",
    );
    (ns, etc)
}

fn expect(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[test]
fn diff_shows_what_applying_would_change_and_changes_nothing() {
    if !kernel_tests_enabled("diff_shows_what_applying_would_change_and_changes_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ns, etc) = loaded(dir.path(), POLICY);
    let policy = etc.iptables().join("base.toml");
    let rendered = |etc: &Etc| -> Vec<(String, Vec<u8>)> {
        tree(&etc.iptables())
            .into_iter()
            .filter(|(name, _)| !name.ends_with(".toml"))
            .collect()
    };
    let before = (live(&ns), rendered(&etc));

    // The policy in force, as installed: nothing would change.
    let text = expect(&diff(&ns, &etc, &[]), 0);
    assert!(text.contains("applying it would change nothing"), "{text}");
    assert!(
        !text.contains("\n+") && !text.contains("would write"),
        "{text}"
    );

    // An edit: both families' owned chains, live (-) against rendered (+), and the
    // files it would write.
    fs::write(&policy, POLICY.replace("port = 22", "port = 2222")).unwrap();
    let text = expect(&diff(&ns, &etc, &[]), 1);
    for family in ["IPv4", "IPv6"] {
        assert!(
            text.contains(&format!("--- {family} live (INPUT, OUTPUT, DOCKER-USER)")),
            "{text}"
        );
    }
    let removed = text
        .lines()
        .filter(|l| l.starts_with('-') && l.contains("--dport 22 "))
        .count();
    let added = text
        .lines()
        .filter(|l| l.starts_with('+') && l.contains("--dport 2222 "))
        .count();
    assert_eq!(
        (removed, added),
        (2, 2),
        "one line each way per family:\n{text}"
    );
    for file in ["base.rules", "base.rules6"] {
        assert!(
            text.contains(&format!("would write /etc/iptables/{file}\n")),
            "{text}"
        );
    }
    assert!(
        text.ends_with(
            "would change the live rules (IPv4, IPv6): `iptables-ctl reload base` applies it\n"
        ),
        "{text}"
    );
    // `reload --dry-run` and `apply --dry-run` say the same and change nothing (exit 0).
    for dry_run in [
        &["reload", "--dry-run"][..],
        &["apply", "--confirm-within", "1m", "--dry-run"][..],
    ] {
        assert_eq!(expect(&ctl(&ns, &etc, dry_run), 0), text, "{dry_run:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&expect(&diff(&ns, &etc, &["--json"]), 1)).expect("one JSON document");
    assert_eq!(
        (&json["changed"], &json["schema"]),
        (&true.into(), &1.into()),
        "{json:#}"
    );
    assert_eq!(json["families"][1]["family"], "ipv6", "{json:#}");
    assert!(
        json["families"][1]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("--dport 2222 ")),
        "{json:#}"
    );
    fs::write(&policy, POLICY).unwrap();

    // The live rules are the policy's, but the files on disk are not (edited by hand):
    // the next boot would load other rules.
    let file = etc.iptables().join("base.rules");
    let original = fs::read_to_string(&file).unwrap();
    let store = fs::canonicalize(&file).unwrap();
    fs::write(&store, format!("{original}# edited\n")).unwrap();
    let text = expect(&diff(&ns, &etc, &[]), 1);
    assert!(
        text.contains("would write /etc/iptables/base.rules\n"),
        "{text}"
    );
    assert!(
        text.contains("the files on disk (what the next boot loads) are not"),
        "{text}"
    );
    fs::write(&store, original).unwrap();

    // FORWARD no longer meets the rules first (IPv6 only): a change, with the rules equal.
    ns.exec_ok(
        "ip6tables",
        &["-w", "-D", "FORWARD", "-j", "DOCKER-USER"],
        b"",
    );
    let text = expect(&diff(&ns, &etc, &[]), 1);
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
    // A second jump further down FORWARD (forward-jump would delete it) is a change too.
    ns.exec_ok(
        "iptables",
        &["-w", "-A", "FORWARD", "-j", "DOCKER-USER"],
        b"",
    );
    let text = expect(&diff(&ns, &etc, &[]), 1);
    assert!(
        text.contains("IPv4: forwarded traffic does not meet these rules first and once"),
        "{text}"
    );
    ns.exec_ok(
        "iptables",
        &["-w", "-D", "FORWARD", "-j", "DOCKER-USER"],
        b"",
    );

    // Trouble is 2, never 1, and names the file and field.
    fs::write(&policy, POLICY.replace("port = 22", "port = 70000")).unwrap();
    let out = diff(&ns, &etc, &["--json"]);
    expect(&out, 2);
    assert!(
        stderr(&out).contains("/etc/iptables/base.toml:"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("host.services[0].port"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    fs::write(&policy, POLICY).unwrap();

    assert_eq!(
        (live(&ns), rendered(&etc)),
        before,
        "diff changed something"
    );
}
