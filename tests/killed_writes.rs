//! A run killed at any moment never leaves a mixed set of rules files. After every
//! kill, the four files a reader (boot, `systemctl reload`) opens show the complete set
//! of the policy before the run or the complete set of the policy it was writing, never
//! IPv4 rules of one beside IPv6 rules of the other; and what a killed run left
//! (temporary files and links, unused versions) does not survive the next run that
//! completes. Two policies alternate, read from two paths (`--config`), so that all
//! four files differ between them.
//!
//! Two ways of killing:
//! - at every step: `render` run under strace, SIGKILLed on entering its Nth rename,
//!   link, mkdir, fsync or unlink, for every N until the run completes, starting from a
//!   set this tool wrote and from plain files of an older version (the migration);
//! - at random times: `render` (with the kernel check) and staged `install`, SIGKILLed
//!   after a delay drawn from a seeded generator (the seed is printed; `KILL_SEED`
//!   replays it) over the time a complete run takes, until at least 200 runs died part
//!   way.
//!
//! The kernel check uses throwaway network namespaces, so this test needs root; the
//! host's own firewall is never touched.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Dice, tools_available};

/// The four files of instance `base`, as the units open them.
const NAMES: [&str; 4] = [
    "base.rules",
    "base.rules.empty",
    "base.rules6",
    "base.rules6.empty",
];

/// The system calls that change the tree, by kind: every point at which a writer can
/// die between two changes is the entry of one of these.
const STEPS: [&str; 5] = [
    "rename,renameat,renameat2",
    "symlink,symlinkat",
    "mkdir,mkdirat",
    "fsync,fdatasync",
    "unlink,unlinkat,rmdir",
];

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

/// A staged root with the two policies, and the complete set of each.
struct Tree {
    root: tempfile::TempDir,
    versions: [PathBuf; 2],
    sets: Vec<Shown>,
}

impl Tree {
    fn new() -> Tree {
        let root = tempfile::tempdir().expect("tempdir");
        let config = root.path().join("etc/iptables");
        fs::create_dir_all(&config).expect("mkdir");
        let versions = [config.join("a.toml"), config.join("b.toml")];
        fs::write(&versions[0], policy("a", 8080)).expect("policy a");
        fs::write(&versions[1], policy("b", 9090)).expect("policy b");
        let mut tree = Tree {
            root,
            versions,
            sets: Vec::new(),
        };
        for version in 0..2 {
            tree.complete(version, &["render", "--no-kernel-check"]);
            tree.sets.push(tree.shown());
        }
        for (a, b) in tree.sets[0].iter().zip(&tree.sets[1]) {
            assert!(
                a.is_some() && a != b,
                "every file differs between the versions"
            );
        }
        tree
    }

    fn config(&self) -> PathBuf {
        self.root.path().join("etc/iptables")
    }

    fn shown(&self) -> Shown {
        NAMES
            .iter()
            .map(|name| fs::read(self.config().join(name)).ok())
            .collect()
    }

    /// `iptables-ctl --root ROOT --config VERSION ARGS`, optionally under `wrapper`.
    fn command(&self, wrapper: &[&str], version: usize, args: &[&str]) -> Command {
        let binary = assert_cmd::cargo::cargo_bin("iptables-ctl");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.arg("--root")
            .arg(self.root.path())
            .arg("--config")
            .arg(&self.versions[version])
            .args(args)
            .env_remove("SSH_CONNECTION")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs to the end; it must succeed. Returns how long it took.
    fn complete(&self, version: usize, args: &[&str]) -> Duration {
        let start = Instant::now();
        let output = self.command(&[], version, args).output().expect("run");
        assert!(
            output.status.success(),
            "iptables-ctl {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        start.elapsed()
    }

    /// Replaces the set by plain files showing `version`'s set, as an older version of
    /// the tool (or an admin) left them.
    fn plain_files(&self, version: usize) {
        let config = self.config();
        let _ = fs::remove_dir_all(config.join(".base.set"));
        for (name, content) in NAMES.iter().zip(&self.sets[version]) {
            let path = config.join(name);
            let _ = fs::remove_file(&path);
            fs::write(&path, content.as_ref().expect("a file")).expect("plain file");
        }
    }

    /// Waits until no process holds the directory lock: a process the killed run had
    /// just forked may hold it until it execs.
    fn wait_for_the_lock(&self) {
        let config = self.config();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let dir = fs::File::open(&config).expect("open the directory");
            let locked = dir.lock().is_ok();
            // Unlocked before the test goes on.
            drop(dir);
            let _ = sender.send(locked);
        });
        assert_eq!(
            receiver.recv_timeout(Duration::from_secs(60)),
            Ok(true),
            "the directory lock is free within a minute of the run's end"
        );
    }

