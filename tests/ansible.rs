//! The Ansible role (`contrib/ansible`) run by ansible-core against a booted Debian 12
//! (systemd-nspawn), as a fleet runs it: `ansible-playbook` with the example playbook
//! on this host, inside the client network namespace of the test topology, reaching the
//! machine's sshd at MACHINE_V4:22 with a key made for the test, with Ansible's own
//! ControlPersist. One boot, in sequence:
//! 0. check mode on the fresh host (the .deb already there): the package would be
//!    installed, nothing changes;
//! 1. first run: the .deb copied from the controller and installed, the instance
//!    installed (starter policy), the policy written and applied on trial, the
//!    connection reset and `confirm` run over a new one (sshd logs a second login);
//!    the play reports the changes and the policy is in force;
//! 2. the same policy again: `changed=0`, and nothing on the machine changed (the
//!    files and their mtimes, the live rules, the generations);
//! 3. check mode with a new policy: the policy file task and the `diff` preview report
//!    the change (and the diff shows the new rule), and nothing on the machine changed;
//! 4. that policy for real: applied and confirmed, the new port open (this run and the
//!    ones after it leave the package variable out: the package is left as it is);
//! 5. a policy without SSH: `apply` refuses it (it sees the controller's session), the
//!    play fails, the rules never changed and the policy file is put back;
//! 6. the same with `iptables_ctl_force` (a lockout the check cannot see, as from a
//!    new address): the rules load, the new connection is refused, the play fails,
//!    and systemd's timer brings the previous rules back at the deadline: a prober
//!    outside sees the port cut and back within the deadline + 1 s, the controller
//!    connects again, the live rules and the policy file are the previous ones.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::docker::diagnostics;
use common::nspawn::{
    CLIENT_V4, MACHINE_V4, Machine, MachineState, Setup, image, systemd_tests_enabled,
};
use common::{
    Outcome, built_package, listen, probe, probe_within, stderr, stdout, tree, wait_until,
};

/// SSH, and 2222 for the prober (a listener of the test's, so probes never reach sshd).
const POLICY_A: &str = "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = [22, 2222]\ncomment = \"ssh and the probe\"\n";
/// A, and port 8080 opened: the change that check mode reports and the next run applies.
const POLICY_B: &str = "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = [22, 2222]\ncomment = \"ssh and the probe\"\n\n[[host.services]]\nport = 8080\ncomment = \"web\"\n";
/// No SSH: applying it locks the controller out.
const LOCKOUT: &str =
    "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = 8080\ncomment = \"web only\"\n";

/// The confirmation window of the runs that confirm (ample: they confirm at once).
const WITHIN: u64 = 30;
/// The confirmation window of the lockout: the play and the test wait that long.
const LOCKOUT_WITHIN: Duration = Duration::from_secs(3);
/// How late after its deadline the rollback may come.
const GRACE: Duration = Duration::from_secs(1);

/// The role's tasks as the play names them.
const DEB_COPY: &str = "Copy the package to the target";
const DEB_INSTALL: &str = "Install the package (installing it enables and starts nothing)";
const INSTALL: &str = "Install the instance (first run)";
const PREVIEW: &str = "Check the new policy and preview its rules (iptables-ctl --config diff)";
const WRITE: &str = "Write the policy";
const APPLY: &str = "Apply the policy (iptables-ctl apply --confirm-within)";
const CONFIRM: &str = "Confirm the policy over a new connection (iptables-ctl confirm)";
const RECONNECT: &str =
    "Wait until the controller gets in again (at the latest once systemd rolled back)";
const PUT_BACK: &str = "Put the previous policy file back";

/// The PLAY RECAP line of the one host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Recap {
    ok: u32,
    changed: u32,
    unreachable: u32,
    failed: u32,
    skipped: u32,
    rescued: u32,
    ignored: u32,
}

