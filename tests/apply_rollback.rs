//! `apply --confirm-within` on a real systemd booted in systemd-nspawn, with an SSH-like
//! TCP service on the machine (port 2222) and a client outside it:
//! - an apply that cuts the client off and is never confirmed is rolled back by
//!   systemd's timer within the deadline + 1 s, and the client connects again; the
//!   rendered files in /etc/iptables never changed, and the policy file holds the
//!   previous policy again (the rolled-back one kept as base.toml.rejected);
//! - the rollback still happens when the process that ran `apply` is SIGKILLed after
//!   the rules loaded (it is stuck writing to a full pipe, so the kill lands there),
//!   and when its controlling terminal is hung up (as when an SSH session dies);
//! - a confirmed apply stays past its deadline (its timer is gone) and its files become
//!   the instance's own; a newer apply supersedes a pending one;
//! - a reboot before confirmation comes back with the previous rules;
//! - `install` run again reports `changed: false` and leaves every mtime as it was;
//! - `rollback` returns to the generation before the newest (install's, after the
//!   confirmed apply's), and status names the generations;
//! - `--dry-run` of install, start, restart, stop and uninstall says what each would do
//!   (files, units, the live diff) and changes nothing.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::diagnostics;
use common::nspawn::{CLIENT_V4, MACHINE_V4, Machine, MachineState, image, systemd_tests_enabled};
use common::{Outcome, listen, probe, stderr, stdout, tree, wait_until};
use iptables_ctl::systemd::ServiceManager;

/// SSH and the SSH-like service open.
const OPEN: &str = "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = [22, 2222]\n";
/// The SSH-like service closed: applying this cuts the client off it.
const CUT: &str = "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = 22\n";

/// The confirmation window the tests use.
const WITHIN: Duration = Duration::from_secs(3);
/// How late after its deadline a rollback may come (the acceptance's bound).
const GRACE: Duration = Duration::from_secs(1);

fn service(machine: &Machine<'_>) -> Outcome {
    probe(&machine.client, Some(CLIENT_V4), MACHINE_V4, 2222)
}

fn run(machine: &Machine<'_>, argv: &[&str]) -> String {
    let out = machine.exec(argv);
    assert!(
        out.status.success(),
        "{argv:?} ({}):\n{}{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out),
        diagnostics(machine)
    );
    stdout(&out)
}

/// The rendered files in the machine's /etc/iptables (the policies, and a rolled-back
/// one kept as base.toml.rejected, left out).
fn rendered_files(state: &MachineState) -> Vec<(String, Vec<u8>)> {
    tree(&state.etc_iptables())
        .into_iter()
        .filter(|(name, _)| !name.ends_with(".toml") && !name.ends_with(".toml.rejected"))
        .collect()
}

/// Waits until the client reaches the service again; returns when, after `since`.
fn reconnected_after(machine: &Machine<'_>, since: Instant) -> Duration {
    wait_until(
        WITHIN + GRACE + Duration::from_secs(10),
        "the client reaches the service again",
        || service(machine) == Outcome::Open,
    );
    since.elapsed()
}

fn apply(machine: &Machine<'_>) -> (String, Instant) {
    let said = run(
        machine,
        &[
            "iptables-ctl",
            "apply",
            "--confirm-within",
            &format!("{}s", WITHIN.as_secs()),
        ],
    );
    // The deadline counts from the arming, which comes before apply returns.
    (said, Instant::now())
}

