//! Published ports on a real dockerd, every path a client can take to them:
//! {IPv4 DNAT, IPv6 DNAT (Docker with IPv6), IPv6 through docker-proxy (Docker's
//! default)} x {the source the policy allows, another source} x {after install, after
//! `systemctl restart docker`, after a reboot}. Every verdict must match the policy, and
//! `status` must say "in force" (exit 0) exactly then.
//!
//! Then the mutations an admin or another tool makes by hand, each of which opens a
//! published port or changes what the policy means: `status` must exit non-zero and
//! `audit` must flag the port.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::time::Duration;

use common::docker::{
    IPV6_DAEMON_JSON, POLICY, PUBLISHED, assert_containers_reach_each_other, diagnostics,
    mismatches, restart_docker, run_httpd, start_docker_with_busybox, start_httpd,
};
use common::nspawn::{MACHINE_V4, Machine, MachineState, image, systemd_tests_enabled};
use common::wait_until;
use iptables_ctl::systemd::ServiceManager;

const DOCKER_UNIT: &str = "iptables-docker@base.service";

fn status_code(machine: &Machine<'_>) -> Option<i32> {
    machine.exec(&["iptables-ctl", "status"]).status.code()
}

/// Probes the matrix and checks `status` agrees: exit 0 only when every probe matches.
fn check_phase(machine: &Machine<'_>, what: &str) {
    let wrong = mismatches(machine, &PUBLISHED);
    let status = machine.exec(&["iptables-ctl", "status"]);
    eprintln!(
        "{what}: {} probes, {} wrong, status exit {:?}",
        PUBLISHED.len(),
        wrong.len(),
        status.status.code()
    );
    assert!(
        wrong.is_empty() && status.status.code() == Some(0),
        "{what}: wrong probes (client, port, expected, seen) {wrong:?}; status {:?}:\n{}{}\n{}",
        status.status.code(),
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr),
        diagnostics(machine)
    );
}

fn activated_at(machine: &Machine<'_>, unit: &str) -> u64 {
    machine
        .bus()
        .unit_status(unit)
        .unwrap()
        .active_enter_monotonic_us
}

/// install, restart Docker, reboot, with Docker's IPv6 set up by `daemon_json`.
fn run_matrix(what: &str, daemon_json: Option<&str>) {
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    let machine = Machine::boot(&state);
    let out = machine.exec(&["iptables-ctl", "install"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start_docker_with_busybox(&machine, daemon_json);
    run_httpd(
        &machine,
        "web",
        &["--restart", "always", "-p", "8080:80", "-p", "9090:80"],
    );
    check_phase(&machine, &format!("{what}, after install"));
    assert_containers_reach_each_other(&machine, "web");

    let before = activated_at(&machine, DOCKER_UNIT);
    restart_docker(&machine);
    wait_until(Duration::from_secs(30), "the re-assertion ran", || {
        activated_at(&machine, DOCKER_UNIT) > before
    });
    start_httpd(&machine, "web");
    check_phase(&machine, &format!("{what}, after systemctl restart docker"));

    machine.poweroff();
    let machine = Machine::boot(&state);
    wait_until(
        Duration::from_secs(30),
        "docker re-asserted after boot",
        || activated_at(&machine, DOCKER_UNIT) > 0,
    );
    start_httpd(&machine, "web");
    check_phase(&machine, &format!("{what}, after reboot"));
    assert_containers_reach_each_other(&machine, "web");
    machine.poweroff();
}

#[test]
fn published_ports_follow_the_policy_with_ipv6_through_docker_proxy() {
    if !systemd_tests_enabled("published_ports_follow_the_policy_with_ipv6_through_docker_proxy") {
        return;
    }
    run_matrix("IPv4 DNAT + IPv6 docker-proxy", None);
}

#[test]
fn published_ports_follow_the_policy_with_ipv6_dnat() {
    if !systemd_tests_enabled("published_ports_follow_the_policy_with_ipv6_dnat") {
        return;
    }
    run_matrix("IPv4 DNAT + IPv6 DNAT", Some(IPV6_DAEMON_JSON));
}

/// Asserts that `status` is not in force and that `audit` flags port 9090 or names why
/// it cannot decide.
fn assert_detected(machine: &Machine<'_>, what: &str, audit_says: &str) {
    let code = status_code(machine);
    let audit = machine.exec(&["iptables-ctl", "audit"]);
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    eprintln!(
        "mutation {what}: status exit {code:?}, audit exit {:?}",
        audit.status.code()
    );
    assert_ne!(code, Some(0), "{what}: status still says in force");
    assert_eq!(
        audit.status.code(),
        Some(6),
        "{what}: audit did not flag:\n{text}"
    );
    assert!(text.contains(audit_says), "{what}: {text}");
}

#[test]
fn hand_made_holes_are_seen_by_status_and_audit() {
    if !systemd_tests_enabled("hand_made_holes_are_seen_by_status_and_audit") {
        return;
    }
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    let machine = Machine::boot(&state);
    machine.exec_ok(&["iptables-ctl", "install"]);
    start_docker_with_busybox(&machine, None);
    run_httpd(&machine, "web", &["-p", "8080:80", "-p", "9090:80"]);
    check_phase(&machine, "before the mutations");
    let flagged = format!("{MACHINE_V4}:9090 ->");

    // 1. The jump to DOCKER-USER removed by hand.
    machine.exec_ok(&["iptables", "-D", "FORWARD", "-j", "DOCKER-USER"]);
    assert_detected(&machine, "jump removed", &flagged);
    machine.exec_ok(&["iptables-ctl", "reload"]);
    check_phase(&machine, "after reload");

    // 2. The external interface misspelt in the policy, and reloaded.
    fs::write(
        state.etc_iptables().join("base.toml"),
        POLICY.replace("external = \"eth0\"", "external = \"eht0\""),
    )
    .unwrap();
    // The rules do not change (no deny depends on the name), but the policy no longer
    // means what it says: reload ends "not in force" (5), as status does.
    let out = machine.exec(&["iptables-ctl", "reload"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("the files were unchanged"));
    assert_detected(&machine, "interface misspelt", "eht0 does not exist");
    assert!(
        mismatches(&machine, &PUBLISHED).is_empty(),
        "the rules still protect"
    );
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    machine.exec_ok(&["iptables-ctl", "reload"]);
    check_phase(&machine, "after reload");

    // 3. A FORWARD ACCEPT inserted by hand before the jump.
    machine.exec_ok(&[
        "iptables", "-I", "FORWARD", "-i", "eth0", "-o", "docker0", "-j", "ACCEPT",
    ]);
    assert_detected(&machine, "FORWARD ACCEPT", &flagged);
    machine.poweroff();
}
