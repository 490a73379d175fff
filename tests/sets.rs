//! Long address lists as ipsets, with real packets: a list past the set threshold is
//! rendered as one `hash:net` set per family, loaded before the rules by the tool's own
//! loader (what `iptables-ctl load-sets` and apply run), and refreshed while a client
//! connects in a loop: no allowed connection fails and no other one gets in. `status`'s
//! comparison sees a member removed by hand; a bad list line is reported with its file
//! and line, and nothing is written or loaded.
//!
//! ```text
//!  client ns (192.0.2.10 allowed, 192.0.2.20 not; the same in IPv6) --veth--
//!  host ns: Docker-like DNAT 8080 -> container:80, the rendered rules and sets
//! ```
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::topology::{Topology, v4, v6};
use common::{
    Netns, Outcome, connect_once, kernel_tests_enabled, probe, staged_command, stderr, tree,
};
use iptables_ctl::backend::{Backend, SetRemoval};
use iptables_ctl::family::Family;
use iptables_ctl::files::layout::Layout;
use iptables_ctl::iptables::backend::SYSTEM;
use iptables_ctl::iptables::live::{self, SystemFirewall};
use iptables_ctl::iptables::trial::TrialError;
use iptables_ctl::policy::Policy;
use iptables_ctl::policy::types::InstanceName;

const POLICY: &str = "[interfaces]\nexternal = \"eth0\"\n\n[lists]\ncustomers = { file = \"lists/customers.txt\" }\n\n[[host.services]]\nport = 2222\n\n[[docker.published]]\nport = 8080\nfrom = [\"customers\"]\n";

/// The list of round `round`: 3,000 IPv4 and 100 IPv6 networks that change every round
/// (none of them a client's), and the allowed client of each family.
fn list(round: usize) -> String {
    let mut lines = vec!["# customers".to_owned()];
    for i in 0..3000 {
        let n = i + round * 1000;
        lines.push(format!("10.{}.{}.0/24", n >> 8 & 255, n & 255));
    }
    for i in 0..100 {
        lines.push(format!("2001:db8:{:x}::/48", 0x100 + i + round * 10));
    }
    lines.push(v4().clients[0].to_owned());
    lines.push(format!("{}  # the allowed client", v6().clients[0]));
    lines.join("\n") + "\n"
}

fn stage(root: &Path, list_text: &str) {
    let dir = root.join("etc/iptables");
    std::fs::create_dir_all(dir.join("lists")).expect("mkdir");
    std::fs::write(dir.join("base.toml"), POLICY).expect("policy");
    std::fs::write(dir.join("lists/customers.txt"), list_text).expect("list");
}

/// Adds (`-A`) or deletes (`-D`) a rule in the namespace's IPv6 FORWARD that matches
/// the instance's IPv6 set: a rule of someone else's.
fn hand_rule_matching_the_v6_set(ns: &Netns, op: &str) {
    ns.exec_ok(
        "ip6tables",
        &[
            op,
            "FORWARD",
            "-m",
            "set",
            "--match-set",
            "ictl.base.customers.v6",
            "src",
            "-j",
            "ACCEPT",
        ],
        b"",
    );
}

/// The round-0 list staged and rendered, its sets and rules loaded by the tool's own
/// loader into a namespace of their own.
fn loaded_in_a_fresh_namespace() -> (tempfile::TempDir, Layout, Netns) {
    let root = staged_and_rendered(&list(0));
    let layout = Layout::new(root.path());
    let ns = Netns::new();
    ns.enter(|| SYSTEM.load_rules(&layout, &InstanceName::default()))
        .expect("load the sets and rules");
    (root, layout, ns)
}

/// A tree staged with the policy and `list_text`, rendered by the tool.
fn staged_and_rendered(list_text: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("root");
    render_list(root.path(), list_text);
    root
}

/// Stages the policy with `list_text` under `root` and renders it with the tool.
fn render_list(root: &Path, list_text: &str) {
    stage(root, list_text);
    let out = staged_command(root, &["render"]).output().expect("render");
    assert!(out.status.success(), "render: {}", stderr(&out));
}

/// The list with only the allowed client of each family: short, so plain rules.
fn short_list() -> String {
    format!("{}\n{}\n", v4().clients[0], v6().clients[0])
}