/// One `ansible-playbook` run.
struct Play {
    success: bool,
    output: String,
    recap: Recap,
    /// Each task that ran, with how it ended (`ok`, `changed`, `skipping`, `fatal`).
    tasks: Vec<(String, String)>,
    took: Duration,
}

impl Play {
    /// The tasks that reported a change, in order.
    fn changed(&self) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|(_, how)| how == "changed")
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// How the task `name` ended (the last time it ran).
    fn task(&self, name: &str) -> Option<&str> {
        self.tasks
            .iter()
            .rev()
            .find(|(task, _)| task == name)
            .map(|(_, how)| how.as_str())
    }
}

/// The controller: ansible-core on this host in the client namespace, its
/// configuration, key and temporary directories in a directory of the test's own.
struct Controller<'m> {
    dir: tempfile::TempDir,
    machine: &'m Machine<'m>,
    runs: usize,
}

impl<'m> Controller<'m> {
    /// A key for root on `machine`, sshd started there, and an ansible.cfg that keeps
    /// everything Ansible writes under the test's directory.
    fn new(machine: &'m Machine<'m>) -> Controller<'m> {
        let dir = tempfile::Builder::new()
            .prefix("ictl-ansible-")
            .tempdir()
            .expect("controller dir");
        let path = dir.path();
        for sub in ["home", "local", "cp"] {
            fs::create_dir(path.join(sub)).unwrap();
        }
        let key = path.join("key");
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "iptables-ctl-test",
                "-f",
            ])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "ssh-keygen: {}", stderr(&out));
        let public = fs::read_to_string(path.join("key.pub")).unwrap();
        machine.exec_ok(&[
            "sh",
            "-c",
            "install -d -m 0700 /root/.ssh && printf '%s\\n' \"$1\" > /root/.ssh/authorized_keys",
            "sh",
            public.trim(),
        ]);
        machine.exec_ok(&["systemctl", "start", "ssh.service"]);
        fs::write(
            path.join("inventory"),
            format!(
                "machine ansible_host={MACHINE_V4} ansible_user=root ansible_ssh_private_key_file={}\n",
                key.display()
            ),
        )
        .unwrap();
        // Ansible's own ControlPersist (as fleets run it), so that the reset matters;
        // no host keys kept, short timeouts (a refused connection fails at once anyway),
        // no retries, and nothing read from ~/.ssh or /etc/ssh.
        fs::write(
            path.join("ansible.cfg"),
            format!(
                "[defaults]\n\
                 home = {dir}/home\n\
                 local_tmp = {dir}/local\n\
                 inventory = {dir}/inventory\n\
                 interpreter_python = /usr/bin/python3\n\
                 host_key_checking = False\n\
                 retry_files_enabled = False\n\
                 nocolor = True\n\
                 timeout = 3\n\
                 [ssh_connection]\n\
                 pipelining = True\n\
                 retries = 0\n\
                 control_path_dir = {dir}/cp\n\
                 ssh_args = -F /dev/null -o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 -o LogLevel=ERROR\n",
                dir = path.display()
            ),
        )
        .unwrap();
        Controller {
            dir,
            machine,
            runs: 0,
        }
    }

    /// Runs the example playbook with `vars` (as extra vars), in check mode with
    /// `check`. The control masters it leaves are stopped before it returns.
    fn play(&mut self, vars: serde_json::Value, check: bool) -> Play {
        self.runs += 1;
        let vars_file = self.dir.path().join(format!("vars-{}.json", self.runs));
        fs::write(&vars_file, vars.to_string()).unwrap();
        let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ansible/playbook.yml");
        let mut args = vec![
            "netns".to_owned(),
            "exec".to_owned(),
            self.machine.client.name.clone(),
            "ansible-playbook".to_owned(),
            playbook.display().to_string(),
            "-e".to_owned(),
            format!("@{}", vars_file.display()),
        ];
        if check {
            args.extend(["--check".to_owned(), "--diff".to_owned()]);
        }
        let started = Instant::now();
        let out = Command::new("ip")
            .args(&args)
            .env("ANSIBLE_CONFIG", self.dir.path().join("ansible.cfg"))
            .env("HOME", self.dir.path().join("home"))
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .expect("ansible-playbook");
        let took = started.elapsed();
        self.stop_masters();
        let output = format!("{}{}", stdout(&out), stderr(&out));
        let play = Play {
            success: out.status.success(),
            recap: recap(&output),
            tasks: tasks(&output),
            output,
            took,
        };
        eprintln!(
            "play {} ({}): {:?} in {:.1} s, changed: {:?}",
            self.runs,
            if check { "check mode" } else { "normal" },
            play.recap,
            took.as_secs_f64(),
            play.changed()
        );
        if !play.success {
            // What the play said when it failed (its last failed task).
            if let Some(line) = play.output.lines().rev().find(|l| l.starts_with("fatal: ")) {
                eprintln!("    {line}");
            }
        }
        play
    }

    /// Ends the SSH control masters Ansible left behind (ControlPersist), each by its
    /// own control socket.
    fn stop_masters(&self) {
        let Ok(sockets) = fs::read_dir(self.dir.path().join("cp")) else {
            return;
        };
        for socket in sockets.flatten() {
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.machine.client.name,
                    "ssh",
                    "-F",
                    "/dev/null",
                ])
                .arg("-o")
                .arg(format!("ControlPath={}", socket.path().display()))
                .args(["-O", "exit", "machine"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Controller<'_> {
    fn drop(&mut self) {
        self.stop_masters();
    }
}

/// The numbers of the PLAY RECAP line.
fn recap(output: &str) -> Recap {
    let line = output
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.starts_with("machine "))
        .unwrap_or_else(|| panic!("no PLAY RECAP for the machine in:\n{output}"));
    let mut recap = Recap::default();
    for field in line.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let value: u32 = value.parse().unwrap();
        match key {
            "ok" => recap.ok = value,
            "changed" => recap.changed = value,
            "unreachable" => recap.unreachable = value,
            "failed" => recap.failed = value,
            "skipped" => recap.skipped = value,
            "rescued" => recap.rescued = value,
            "ignored" => recap.ignored = value,
            _ => {}
        }
    }
    recap
}

