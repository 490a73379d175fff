//! The newcomer demo (`bash packaging/demo` runs it with its narration shown): a
//! throwaway Debian 12 booted in systemd-nspawn with a real dockerd, the built .deb
//! installed there, a container publishing two ports, and what a client outside sees
//! of them before and after `iptables-ctl install`, beside what `iptables-ctl audit`
//! says. The host's own firewall is never touched: the machine and its client live in
//! network namespaces of their own.
//!
//! As a test it asserts what the narration claims: before install every published port
//! is open to every client, as Docker leaves it, and the audit lists them all; after
//! install each client gets what the policy says, the audit agrees (exit 0), and
//! `status` says in force.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;

use common::docker::{
    Expected, FIRST_V4, FIRST_V6, POLICY, PUBLISHED, SECOND_V4, SECOND_V6, diagnostics, mismatches,
    run_httpd, start_docker_with_busybox,
};
use common::nspawn::{Machine, MachineState, Setup, image, systemd_tests_enabled};
use common::{Outcome, built_package, probe, stderr, stdout};

/// Narration: shown by `cargo test -- --nocapture` (the demo script), kept with the
/// test's output otherwise.
macro_rules! say {
    ($($arg:tt)*) => { println!($($arg)*) };
}

/// Runs `argv` in the machine and shows it as an admin would see it; returns the exit
/// code and stdout.
fn show(machine: &Machine<'_>, argv: &[&str]) -> (Option<i32>, String) {
    say!("\n  machine# {}", argv.join(" "));
    let out = machine.exec(argv);
    for line in stdout(&out).lines().chain(stderr(&out).lines()) {
        say!("    {line}");
    }
    (out.status.code(), stdout(&out))
}

/// Connects from every client address to each published port and shows the outcome.
fn connect_from_outside(machine: &Machine<'_>, expected: &[Expected]) {
    say!("\n  real connects from the client namespace (outside the machine):");
    for (client, port, _) in expected {
        let seen = probe(&machine.client, Some(client.address), client.machine, *port);
        say!(
            "    {:>10} -> {}:{port}  {}",
            client.address,
            client.machine,
            match seen {
                Outcome::Open => "OPEN",
                Outcome::Refused => "refused",
                Outcome::Timeout => "no answer",
            }
        );
    }
}

#[test]
fn demo_published_ports_before_and_after_install() {
    let test = "demo_published_ports_before_and_after_install";
    if !systemd_tests_enabled(test) {
        return;
    }
    let Some(deb) = built_package(test, "target/packages", "deb") else {
        return;
    };
    let state = MachineState::new(&image());
    say!("== booting a throwaway Debian 12 (systemd-nspawn, its own network namespace)");
    let machine = Machine::boot_with(
        &state,
        &Setup::packages(&[(deb.parent().unwrap(), "/packages")]),
    );
    let deb_in = format!("/packages/{}", deb.file_name().unwrap().to_string_lossy());

    say!("\n== installing the package (it conflicts with iptables-persistent, which goes first)");
    machine.exec_ok(&[
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "remove",
        "-y",
        "-qq",
        "iptables-persistent",
        "netfilter-persistent",
    ]);
    let (code, _) = show(&machine, &["dpkg", "-i", &deb_in]);
    assert_eq!(code, Some(0));

    say!("\n== Docker with a container publishing ports 8080 and 9090 (-p 8080:80 -p 9090:80)");
    start_docker_with_busybox(&machine, None);
    run_httpd(&machine, "web", &["-p", "8080:80", "-p", "9090:80"]);
    let everyone_everywhere: Vec<Expected> = [FIRST_V4, SECOND_V4, FIRST_V6, SECOND_V6]
        .into_iter()
        .flat_map(|client| [(client, 8080, Outcome::Open), (client, 9090, Outcome::Open)])
        .collect();

    say!("\n== BEFORE: no firewall for Docker's ports; Docker publishes them to the world");
    let (_, audit) = show(&machine, &["iptables-ctl", "audit"]);
    for port in ["8080", "9090"] {
        assert!(audit.contains(port), "the audit lists {port}: {audit}");
    }
    connect_from_outside(&machine, &everyone_everywhere);
    let wrong = mismatches(&machine, &everyone_everywhere);
    assert!(
        wrong.is_empty(),
        "before install: {wrong:?}\n{}",
        diagnostics(&machine)
    );

    say!(
        "\n== the policy: 8080 only for the clients 10.99.0.3 and fd99::3, nothing else published"
    );
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    for line in POLICY.trim().lines() {
        say!("    {line}");
    }
    let (code, _) = show(&machine, &["iptables-ctl", "install"]);
    assert_eq!(code, Some(0), "install");

    say!("\n== AFTER: the rules in DOCKER-USER decide, by the port the client dialed");
    let (code, _) = show(&machine, &["iptables-ctl", "audit"]);
    assert_eq!(code, Some(0), "the audit finds nothing beyond the policy");
    connect_from_outside(&machine, &PUBLISHED);
    let wrong = mismatches(&machine, &PUBLISHED);
    assert!(
        wrong.is_empty(),
        "after install: {wrong:?}\n{}",
        diagnostics(&machine)
    );
    let (code, _) = show(&machine, &["iptables-ctl", "status"]);
    assert_eq!(code, Some(0), "status: in force");

    say!("\n== done: powering the machine off (nothing of it stays on this host)");
    machine.poweroff();
}
