//! A run killed at any moment never leaves a mixed set of rules files: `render` and
//! `install` on a staged root are SIGKILLed at random points, hundreds of times, while the
//! policy alternates between two versions whose four files all differ. After every kill,
//! the four files a reader (boot, `systemctl reload`) opens show the complete set of the
//! policy before the run or the complete set of the policy it was writing, never IPv4
//! rules of one beside IPv6 rules of the other; and what a killed run left (temporary
//! files, unused versions) does not survive the next run that completes.
//!
//! The kill points are drawn from a seeded generator (the seed is printed, and
//! `KILL_SEED` replays a run) over the time a complete run takes, so kills land before,
//! during and after the writes. install runs the kernel check in a throwaway network
//! namespace, so this test needs root; the host's own firewall is never touched.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dice, kernel_tests_enabled};

/// The four files of instance `base`, as the units open them.
const NAMES: [&str; 4] = [
    "base.rules",
    "base.rules.empty",
    "base.rules6",
    "base.rules6.empty",
];

/// Two policies whose rules differ; read from two paths (`--config`), so that every
/// rendered file differs, the pass-through ones too (their header names the policy).
fn policy(version: &str, port: u16) -> String {
    format!(
        "# version {version}\n\
         [interfaces]\nexternal = [\"eth0\"]\n\n\
         [[host.services]]\nport = 22\ncomment = \"ssh\"\n\n\
         [[host.services]]\nport = {port}\nfrom = [\"192.0.2.0/24\", \"2001:db8::/32\"]\ncomment = \"{version}\"\n"
    )
}

/// What the four names show now (`None`: no file).
type Shown = Vec<Option<Vec<u8>>>;

fn shown(config: &Path) -> Shown {
    NAMES
        .iter()
        .map(|name| fs::read(config.join(name)).ok())
        .collect()
}

fn command(root: &Path, policy: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("iptables-ctl"));
    cmd.arg("--root")
        .arg(root)
        .arg("--config")
        .arg(policy)
        .args(args)
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `args` to the end; it must succeed. Returns how long it took.
fn complete(root: &Path, policy: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let output = command(root, policy, args).output().expect("run");
    assert!(
        output.status.success(),
        "iptables-ctl {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    start.elapsed()
}

/// Every path under `dir` named like a temporary file, or a version the set does not
/// keep (anything in a `.set` store but `current`, the version it names and the one
/// before).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let store = dir.join(".base.set");
    let current: Option<u64> = fs::read_link(store.join("current"))
        .ok()
        .and_then(|t| t.to_str()?.strip_prefix('v')?.parse().ok());
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).expect("list") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(".iptables-ctl-") {
                found.push(path.clone());
            }
            if at == store && name != "current" {
                let kept = name
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u64>().ok())
                    .zip(current)
                    .is_some_and(|(n, c)| n == c || n + 1 == c);
                if !kept {
                    found.push(path.clone());
                }
            }
            if fs::symlink_metadata(&path).expect("stat").is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[derive(Default, Debug)]
struct Tally {
    old: usize,
    new: usize,
    finished: usize,
}