    /// After a run that was meant to take the set from `before` to `wanted`: which it
    /// shows, or a panic naming each file's state.
    fn judge(&self, before: usize, wanted: usize, what: &str) -> Judged {
        let now = self.shown();
        if now == self.sets[wanted] {
            return Judged::New;
        }
        if now == self.sets[before] {
            return Judged::Old;
        }
        let described: Vec<String> = NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let which = match &now[i] {
                    None => "missing",
                    Some(c) if Some(c) == self.sets[before][i].as_ref() => "old",
                    Some(c) if Some(c) == self.sets[wanted][i].as_ref() => "new",
                    Some(_) => "other",
                };
                format!("{name}: {which}")
            })
            .collect();
        panic!("{what} left a mixed set: {}", described.join(", "));
    }

    /// What killed runs left and a complete one did not remove: temporary files and
    /// links anywhere, and versions other than `current`'s and the one before it.
    fn leftovers(&self) -> Vec<PathBuf> {
        let dir = self.root.path();
        let store = self.config().join(".base.set");
        let current: Option<u64> = fs::read_link(store.join("current"))
            .ok()
            .and_then(|t| t.to_str()?.strip_prefix('v')?.parse().ok());
        let mut found = Vec::new();
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Old,
    New,
}

/// The status of a run that was killed or not: killed (by SIGKILL), or completed. A
/// run that failed on its own is a test failure.
fn killed(output: &Output, what: &str) -> bool {
    let status = output.status;
    assert!(
        status.success() || status.signal() == Some(9),
        "{what} failed on its own: {status}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    !status.success()
}

#[derive(Default, Debug)]
struct Tally {
    old: usize,
    new: usize,
    completed: usize,
}

impl Tally {
    fn add(&mut self, killed: bool, judged: Judged) {
        match (killed, judged) {
            (false, _) => self.completed += 1,
            (true, Judged::Old) => self.old += 1,
            (true, Judged::New) => self.new += 1,
        }
    }
}

#[test]
fn a_render_killed_at_every_step_leaves_the_old_set_or_the_new_one() {
    if !tools_available(
        "a_render_killed_at_every_step_leaves_the_old_set_or_the_new_one",
        &["strace"],
        true,
    ) {
        return;
    }
    let tree = Tree::new();
    let mut tally = Tally::default();
    for plain in [false, true] {
        for step in STEPS {
            for n in 1.. {
                assert!(n <= 200, "a render takes fewer than 200 of `{step}`");
                // From version 0 (as this tool wrote it, or as plain files) to 1.
                tree.complete(0, &["render", "--no-kernel-check"]);
                if plain {
                    tree.plain_files(0);
                }
                let inject = format!("inject={step}:signal=KILL:when={n}");
                let wrapper = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", &inject];
                let output = tree
                    .command(&wrapper, 1, &["render", "--no-kernel-check"])
                    .output()
                    .expect("run under strace");
                let what = format!(
                    "render from {}, killed at `{step}` #{n}",
                    if plain { "plain files" } else { "a set" }
                );
                let was_killed = killed(&output, &what);
                tree.wait_for_the_lock();
                tally.add(was_killed, tree.judge(0, 1, &what));
                if !was_killed {
                    break;
                }
            }
            tree.complete(0, &["render", "--no-kernel-check"]);
            assert!(tree.leftovers().is_empty(), "{:?}", tree.leftovers());
        }
    }
    println!("killed at every step: {tally:?}");
    // Killed before `current` moved, and after it (the cleanup that follows).
    assert!(tally.old > 0 && tally.new > 0, "{tally:?}");
}

#[test]
fn a_render_or_install_killed_at_random_times_leaves_the_old_set_or_the_new_one() {
    if !tools_available(
        "a_render_or_install_killed_at_random_times_leaves_the_old_set_or_the_new_one",
        &[],
        true,
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
    let mut dice = Dice(seed);
    let tree = Tree::new();
    let mut state = 1; // the version the files show now
    // (command, how many runs to kill part way) for each kind of run.
    let runs: [(&[&str], usize); 3] = [
        (&["render", "--no-kernel-check"], 100),
        (&["render"], 50),
        (&["install"], 50),
    ];
    for (args, kills) in runs {
        // How long a complete run of this kind takes here, to spread the kills over.
        let mut shortest = Duration::MAX;
        for _ in 0..3 {
            state = 1 - state;
            shortest = shortest.min(tree.complete(state, args));
        }
        let mut tally = Tally::default();
        for run in 0.. {
            if tally.old + tally.new >= kills {
                break;
            }
            assert!(
                run < 10 * kills,
                "{kills} kills land in {} runs",
                10 * kills
            );
            let before = state;
            let wanted = 1 - state;
            let mut child = tree.command(&[], wanted, args).spawn().expect("spawn");
            std::thread::sleep(dice.up_to(shortest));
            // SIGKILL: only the process this test started, by its handle (a run that
            // has just ended is a zombie until waited for: the signal changes nothing).
            child.kill().expect("kill");
            let output = child.wait_with_output().expect("wait");
            let what = format!("`{}` run {run} (KILL_SEED={seed})", args.join(" "));
            let was_killed = killed(&output, &what);
            tree.wait_for_the_lock();
            let judged = tree.judge(before, wanted, &what);
            if judged == Judged::New {
                state = wanted;
            }
            tally.add(was_killed, judged);
        }
        // The next complete run cleans what the killed ones left.
        state = 1 - state;
        tree.complete(state, args);
        assert_eq!(tree.shown(), tree.sets[state]);
        let left = tree.leftovers();
        assert!(
            left.is_empty(),
            "after a complete `{}`, what killed runs left is still there: {left:?}",
            args.join(" ")
        );
        println!("{}: {tally:?}", args.join(" "));
    }
}