/// The names of the sets in `ns`, sorted.
fn set_names(ns: &Netns) -> Vec<String> {
    let mut names: Vec<String> = ns
        .exec_ok("ipset", &["list", "-n"], b"")
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Renders the staged policy with the tool, then loads its sets and rules into the
/// host namespace with the tool's own loader.
fn render_and_load(t: &Topology, root: &Path) {
    let out = staged_command(root, &["render"]).output().expect("render");
    assert!(out.status.success(), "render: {}", stderr(&out));
    let layout = Layout::new(root);
    let instance = InstanceName::default();
    t.host
        .enter(|| SYSTEM.load_rules(&layout, &instance))
        .expect("load the sets and rules");
}

#[test]
fn a_set_refreshed_under_a_connecting_client_drops_no_allowed_connection_and_admits_no_other() {
    if !kernel_tests_enabled("a_set_refreshed_under_a_connecting_client") {
        return;
    }
    let t = Topology::build();
    for f in [v4(), v6()] {
        t.host.exec_ok(
            &format!("ip{}tables-restore", f.six),
            &["-w"],
            f.docker_rules.as_bytes(),
        );
    }
    let root = tempfile::tempdir().expect("root");
    stage(root.path(), &list(0));
    render_and_load(&t, root.path());
    let sets = t.host.exec_ok("ipset", &["list", "-n"], b"");
    assert_eq!(
        sets.lines().collect::<Vec<_>>(),
        ["ictl.base.customers.v4", "ictl.base.customers.v6"],
        "one set per family, no temporary set left"
    );
    let rules = t.host.exec_ok("iptables-save", &["-t", "filter"], b"");
    assert!(
        rules.contains("-m set --match-set ictl.base.customers.v4 src"),
        "{rules}"
    );
    assert!(
        !rules.contains("10.0.0.0/24"),
        "the list is one set, not a rule per network"
    );

    let listener = t
        .container
        .enter(|| TcpListener::bind(("::", 80)).expect("bind 80"));
    // Before any refresh, in both families: the listed client is let in and the other
    // refused. (These first connects also resolve the neighbours, which can take the
    // first SYN of a family longer than the loop's connects wait.)
    for f in [v4(), v6()] {
        assert_eq!(
            probe(&t.client, Some(f.clients[0]), f.host_ext, 8080),
            Outcome::Open
        );
        assert_eq!(
            probe(&t.client, Some(f.clients[1]), f.host_ext, 8080),
            Outcome::Refused
        );
    }
    let stop = AtomicBool::new(false);
    let allowed_failed = AtomicU64::new(0);
    let allowed_ok = AtomicU64::new(0);
    let others_in = AtomicU64::new(0);
    let others_refused = AtomicU64::new(0);
    let refreshes = 20;
    let during_refreshes = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                if let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.read(&mut [0; 1]);
                }
            }
        });
        let client = scope.spawn(|| {
            t.client.enter(|| {
                let mut round = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let f = if round.is_multiple_of(2) { v4() } else { v6() };
                    round += 1;
                    let target = SocketAddr::new(f.host_ext.parse().unwrap(), 8080);
                    for (source, allowed) in [(f.clients[0], true), (f.clients[1], false)] {
                        let open =
                            connect_once(source.parse().unwrap(), target, Duration::from_secs(2));
                        let counter = match (allowed, open) {
                            (true, true) => &allowed_ok,
                            (true, false) => &allowed_failed,
                            (false, true) => &others_in,
                            (false, false) => &others_refused,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        });
        // The client is under way before the first refresh, and still is after the
        // last: every refresh happens while it connects.
        common::wait_until(Duration::from_secs(10), "the client connects", || {
            allowed_ok.load(Ordering::Relaxed) > 0
        });
        let before = allowed_ok.load(Ordering::Relaxed);
        for round in 1..=refreshes {
            stage(root.path(), &list(round));
            render_and_load(&t, root.path());
        }
        let during = allowed_ok.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Release);
        client.join().expect("client");
        t.container.enter(|| {
            let _ = TcpStream::connect(("::1", 80));
        });
        during
    });
    let (ok, failed) = (
        allowed_ok.load(Ordering::Relaxed),
        allowed_failed.load(Ordering::Relaxed),
    );
    let (admitted, refused) = (
        others_in.load(Ordering::Relaxed),
        others_refused.load(Ordering::Relaxed),
    );
    println!(
        "{refreshes} refreshes of a 3,102-entry list: allowed client {ok} connected ({during_refreshes} during the refreshes), {failed} failed; other client {refused} refused, {admitted} admitted"
    );
    assert_eq!(failed, 0, "an allowed connection failed during a refresh");
    assert_eq!(admitted, 0, "a connection not on the list got in");
    assert!(
        during_refreshes > 0 && refused > 0,
        "the loop ran during the refreshes"
    );

    // The sets hold the last round's list; status's comparison says so, and sees a
    // member removed by hand.
    let layout = Layout::new(root.path());
    let instance = InstanceName::default();
    let state = t
        .host
        .enter(|| live::inspect(&layout, &instance, SYSTEM.trial, &SystemFirewall))
        .expect("inspect");
    for family in &state.families {
        assert_eq!(family.sets.len(), 1, "{family:?}");
        assert!(family.sets[0].matches(), "{}", family.sets[0]);
    }
    assert_eq!(state.families[0].sets[0].expected, 3001);

    // `diff` (and reload's `changed`) see a list edit that only changes the set: the
    // rules are the same lines, the set's lines differ.
    let owned_of = |list_text: &str| {
        stage(root.path(), list_text);
        let policy = Policy::load(&layout.policy_path(&instance)).expect("policy");
        let rendered = SYSTEM.render(&layout, &instance, &policy).expect("render");
        let proof = SYSTEM.prove(&instance, &policy, &rendered).expect("prove");
        t.host
            .enter(|| SYSTEM.owned_rules(&proof))
            .expect("owned rules")
    };
    for family in owned_of(&list(refreshes)) {
        assert_eq!(family.live, family.planned, "the loaded list: no change");
    }
    let edited = owned_of(&list(refreshes + 1));
    let rules = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !l.starts_with("ipset "))
            .cloned()
            .collect()
    };
    assert_eq!(rules(&edited[0].live), rules(&edited[0].planned));
    assert_ne!(
        edited[0].live, edited[0].planned,
        "the set's members changed"
    );
    // And which: the networks only the edited list holds on the planned side (a unified
    // diff shows them added), those only the loaded one holds on the live side. Round 20
    // holds the /24s 20,000 to 22,999 of 10.0.0.0/8, round 21 those from 21,000 to
    // 23,999.
    let members = |side: &[String]| -> Vec<String> {
        side.iter()
            .filter_map(|l| l.strip_prefix("ipset ictl.base.customers.v4 member "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        members(&edited[0].planned),
        [
            "10.89.216.0/21",
            "10.89.224.0/19",
            "10.90.0.0/15",
            "10.92.0.0/16",
            "10.93.0.0/17",
            "10.93.128.0/18"
        ]
    );
    assert_eq!(
        members(&edited[0].live),
        [
            "10.78.32.0/19",
            "10.78.64.0/18",
            "10.78.128.0/17",
            "10.79.0.0/16",
            "10.80.0.0/15",
            "10.82.0.0/21"
        ]
    );
    stage(root.path(), &list(refreshes));
    t.host.exec_ok(
        "ipset",
        &["del", "ictl.base.customers.v4", v4().clients[0]],
        b"",
    );
    let drifted = t
        .host
        .enter(|| live::inspect(&layout, &instance, SYSTEM.trial, &SystemFirewall))
        .expect("inspect");
    let set = &drifted.families[0].sets[0];
    assert!(
        !set.matches() && set.missing == 1 && !drifted.families[0].in_force,
        "{set}"
    );
    assert_eq!(
        probe(&t.client, Some(v4().clients[0]), v4().host_ext, 8080),
        Outcome::Refused,
        "the member removed by hand is refused: the rules read the live set"
    );
}

#[test]
fn a_bad_list_line_is_located_and_nothing_is_written_or_loaded() {
    if !kernel_tests_enabled("a_bad_list_line_is_located_and_nothing_is_written_or_loaded") {
        return;
    }
    let t = Topology::build();
    let root = tempfile::tempdir().expect("root");
    stage(root.path(), &list(0));
    render_and_load(&t, root.path());
    let files = tree(root.path());
    let live_sets = t.host.exec_ok("ipset", &["save"], b"");
    let bad = list(1).replacen("10.3.233.0/24", "10.3.233.0/33", 1);
    assert_ne!(bad, list(1));
    std::fs::write(root.path().join("etc/iptables/lists/customers.txt"), &bad).expect("list");
    for command in ["check", "render"] {
        let out = staged_command(root.path(), &[command])
            .output()
            .expect(command);
        let err = stderr(&out);
        assert!(!out.status.success(), "{command}: {err}");
        let line = bad
            .lines()
            .position(|l| l.starts_with("10.3.233.0/33"))
            .expect("the bad line")
            + 1;
        assert!(
            err.contains(&format!("lists/customers.txt:{line}:1"))
                && err.contains("lists.customers"),
            "{command}: {err}"
        );
    }
    // Nothing written but the list itself, nothing loaded.
    let after: Vec<_> = tree(root.path())
        .into_iter()
        .filter(|(name, _)| !name.ends_with("customers.txt"))
        .collect();
    let before: Vec<_> = files
        .into_iter()
        .filter(|(name, _)| !name.ends_with("customers.txt"))
        .collect();
    assert_eq!(after, before);
    assert_eq!(t.host.exec_ok("ipset", &["save"], b""), live_sets);
}

/// Rules that match a set named as iptables-ctl names an instance's sets, which the
/// sets file beside them lacks (lost or edited), are refused by the kernel check: never
/// proven against whatever the host holds under that name.
#[test]
fn rules_matching_an_own_set_the_sets_file_lacks_are_refused() {
    if !kernel_tests_enabled("rules_matching_an_own_set_the_sets_file_lacks_are_refused") {
        return;
    }
    let root = staged_and_rendered(&list(0));
    let dir = root.path().join("etc/iptables");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let (rules, empty) = (read("base.rules"), read("base.rules.empty"));
    assert!(rules.contains("--match-set ictl.base.customers.v4 src"));
    let error = SYSTEM
        .trial
        .trial(
            Family::Ipv4,
            ("base.sets", "# the sets were lost\n"),
            ("base.rules", &rules),
            ("base.rules.empty", &empty),
        )
        .expect_err("refused");
    assert!(
        matches!(error, TrialError::UndefinedOwnSet { ref set, .. } if set == "ictl.base.customers.v4"),
        "{error}"
    );
}

/// What uninstall does with an instance's sets, against a real kernel: once the
/// pass-through rules are loaded, the sets no rule matches are destroyed, with the
/// temporary set an interrupted load left behind; a set that a rule outside the
/// instance's chains still matches is kept and said; other sets are not touched.
#[test]
fn removing_the_sets_destroys_those_no_rule_matches_and_keeps_the_others() {
    if !kernel_tests_enabled(
        "removing_the_sets_destroys_those_no_rule_matches_and_keeps_the_others",
    ) {
        return;
    }
    let (_root, layout, ns) = loaded_in_a_fresh_namespace();
    let instance = InstanceName::default();
    ns.exec_ok(
        "ipset",
        &["create", "ictl.base.customers.v4~", "hash:net"],
        b"",
    );
    ns.exec_ok("ipset", &["create", "office", "hash:net"], b"");
    hand_rule_matching_the_v6_set(&ns, "-A");
    // While the rules are loaded, every set of the instance is in use.
    let removals = ns
        .enter(|| SYSTEM.remove_sets(&layout, &instance))
        .expect("remove");
    assert!(
        removals
            .iter()
            .all(|r| matches!(r, SetRemoval::InUse { .. })
                || matches!(r, SetRemoval::Destroyed { name } if name.ends_with('~'))),
        "{removals:?}"
    );

    ns.enter(|| SYSTEM.load_pass_through(&layout, &instance))
        .expect("the pass-through rules");
    let removals = ns
        .enter(|| SYSTEM.remove_sets(&layout, &instance))
        .expect("remove");
    assert_eq!(
        removals,
        [
            SetRemoval::Destroyed {
                name: "ictl.base.customers.v4".to_owned()
            },
            SetRemoval::InUse {
                name: "ictl.base.customers.v6".to_owned(),
                references: 1
            },
        ]
    );
    let left = set_names(&ns);
    assert_eq!(left, ["ictl.base.customers.v6", "office"]);
}

/// The units' last step after a load: the sets the instance loaded since boot that its
/// files no longer define (here the list made short: plain rules again) are destroyed
/// once no rule matches them. A set a hand rule still matches is kept until that rule
/// goes; a set the instance never loaded, or that a staged apply defines, is never
/// touched, and nothing is while another load of the sets holds their lock.
#[test]
fn sets_the_files_no_longer_define_are_pruned_once_nothing_matches_them() {
    if !kernel_tests_enabled("sets_the_files_no_longer_define_are_pruned_once_nothing_matches_them")
    {
        return;
    }
    let (root, layout, ns) = loaded_in_a_fresh_namespace();
    let instance = InstanceName::default();
    let prune = || {
        ns.enter(|| SYSTEM.prune_sets(&layout, &instance))
            .expect("prune")
            .expect("no other load of the sets runs")
    };
    assert_eq!(prune(), [], "the files define both sets");
    // Sets the instance never loaded: another instance's, and one named like its own.
    for name in ["ictl.other.customers.v4", "ictl.base.stale.v4"] {
        ns.exec_ok("ipset", &["create", name, "hash:net"], b"");
    }
    // An apply staged with the long list (its sets loaded, its rules not yet).
    let etc = layout.config_dir();
    let staged = layout.pending(&instance).config_dir();
    std::fs::create_dir_all(&staged).expect("staged tree");
    for file in ["base.sets", "base.sets6"] {
        std::fs::copy(etc.join(file), staged.join(file)).expect("stage");
    }

    // The list made short: the rules match no set any more.
    render_list(root.path(), &short_list());
    hand_rule_matching_the_v6_set(&ns, "-A");
    ns.enter(|| SYSTEM.load_rules(&layout, &instance))
        .expect("load the short list");
    assert_eq!(prune(), [], "the pending apply defines both sets");
    std::fs::remove_dir_all(layout.pending_dir(&instance)).expect("apply discarded");
    // While a load of the instance's sets runs (it holds their lock), a prune neither
    // waits nor destroys anything: the next one does.
    let lock = std::fs::File::options()
        .write(true)
        .open(layout.run_dir().join("base.sets.lock"))
        .expect("the sets lock");
    lock.lock().expect("lock");
    assert_eq!(
        ns.enter(|| SYSTEM.prune_sets(&layout, &instance))
            .expect("prune"),
        None
    );
    drop(lock);
    assert_eq!(
        prune(),
        [
            SetRemoval::Destroyed {
                name: "ictl.base.customers.v4".to_owned()
            },
            SetRemoval::InUse {
                name: "ictl.base.customers.v6".to_owned(),
                references: 1
            },
        ]
    );
    hand_rule_matching_the_v6_set(&ns, "-D");
    assert_eq!(
        prune(),
        [SetRemoval::Destroyed {
            name: "ictl.base.customers.v6".to_owned()
        }]
    );
    assert_eq!(prune(), []);
    let left = set_names(&ns);
    assert_eq!(left, ["ictl.base.stale.v4", "ictl.other.customers.v4"]);

    // Uninstall destroys what the instance loaded since boot, even when its files no
    // longer define it, and still nothing it never loaded.
    render_list(root.path(), &list(0));
    ns.enter(|| SYSTEM.load_rules(&layout, &instance))
        .expect("load the long list");
    render_list(root.path(), &short_list());
    ns.enter(|| SYSTEM.load_pass_through(&layout, &instance))
        .expect("the pass-through rules");
    assert_eq!(
        ns.enter(|| SYSTEM.remove_sets(&layout, &instance))
            .expect("remove"),
        [
            SetRemoval::Destroyed {
                name: "ictl.base.customers.v4".to_owned()
            },
            SetRemoval::Destroyed {
                name: "ictl.base.customers.v6".to_owned()
            },
        ]
    );
    let left = set_names(&ns);
    assert_eq!(left, ["ictl.base.stale.v4", "ictl.other.customers.v4"]);
}