#[test]
fn a_killed_render_or_install_leaves_the_old_set_or_the_new_one_never_a_mix() {
    if !kernel_tests_enabled(
        "a_killed_render_or_install_leaves_the_old_set_or_the_new_one_never_a_mix",
    ) {
        return;
    }
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("KILL_SEED={seed}");
    let mut points = Dice(seed);

    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let config = r.join("etc/iptables");
    fs::create_dir_all(&config).expect("mkdir");
    let versions = [config.join("a.toml"), config.join("b.toml")];
    fs::write(&versions[0], policy("a", 8080)).expect("policy a");
    fs::write(&versions[1], policy("b", 9090)).expect("policy b");

    // The complete set of each version, as a finished run writes it.
    let mut sets: Vec<Shown> = Vec::new();
    for version in &versions {
        complete(r, version, &["render", "--no-kernel-check"]);
        sets.push(shown(&config));
    }
    for (a, b) in sets[0].iter().zip(&sets[1]) {
        assert!(
            a.is_some() && a != b,
            "every file differs between the versions"
        );
    }

    // (command, how many kills) for each kind of run.
    let runs: [(&[&str], usize); 3] = [
        (&["render", "--no-kernel-check"], 160),
        (&["render"], 70),
        (&["install"], 70),
    ];
    let mut tallies = Vec::new();
    let mut state = 1; // the version the files show now
    for (args, kills) in runs {
        // How long a complete run of this kind takes here, to spread the kills over.
        let mut shortest = Duration::MAX;
        for _ in 0..3 {
            state = 1 - state;
            shortest = shortest.min(complete(r, &versions[state], args));
            assert_eq!(shown(&config), sets[state]);
        }
        let mut tally = Tally::default();
        for kill in 0..kills {
            let before = state;
            let wanted = 1 - state;
            let mut child = command(r, &versions[wanted], args).spawn().expect("spawn");
            // Half the kills anywhere in the run, half in its last quarter, where the
            // files are written.
            let delay = if kill % 2 == 0 {
                points.up_to(shortest)
            } else {
                shortest * 3 / 4 + points.up_to(shortest / 3)
            };
            std::thread::sleep(delay);
            // SIGKILL: only the process this test started, by its handle (a run that
            // has just ended is a zombie until waited for: the signal changes nothing).
            child.kill().expect("kill");
            let output = child.wait_with_output().expect("wait");
            // A process the killed run had just forked may hold its lock on the
            // directory for a moment longer (until it execs): the next run starts once
            // nobody does.
            fs::File::open(&config)
                .expect("open the directory")
                .lock()
                .expect("wait for the directory lock");
            let status = output.status;
            let finished = status.success();
            assert!(
                finished || status.signal() == Some(9),
                "`{}` failed on its own: {status}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
            let now = shown(&config);
            if now == sets[wanted] {
                state = wanted;
                if finished {
                    tally.finished += 1;
                } else {
                    tally.new += 1;
                }
            } else if now == sets[before] {
                tally.old += 1;
            } else {
                let described: Vec<String> = NAMES
                    .iter()
                    .zip(&now)
                    .map(|(name, content)| {
                        let which = match content {
                            None => "missing".to_owned(),
                            Some(c)
                                if Some(c)
                                    == sets[before]
                                        [NAMES.iter().position(|n| n == name).unwrap()]
                                    .as_ref() =>
                            {
                                "old".to_owned()
                            }
                            Some(c)
                                if Some(c)
                                    == sets[wanted]
                                        [NAMES.iter().position(|n| n == name).unwrap()]
                                    .as_ref() =>
                            {
                                "new".to_owned()
                            }
                            Some(_) => "other".to_owned(),
                        };
                        format!("{name}: {which}")
                    })
                    .collect();
                panic!(
                    "kill {kill} of `{}` ({status}) left a mixed set: {} (KILL_SEED={seed})",
                    args.join(" "),
                    described.join(", ")
                );
            }
        }
        // The next complete run cleans what the killed ones left.
        state = 1 - state;
        complete(r, &versions[state], args);
        assert_eq!(shown(&config), sets[state]);
        let left = leftovers(r);
        assert!(
            left.is_empty(),
            "after a complete `{}`, what killed runs left is still there: {left:?}",
            args.join(" ")
        );
        println!("{}: {kills} runs: {tally:?}", args.join(" "));
        tallies.push(tally);
    }
    let killed: usize = tallies.iter().map(|t| t.old + t.new).sum();
    assert!(
        killed >= 200,
        "at least 200 runs were killed part way: {killed}"
    );
    // The kills landed on both sides of the switch to the new set.
    assert!(tallies.iter().map(|t| t.old).sum::<usize>() > 0);
    assert!(tallies.iter().map(|t| t.new).sum::<usize>() > 0);
}