/// Each task of the default callback's output (`TASK [role : name] ***`) with the first
/// word of the line that says how it ended.
fn tasks(output: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            let name = rest.rsplit_once(']').map_or(rest, |(name, _)| name);
            let name = name.split_once(" : ").map_or(name, |(_, task)| task);
            current = Some(name.to_owned());
        } else if let Some(name) = &current {
            for how in ["ok", "changed", "skipping", "fatal", "failed"] {
                if line.starts_with(&format!("{how}: [machine]")) {
                    found.push((name.clone(), how.to_owned()));
                    current = None;
                    break;
                }
            }
        }
    }
    found
}

/// What a run must not change when it reports no change: every file under the
/// machine's /etc/iptables (bytes and mtimes), the generations, and the live rules.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    files: Vec<(String, Vec<u8>)>,
    mtimes: Vec<(PathBuf, i64, i64)>,
    generations: Vec<(String, Vec<u8>)>,
    live: (String, String),
}

fn snapshot(machine: &Machine<'_>, state: &MachineState) -> Snapshot {
    Snapshot {
        files: tree(&state.etc_iptables()),
        mtimes: mtimes(&state.etc_iptables()),
        generations: tree(&state.dir().join("var-lib-iptables-ctl")),
        live: live(machine),
    }
}

fn live(machine: &Machine<'_>) -> (String, String) {
    (
        machine.save("iptables-save"),
        machine.save("ip6tables-save"),
    )
}

fn mtimes(dir: &Path) -> Vec<(PathBuf, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut all = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        all.push((path.clone(), meta.mtime(), meta.mtime_nsec()));
        if meta.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    all.sort();
    all
}