#[test]
fn an_unconfirmed_apply_is_rolled_back_by_systemd_and_a_confirmed_one_stays() {
    let test = "an_unconfirmed_apply_is_rolled_back_by_systemd_and_a_confirmed_one_stays";
    if !systemd_tests_enabled(test) {
        return;
    }
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), OPEN).unwrap();
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[22, 2222]);
    run(&machine, &["iptables-ctl", "install"]);
    assert_eq!(service(&machine), Outcome::Open);
    let files_before = rendered_files(&state);

    // install again, as configuration management does: nothing changes, and it says so.
    let mtimes = || (mtimes(&state.etc_iptables()), mtimes(&state.etc_systemd()));
    let before = mtimes();
    let again: serde_json::Value =
        serde_json::from_str(&run(&machine, &["iptables-ctl", "install", "--json"])).unwrap();
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(mtimes(), before, "the second install touched nothing");

    // 1. Cut off and never confirmed: systemd brings the previous rules back.
    fs::write(state.etc_iptables().join("base.toml"), CUT).unwrap();
    let (said, applied) = apply(&machine);
    assert!(said.contains("From a NEW connection"), "{said}");
    assert_eq!(
        service(&machine),
        Outcome::Refused,
        "the new rules are live"
    );
    assert_eq!(
        rendered_files(&state),
        files_before,
        "/etc/iptables keeps the previous files"
    );
    let status = machine.exec(&["iptables-ctl", "status"]);
    assert!(
        stdout(&status).contains("pending apply of /etc/iptables/base.toml"),
        "{}",
        stdout(&status)
    );
    let back = reconnected_after(&machine, applied);
    eprintln!(
        "unconfirmed apply: the client reconnected {back:?} after apply returned (deadline {WITHIN:?})"
    );
    assert!(
        back <= WITHIN + GRACE,
        "rolled back after {back:?}, deadline {WITHIN:?} + {GRACE:?}"
    );
    assert!(
        back >= WITHIN - Duration::from_millis(500),
        "rolled back early, after {back:?}"
    );
    // The rules are back before the unit has finished and its words reached the journal.
    wait_until(
        Duration::from_secs(10),
        "the rollback unit said what it did",
        || {
            run(
                &machine,
                &[
                    "journalctl",
                    "-u",
                    "iptables-rollback@base.service",
                    "-o",
                    "cat",
                ],
            )
            .contains("the apply was not confirmed in time")
        },
    );
    assert!(!stdout(&machine.exec(&["iptables-ctl", "status"])).contains("pending apply"));
    assert_eq!(rendered_files(&state), files_before);
    // The policy file is the previous one again (a reload must not load the rolled-back
    // policy untried), the rolled-back one kept beside it; status says in force.
    let etc = state.etc_iptables();
    assert_eq!(fs::read_to_string(etc.join("base.toml")).unwrap(), OPEN);
    assert_eq!(
        fs::read_to_string(etc.join("base.toml.rejected")).unwrap(),
        CUT
    );
    let status = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    fs::write(etc.join("base.toml"), CUT).unwrap();

    // 2. SIGKILLed after the rules loaded: its stdout is a pipe that is already full, so
    //    its first line (said only once the rules are live) blocks it, and the kill
    //    lands on a process that has loaded the rules and not returned.
    let (read_end, write_end) = full_pipe();
    let mut child = Command::new("nsenter")
        .args(["-t", &machine.leader().to_string(), "-a", "--"])
        .args([
            "iptables-ctl",
            "apply",
            "--confirm-within",
            &format!("{}s", WITHIN.as_secs()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn apply");
    wait_until(
        Duration::from_secs(30),
        "the applied rules are live",
        || service(&machine) == Outcome::Refused,
    );
    let loaded = Instant::now();
    let apply_pid = descendant_named(child.id(), "iptables-ctl").expect("the apply process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(apply_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL apply");
    let status = child.wait().expect("nsenter");
    assert!(!status.success(), "apply died: {status}");
    drop(read_end);
    let back = reconnected_after(&machine, loaded);
    eprintln!("SIGKILLed apply: the client reconnected {back:?} after the rules loaded");
    assert!(back <= WITHIN + GRACE, "rolled back after {back:?}");
    assert_eq!(rendered_files(&state), files_before);

    // 2b. Its terminal hung up after the rules loaded, as when an SSH session dies: the
    //     pseudo-terminal's buffer is full, so the first line blocks the process, and
    //     closing the terminal's other end hangs it up (SIGHUP, as sshd's exit would).
    rollback_finished(&machine);
    fs::write(state.etc_iptables().join("base.toml"), CUT).unwrap();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // Only this test holds the terminal's other end: closing it must hang the terminal up.
    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .expect("close-on-exec");
    fill(&pty.slave);
    let mut child = Command::new("setsid")
        .args([
            "--ctty",
            "nsenter",
            "-t",
            &machine.leader().to_string(),
            "-a",
            "--",
        ])
        .args([
            "iptables-ctl",
            "apply",
            "--confirm-within",
            &format!("{}s", WITHIN.as_secs()),
        ])
        .stdin(Stdio::from(pty.slave.try_clone().expect("dup")))
        .stdout(Stdio::from(pty.slave.try_clone().expect("dup")))
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("spawn apply on a terminal");
    wait_until(
        Duration::from_secs(30),
        "the applied rules are live",
        || service(&machine) == Outcome::Refused,
    );
    let loaded = Instant::now();
    drop(pty.master);
    let status = child.wait().expect("setsid");
    assert!(!status.success(), "apply was hung up: {status}");
    let back = reconnected_after(&machine, loaded);
    eprintln!("hung-up apply: the client reconnected {back:?} after the rules loaded");
    assert!(back <= WITHIN + GRACE, "rolled back after {back:?}");
    assert_eq!(rendered_files(&state), files_before);
    rollback_finished(&machine);
    fs::write(state.etc_iptables().join("base.toml"), CUT).unwrap();

    // 2c. Rules loaded from /etc/iptables again during the window (a reload here; a
    //     Docker restart does the same): a new connection would prove those, so confirm
    //     refuses and the rollback stays armed.
    apply(&machine);
    let out = machine.exec(&["iptables-ctl", "reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("reload refused: an apply of base is pending"),
        "{}",
        stderr(&out)
    );
    run(&machine, &["systemctl", "reload", "iptables@base.service"]);
    let out = machine.exec(&["iptables-ctl", "confirm"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("are not the applied ones"),
        "{}",
        stderr(&out)
    );
    assert!(
        !machine
            .bus()
            .unit_status("iptables-rollback@base.timer")
            .unwrap()
            .is_not_found(),
        "the rollback stays armed"
    );
    assert_eq!(rendered_files(&state), files_before);

    // 3. Superseded, then confirmed from a new connection: the rules stay.
    apply(&machine);
    let (said, _) = apply(&machine);
    assert!(said.contains("is superseded"), "{said}");
    let said = run(&machine, &["iptables-ctl", "confirm"]);
    assert!(said.contains("confirmed"), "{said}");
    assert!(
        machine
            .bus()
            .unit_status("iptables-rollback@base.timer")
            .unwrap()
            .is_not_found(),
        "the rollback timer is gone"
    );
    // The deadline passes with nothing to fire: the rules stay (a wait for a deadline
    // that must come and go without effect; nothing else can show it).
    std::thread::sleep(WITHIN + GRACE);
    assert_eq!(
        service(&machine),
        Outcome::Refused,
        "the confirmed rules stay"
    );
    assert_ne!(
        rendered_files(&state),
        files_before,
        "the applied files are the instance's own"
    );
    let status = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));

    // 4. A reboot before confirmation comes back with the previous rules.
    fs::write(state.etc_iptables().join("base.toml"), OPEN).unwrap();
    apply(&machine);
    assert_eq!(
        service(&machine),
        Outcome::Open,
        "the applied rules are live"
    );
    let confirmed_files = rendered_files(&state);
    machine.poweroff();
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[22, 2222]);
    assert_eq!(
        service(&machine),
        Outcome::Refused,
        "the rules confirmed before are back"
    );
    assert_eq!(rendered_files(&state), confirmed_files);
    assert!(!stdout(&machine.exec(&["iptables-ctl", "status"])).contains("pending apply"));

    // 5. Generations: install kept 1 (OPEN), confirm kept 2 (CUT). The policy file
    //    still holds step 4's unconfirmed edit, which was never loaded: rollback will
    //    not overwrite it. With the file as generation 2 has it, rollback returns to 1
    //    and keeps it as 3, so status names 2 as the one rollback would return to.
    let out = machine.exec(&["iptables-ctl", "rollback"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("are not generation 2"),
        "{}",
        stderr(&out)
    );
    fs::write(state.etc_iptables().join("base.toml"), CUT).unwrap();
    let said = run(&machine, &["iptables-ctl", "rollback"]);
    assert!(
        said.contains("rolling back from generation 2 to 1"),
        "{said}"
    );
    assert_eq!(
        service(&machine),
        Outcome::Open,
        "generation 1's rules are live"
    );
    assert_eq!(
        fs::read_to_string(state.etc_iptables().join("base.toml")).unwrap(),
        OPEN
    );
    let status = run(&machine, &["iptables-ctl", "status"]);
    assert!(
        status.contains("generation 3 (rollback, by iptables-ctl")
            && status.contains("`iptables-ctl rollback base` returns to generation 2 (confirm)"),
        "{status}"
    );
    machine.poweroff();
}

/// Every path under `dir` with its inode and modification time.
/// Everything a command could change: the files of /etc/iptables and
/// /etc/systemd/system, both families' live rules, and the units' states.
type HostState = (
    Vec<(String, Vec<u8>)>,
    Vec<(String, Vec<u8>)>,
    String,
    String,
    [String; 3],
);

fn host_state(state: &MachineState, machine: &Machine<'_>) -> HostState {
    let units = [
        "iptables.service",
        "iptables@base.service",
        "iptables-docker@base.service",
    ]
    .map(|unit| {
        let status = machine.bus().unit_status(unit).unwrap();
        format!("{unit}: {} {}", status.active_state, status.unit_file_state)
    });
    (
        tree(&state.etc_iptables()),
        tree(&state.etc_systemd()),
        machine.save("iptables-save"),
        machine.save("ip6tables-save"),
        units,
    )
}

/// `argv` with `--dry-run --json`: its report. It must exit 0.
fn dry_run(machine: &Machine<'_>, argv: &[&str]) -> serde_json::Value {
    let argv = [argv, &["--dry-run", "--json"]].concat();
    serde_json::from_str(&run(machine, &argv)).unwrap()
}

fn steps(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn dry_runs_say_what_would_change_and_change_nothing() {
    if !systemd_tests_enabled("dry_runs_say_what_would_change_and_change_nothing") {
        return;
    }
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), OPEN).unwrap();
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[22, 2222]);

    // Not installed: start is refused as it would be; install would do everything.
    let out = machine.exec(&["iptables-ctl", "start", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not installed"),
        "{}",
        stderr(&out)
    );
    let before = host_state(&state, &machine);
    let plan = dry_run(&machine, &["iptables-ctl", "install"]);
    assert_eq!(plan["changed"], true, "{plan:#}");
    let said = steps(&plan);
    for step in [
        "write /etc/iptables/base.rules",
        "write /etc/systemd/system/iptables@.service",
        "enable iptables@base.service",
        "hook iptables-docker@base.service into docker.service",
        "start iptables@base.service",
    ] {
        assert!(
            said.iter().any(|s| s.starts_with(step)),
            "{step}: {said:#?}"
        );
    }
    assert!(
        plan["diff"]["families"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("\n+-A INPUT -p tcp -m tcp --dport 2222 "),
        "{plan:#}"
    );
    assert_eq!(
        host_state(&state, &machine),
        before,
        "install --dry-run changed nothing"
    );

    // Installed and in force: nothing would change, but a restart reloads, and stop and
    // uninstall would take the rules away.
    run(&machine, &["iptables-ctl", "install"]);
    let before = host_state(&state, &machine);
    for argv in [&["iptables-ctl", "install"][..], &["iptables-ctl", "start"]] {
        let plan = dry_run(&machine, argv);
        assert_eq!(
            (plan["changed"].as_bool(), steps(&plan).len()),
            (Some(false), 0),
            "{argv:?}: {plan:#}"
        );
    }
    let plan = dry_run(&machine, &["iptables-ctl", "restart"]);
    assert_eq!(plan["changed"], true, "{plan:#}");
    assert!(
        steps(&plan)[0].starts_with("reload iptables@base.service"),
        "{plan:#}"
    );
    let plan = dry_run(&machine, &["iptables-ctl", "stop"]);
    assert!(
        steps(&plan)[0].contains("the pass-through rules load"),
        "{plan:#}"
    );
    let plan = dry_run(&machine, &["iptables-ctl", "uninstall"]);
    let said = steps(&plan);
    assert!(said[0].contains("the pass-through rules load"), "{said:#?}");
    assert!(
        said.iter()
            .any(|s| s.starts_with("disable iptables@base.service")),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|s| s == "remove /etc/systemd/system/iptables@.service"),
        "{said:#?}"
    );
    assert_eq!(
        host_state(&state, &machine),
        before,
        "the dry runs changed nothing"
    );

    // Drift: install and reload load the same files again, which changes the live
    // rules back, and they say so (configuration management must see the repair).
    let by_hand = ["INPUT", "-p", "tcp", "--dport", "5555", "-j", "ACCEPT"];
    machine.exec_ok(&[&["iptables", "-I"][..], &by_hand].concat());
    let plan = dry_run(&machine, &["iptables-ctl", "install"]);
    assert_eq!(plan["changed"], true, "{plan:#}");
    assert!(
        steps(&plan)[0].starts_with("reload iptables@base.service"),
        "{plan:#}"
    );
    let repaired: serde_json::Value =
        serde_json::from_str(&run(&machine, &["iptables-ctl", "install", "--json"])).unwrap();
    assert_eq!(repaired["changed"], true, "{repaired:#}");
    assert!(!machine.save("iptables-save").contains("--dport 5555"));
    machine.exec_ok(&[&["iptables", "-I"][..], &by_hand].concat());
    let repaired: serde_json::Value =
        serde_json::from_str(&run(&machine, &["iptables-ctl", "reload", "--json"])).unwrap();
    assert_eq!(repaired["changed"], true, "{repaired:#}");
    let again: serde_json::Value =
        serde_json::from_str(&run(&machine, &["iptables-ctl", "reload", "--json"])).unwrap();
    assert_eq!(again["changed"], false, "{again:#}");

    // A changed policy: install would write and reload, and says the live change.
    fs::write(state.etc_iptables().join("base.toml"), CUT).unwrap();
    let before_cut = host_state(&state, &machine);
    let plan = dry_run(&machine, &["iptables-ctl", "install"]);
    let said = steps(&plan);
    assert!(
        said.contains(&"write /etc/iptables/base.rules".to_owned()),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|s| s.starts_with("reload iptables@base.service")),
        "{said:#?}"
    );
    assert!(
        plan["diff"]["families"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("\n--A INPUT -p tcp -m tcp --dport 2222 "),
        "{plan:#}"
    );
    // A policy that does not load is refused, as install refuses it.
    fs::write(state.etc_iptables().join("base.toml"), "[host\n").unwrap();
    let out = machine.exec(&["iptables-ctl", "install", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    fs::write(state.etc_iptables().join("base.toml"), CUT).unwrap();
    assert_eq!(
        host_state(&state, &machine),
        before_cut,
        "the dry runs changed nothing"
    );
    assert_eq!(
        service(&machine),
        Outcome::Open,
        "the rules in force are still OPEN's"
    );
    machine.poweroff();
}

fn mtimes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut all = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        all.push((path.clone(), meta.ino(), meta.mtime(), meta.mtime_nsec()));
        if meta.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    all.sort();
    all
}

/// A pipe whose buffer is already full: the first write to its write end blocks.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    fill(&write_end);
    (read_end, write_end)
}

/// Writes to `fd` until it would block (nobody reads the other end), so that the next
/// write blocks.
fn fill(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).expect("flags");
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .expect("nonblocking");
    let mut file = fs::File::from(fd.try_clone().expect("dup"));
    // Large writes first, then single bytes: a terminal takes a short write after
    // refusing a long one.
    for chunk in [&[b'x'; 512][..], b"x"] {
        while file.write(chunk).is_ok() {}
    }
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags))).expect("blocking again");
}

/// Waits until the rollback unit is not running (it holds /etc/iptables while it is).
fn rollback_finished(machine: &Machine<'_>) {
    wait_until(
        Duration::from_secs(30),
        "the rollback unit has finished",
        || {
            let state = run(
                machine,
                &[
                    "systemctl",
                    "show",
                    "-p",
                    "ActiveState",
                    "--value",
                    "iptables-rollback@base.service",
                ],
            );
            matches!(state.trim(), "inactive" | "failed")
        },
    );
}

/// The first process below `pid` (itself excluded) whose command is `name`.
fn descendant_named(pid: u32, name: &str) -> Option<i32> {
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == name {
                return i32::try_from(child).ok();
            }
            queue.push(child);
        }
    }
    None
}
