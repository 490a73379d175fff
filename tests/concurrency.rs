//! Runs that change the rules at the same moment, on a real systemd booted in
//! systemd-nspawn: 20 `reload`s of 20 different policies started together, then 20
//! `apply`s. They serialize on the lock of /etc/iptables: each ends well or waits
//! first (saying so), none fails, the live rules at the end are those of the run that
//! held the lock last (the newest generation for reloads, the pending apply for
//! applies, both written under the lock), and no temporary file is left behind.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::nspawn::{Machine, MachineState, image, systemd_tests_enabled};
use common::{stderr, stdout, wait_until};

const RUNS: u16 = 20;

/// The policy of run `n`: it opens port 3000 + n, and only that one.
fn policy(n: u16) -> String {
    format!(
        "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = {}\n",
        3000 + n
    )
}

/// Starts `iptables-ctl --config /etc/iptables/pN.toml ARGS` in the machine.
fn start(machine: &Machine<'_>, n: u16, args: &[&str]) -> Child {
    Command::new("nsenter")
        .args(["-t", &machine.leader().to_string(), "-a", "--"])
        .args([
            "iptables-ctl",
            "--config",
            &format!("/etc/iptables/p{n}.toml"),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iptables-ctl")
}

/// Starts all runs together and waits for each; returns each with its output.
fn race(machine: &Machine<'_>, args: &[&str]) -> Vec<(u16, std::process::Output)> {
    let mut running: Vec<(u16, Child)> = (0..RUNS).map(|n| (n, start(machine, n, args))).collect();
    let mut finished = Vec::new();
    wait_until(Duration::from_secs(300), "every run finished", || {
        let mut still = Vec::new();
        for (n, mut child) in running.drain(..) {
            if child.try_wait().expect("try_wait").is_some() {
                finished.push((n, child.wait_with_output().expect("output")));
            } else {
                still.push((n, child));
            }
        }
        running = still;
        running.is_empty()
    });
    finished
}

/// The ports 3000..3020 the live IPv4 INPUT chain opens.
fn open_ports(machine: &Machine<'_>) -> Vec<u16> {
    machine
        .save("iptables-save")
        .lines()
        .filter(|l| l.starts_with("-A INPUT") && l.contains("ACCEPT"))
        .filter_map(|l| {
            let at = l.find("--dport ")? + "--dport ".len();
            l[at..].split_whitespace().next()?.parse::<u16>().ok()
        })
        .filter(|port| (3000..3000 + RUNS).contains(port))
        .collect()
}

fn assert_each_ran_or_waited(what: &str, finished: &[(u16, std::process::Output)]) {
    for (n, out) in finished {
        let err = stderr(out);
        assert!(
            out.status.success(),
            "{what} {n} failed ({}):\n{}{err}",
            out.status,
            stdout(out)
        );
        for line in err.lines() {
            assert!(
                line.contains("waiting for the lock on /etc/iptables"),
                "{what} {n} said more than that it waited: {line}"
            );
        }
    }
}

fn temp_files(state: &MachineState) -> Vec<String> {
    fs::read_dir(state.etc_iptables())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".iptables-ctl-"))
        .collect()
}

#[test]
fn concurrent_reloads_and_applies_serialize_and_the_last_one_wins() {
    if !systemd_tests_enabled("concurrent_reloads_and_applies_serialize_and_the_last_one_wins") {
        return;
    }
    let state = MachineState::new(&image());
    for n in 0..RUNS {
        fs::write(state.etc_iptables().join(format!("p{n}.toml")), policy(n)).unwrap();
    }
    fs::write(state.etc_iptables().join("base.toml"), policy(0)).unwrap();
    let machine = Machine::boot(&state);
    let out = machine.exec(&["iptables-ctl", "install"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let finished = race(&machine, &["reload"]);
    assert_each_ran_or_waited("reload", &finished);
    let waited = finished
        .iter()
        .filter(|(_, out)| stderr(out).contains("waiting for the lock"))
        .count();
    eprintln!("{RUNS} concurrent reloads: {waited} waited for the lock");
    assert!(waited > 0, "the runs did meet at the lock");
    // The last to hold the lock kept the newest generation.
    let newest = fs::read_dir(state.dir().join("var-lib-iptables-ctl/generations/base"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let kept = fs::read_to_string(state.dir().join(format!(
        "var-lib-iptables-ctl/generations/base/{newest}/policy.toml"
    )))
    .unwrap();
    let last = (0..RUNS)
        .find(|n| policy(*n) == kept)
        .expect("a run's policy");
    assert_eq!(
        newest,
        1 + u64::from(RUNS),
        "install's generation, then one per reload"
    );
    assert_eq!(
        open_ports(&machine),
        [3000 + last],
        "the last reload's rules are live"
    );
    assert!(temp_files(&state).is_empty(), "{:?}", temp_files(&state));

    let finished = race(&machine, &["apply", "--confirm-within", "10m"]);
    assert_each_ran_or_waited("apply", &finished);
    // The last to hold the lock left the pending apply.
    let record = machine.exec_ok(&["cat", "/run/iptables-ctl/apply/base/pending.json"]);
    let last = (0..RUNS)
        .find(|n| record.contains(&format!("\"/etc/iptables/p{n}.toml\"")))
        .expect("a run's policy");
    assert_eq!(
        open_ports(&machine),
        [3000 + last],
        "the last apply's rules are live"
    );
    let out = machine.exec(&[
        "iptables-ctl",
        "--config",
        &format!("/etc/iptables/p{last}.toml"),
        "confirm",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(open_ports(&machine), [3000 + last]);
    assert!(temp_files(&state).is_empty(), "{:?}", temp_files(&state));
    machine.poweroff();
}