/// `iptables-ctl status --json` in the machine.
fn status(machine: &Machine<'_>) -> serde_json::Value {
    let out = machine.exec(&["iptables-ctl", "status", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {}{}", stdout(&out), stderr(&out)))
}

/// How many logins sshd has accepted so far.
fn logins(machine: &Machine<'_>) -> usize {
    machine
        .exec_ok(&["journalctl", "-u", "ssh.service", "-o", "cat"])
        .matches("Accepted publickey for root")
        .count()
}

/// Waits until sshd has logged `count` logins in all (journald has them a moment after
/// sshd accepted them).
fn wait_for_logins(machine: &Machine<'_>, count: usize) {
    wait_until(
        Duration::from_secs(10),
        &format!("sshd has logged {count} logins"),
        || logins(machine) >= count,
    );
    assert_eq!(logins(machine), count, "logins");
}

fn policy(state: &MachineState) -> String {
    fs::read_to_string(state.etc_iptables().join("base.toml")).unwrap()
}

fn port(machine: &Machine<'_>, port: u16) -> Outcome {
    probe(&machine.client, Some(CLIENT_V4), MACHINE_V4, port)
}

#[track_caller]
fn assert_play(play: &Play, success: bool, changed: &[&str], machine: &Machine<'_>) {
    assert_eq!(
        play.success,
        success,
        "the play {} ({:?}):\n{}\n{}",
        if success { "failed" } else { "succeeded" },
        play.recap,
        play.output,
        diagnostics(machine)
    );
    assert_eq!(
        play.changed(),
        changed,
        "changed tasks ({:?}):\n{}",
        play.recap,
        play.output
    );
    assert_eq!(
        play.recap.changed as usize,
        changed.len(),
        "{:?}:\n{}",
        play.recap,
        play.output
    );
    assert_eq!(play.recap.unreachable, 0, "{}", play.output);
    assert_eq!(
        play.recap.failed,
        u32::from(!success),
        "{:?}:\n{}",
        play.recap,
        play.output
    );
}

#[test]
fn the_ansible_role_applies_confirms_over_a_new_connection_and_is_rolled_back_when_locked_out() {
    let test = "the_ansible_role_applies_confirms_over_a_new_connection_and_is_rolled_back_when_locked_out";
    if !systemd_tests_enabled(test)
        || !common::tools_available(test, &["ansible-playbook", "ssh", "ssh-keygen"], true)
    {
        return;
    }
    let Some(deb) = built_package(test, "target/packages", "deb") else {
        return;
    };
    let started = Instant::now();
    let state = MachineState::new(&image());
    // No iptables-ctl in the machine: the role installs the package (the first check
    // run names the package's path in the machine, the runs after it copy it over).
    let machine = Machine::boot_with(
        &state,
        &Setup::packages(&[(deb.parent().unwrap(), "/packages")]),
    );
    let listeners = listen(&machine.netns, &[2222, 8080]);
    // The prober connects hundreds of times: its listener is drained as it goes, or
    // its full backlog would drop the connections (a timeout, not an open port).
    listeners[0].set_nonblocking(true).unwrap();
    // The image has iptables-persistent, which the package conflicts with.
    machine.exec_ok(&[
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "remove",
        "-qq",
        "-y",
        "iptables-persistent",
        "netfilter-persistent",
    ]);
    let mut controller = Controller::new(&machine);
    // The runs after the second leave the package out (the role then leaves it as it
    // is), which keeps them shorter.
    let vars = |policy: &str| {
        serde_json::json!({
            "iptables_ctl_hosts": "machine",
            "iptables_ctl_policy": policy,
            "iptables_ctl_confirm_within": WITHIN,
        })
    };
    let with_deb = |policy: &str| {
        let mut vars = vars(policy);
        vars["iptables_ctl_deb"] = deb.display().to_string().into();
        vars
    };
    assert_eq!(port(&machine, 2222), Outcome::Open, "no firewall yet");

    // 0. Check mode on the fresh host, with the package already on it: it would be
    //    installed, and nothing more can be told without it; nothing changes.
    let rules_before = live(&machine);
    let mut on_target = vars(POLICY_A);
    on_target["iptables_ctl_deb"] =
        format!("/packages/{}", deb.file_name().unwrap().to_string_lossy()).into();
    on_target["iptables_ctl_deb_on_target"] = true.into();
    let play = controller.play(on_target, true);
    assert_play(&play, true, &[DEB_INSTALL], &machine);
    assert!(
        play.output.contains("is not installed yet"),
        "{}",
        play.output
    );
    for absent in ["/var/cache/iptables-ctl", "/usr/sbin/iptables-ctl"] {
        assert!(
            !machine.exec(&["test", "-e", absent]).status.success(),
            "check mode made {absent}"
        );
    }
    assert_eq!(
        tree(&state.etc_iptables()),
        Vec::new(),
        "check mode wrote no policy"
    );
    assert_eq!(live(&machine), rules_before);

    // 1. The first run: package, instance, policy on trial, confirmed over a new
    //    connection.
    let play = controller.play(with_deb(POLICY_A), false);
    assert_play(
        &play,
        true,
        &[DEB_COPY, DEB_INSTALL, INSTALL, WRITE, APPLY, CONFIRM],
        &machine,
    );
    // The check run logged in once; this run twice: the apply's connection, then the
    // new one `confirm` came through.
    wait_for_logins(&machine, 3);
    assert_eq!(policy(&state), POLICY_A);
    let report = status(&machine);
    assert_eq!(report["in_force"], true, "{report:#}");
    assert_eq!(report["pending"], serde_json::Value::Null, "{report:#}");
    assert_eq!(report["generation"]["command"], "confirm", "{report:#}");
    assert_eq!(port(&machine, 2222), Outcome::Open);
    assert_eq!(port(&machine, 8080), Outcome::Refused);

    // 2. The same again: no change reported, and none made.
    let before = snapshot(&machine, &state);
    let play = controller.play(with_deb(POLICY_A), false);
    assert_play(&play, true, &[], &machine);
    assert_eq!(play.task(APPLY), None, "nothing to apply:\n{}", play.output);
    assert_eq!(
        snapshot(&machine, &state),
        before,
        "the second run changed nothing"
    );
    wait_for_logins(&machine, 4);

    // 3. Check mode with another policy: the change reported, nothing changed.
    let play = controller.play(vars(POLICY_B), true);
    assert_play(&play, true, &[PREVIEW, WRITE], &machine);
    assert!(
        play.output.contains("--dport 8080"),
        "the diff shows the new rule:\n{}",
        play.output
    );
    assert_eq!(
        snapshot(&machine, &state),
        before,
        "check mode changed nothing"
    );
    assert_eq!(
        machine
            .exec_ok(&[
                "sh",
                "-c",
                "ls /tmp | grep -c '^iptables-ctl-policy' || true"
            ])
            .trim(),
        "0",
        "no temporary policy left"
    );
    assert_eq!(port(&machine, 8080), Outcome::Refused);

    // 4. That policy for real.
    let play = controller.play(vars(POLICY_B), false);
    assert_play(&play, true, &[WRITE, APPLY, CONFIRM], &machine);
    assert_eq!(policy(&state), POLICY_B);
    assert_eq!(port(&machine, 8080), Outcome::Open);
    assert_eq!(status(&machine)["in_force"], true);

    // 5. A policy without SSH: apply sees the controller's session and refuses it; the
    //    play fails, the rules never changed, the policy file is put back.
    let before = snapshot(&machine, &state);
    let play = controller.play(vars(LOCKOUT), false);
    assert_play(&play, false, &[WRITE, PUT_BACK], &machine);
    assert_eq!(play.task(APPLY), Some("fatal"), "{}", play.output);
    assert!(
        play.output.contains("would lock out SSH"),
        "{}",
        play.output
    );
    assert_eq!(policy(&state), POLICY_B, "the policy file is put back");
    assert_eq!(
        snapshot(&machine, &state).live,
        before.live,
        "the rules never changed"
    );
    assert_eq!(status(&machine)["in_force"], true);

    // 6. The same lockout, forced past the check (as a lockout the check cannot see,
    //    such as the controller's next connection coming from another address): the
    //    new connection is refused, the play fails, and systemd brings the previous
    //    rules back at the deadline. A prober outside watches the port of the test's
    //    listener (never sshd, so it cannot crowd sshd out).
    let mut forced = vars(LOCKOUT);
    forced["iptables_ctl_force"] = true.into();
    forced["iptables_ctl_confirm_within"] = LOCKOUT_WITHIN.as_secs().into();
    let stop = AtomicBool::new(false);
    // Probes made, when the port was first cut off, and when it was open again after.
    let seen: Mutex<(usize, Option<Instant>, Option<Instant>)> = Mutex::new((0, None, None));
    let play = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let outcome = probe_within(
                    &machine.client,
                    Some(CLIENT_V4),
                    MACHINE_V4,
                    2222,
                    Duration::from_secs(1),
                );
                let now = Instant::now();
                while listeners[0].accept().is_ok() {}
                let mut seen = seen.lock().unwrap();
                seen.0 += 1;
                match (outcome, seen.1, seen.2) {
                    (Outcome::Refused | Outcome::Timeout, None, _) => seen.1 = Some(now),
                    (Outcome::Open, Some(_), None) => seen.2 = Some(now),
                    _ => {}
                }
                drop(seen);
                // Pacing the prober (one connect every 10 ms), not waiting for a result.
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let play = controller.play(forced, false);
        stop.store(true, Ordering::Release);
        play
    });
    let (probes, cut, back) = *seen.lock().unwrap();
    // systemd's rollback wrote the previous policy back itself: the play had nothing
    // to put back.
    assert_play(&play, false, &[WRITE, APPLY], &machine);
    assert!(
        play.output.contains("UNREACHABLE") && play.task(CONFIRM) == Some("fatal"),
        "confirm could not get in:\n{}",
        play.output
    );
    assert_eq!(play.recap.ignored, 1, "{}", play.output);
    assert_eq!(play.task(RECONNECT), Some("ok"), "{}", play.output);
    assert!(
        play.output.contains(
            "The previous rules are in force again, and /etc/iptables/base.toml was put back"
        ),
        "{}",
        play.output
    );
    let cut = cut.unwrap_or_else(|| panic!("the prober never saw the port cut ({probes} probes)"));
    let back =
        back.unwrap_or_else(|| panic!("the prober never saw the port back ({probes} probes)"));
    let rollback = back - cut;
    eprintln!(
        "lockout: {probes} probes; the port was cut for {rollback:?} (deadline {LOCKOUT_WITHIN:?}); the play took {:?}",
        play.took
    );
    assert!(
        rollback <= LOCKOUT_WITHIN + GRACE,
        "rolled back after {rollback:?}, deadline {LOCKOUT_WITHIN:?} + {GRACE:?}"
    );
    // The controller gets in again: sshd answers, the rules and the policy file are
    // the previous ones, nothing is pending and the rules are in force.
    wait_until(
        LOCKOUT_WITHIN + GRACE,
        "sshd accepts connections again",
        || port(&machine, 22) == Outcome::Open,
    );
    assert_eq!(live(&machine), before.live, "the previous rules are live");
    assert_eq!(policy(&state), POLICY_B);
    let report = status(&machine);
    assert_eq!(report["in_force"], true, "{report:#}");
    assert_eq!(report["pending"], serde_json::Value::Null, "{report:#}");
    assert_eq!(port(&machine, 8080), Outcome::Open);
    drop(controller);
    machine.poweroff();
    eprintln!("the whole test took {:?}", started.elapsed());
}
