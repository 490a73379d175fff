//! Long lists as ipsets on a real systemd (252, Debian 12) booted in systemd-nspawn,
//! with real connects from a client namespace: the units load the sets before the rules
//! that match them, at `install`, on `systemctl reload` after a list edit and at boot
//! (the rules would not load without their sets); `status` shows the sets and calls a
//! member added by hand drift; stopped, no rule refers to a set; a list made short
//! loses its set at the next reload; uninstall destroys it.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;

use common::nspawn::{CLIENT_V4, MACHINE_V4, Machine, MachineState, image, systemd_tests_enabled};
use common::{Outcome, listen, probe, stderr, stdout};

const POLICY: &str = r#"
[interfaces]
external = "eth0"

[lists]
customers = { file = "lists/customers.txt" }

[[host.services]]
port = 22
comment = "ssh"

[[host.services]]
port = 2222
from = ["customers"]
comment = "customers only"
"#;

/// 500 networks of customers (a set), with the test's client or without it.
fn customers(with_client: bool) -> String {
    let mut lines: Vec<String> = (0..500)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250))
        .collect();
    if with_client {
        lines.push(format!("{CLIENT_V4}  # the test's client"));
    }
    lines.join("\n") + "\n"
}

fn write_list(state: &MachineState, with_client: bool) {
    let dir = state.etc_iptables().join("lists");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("customers.txt"), customers(with_client)).unwrap();
}

fn ok(machine: &Machine<'_>, argv: &[&str]) -> String {
    let out = machine.exec(argv);
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The admin's path after an edit: render, then `systemctl reload` (the unit loads
/// the files).
fn render_and_reload(machine: &Machine<'_>) {
    ok(machine, &["iptables-ctl", "render"]);
    ok(machine, &["systemctl", "reload", "iptables@base.service"]);
}

/// What iptables@base.service said since boot.
fn unit_journal(machine: &Machine<'_>) -> String {
    ok(
        machine,
        &[
            "journalctl",
            "-b",
            "-u",
            "iptables@base.service",
            "-o",
            "cat",
        ],
    )
}

#[test]
fn units_load_the_sets_before_the_rules_on_install_reload_and_boot() {
    if !systemd_tests_enabled("units_load_the_sets_before_the_rules_on_install_reload_and_boot") {
        return;
    }
    let image = image();
    let state = MachineState::new(&image);
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    write_list(&state, true);
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[2222]);

    ok(&machine, &["iptables-ctl", "install"]);
    assert_eq!(
        ok(&machine, &["ipset", "list", "-n"]).trim(),
        "ictl.base.customers.v4"
    );
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2222),
        Outcome::Open
    );
    let status = ok(&machine, &["iptables-ctl", "status"]);
    assert!(
        status.contains("set: the set ictl.base.customers.v4 holds its 501 rendered members"),
        "{status}"
    );

    // The admin's path: edit the list, render, `systemctl reload`: the unit loads the
    // new set before the rules.
    write_list(&state, false);
    render_and_reload(&machine);
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2222),
        Outcome::Refused,
        "the client left the list"
    );
    let status = ok(&machine, &["iptables-ctl", "status"]);
    assert!(
        status.contains("holds its 500 rendered members"),
        "{status}"
    );

    // A member added by hand is drift: status says which set and exits 5.
    ok(
        &machine,
        &["ipset", "add", "ictl.base.customers.v4", CLIENT_V4],
    );
    let out = machine.exec(&["iptables-ctl", "status"]);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "{said}");
    assert!(
        said.contains("the set ictl.base.customers.v4 holds 501 members, 0 of the 500 rendered missing and 1 unexpected"),
        "{said}"
    );

    // Stopped, the pass-through rules match no set: nothing refers to it any more, so
    // it can be destroyed.
    ok(&machine, &["systemctl", "stop", "iptables@base.service"]);
    let save = ok(&machine, &["iptables-save"]);
    assert!(!save.contains("--match-set"), "{save}");
    ok(&machine, &["ipset", "destroy", "ictl.base.customers.v4"]);

    // Boot: the set is made and filled before the rules load (they match it), so the
    // unit starts and the rules are in force as rendered.
    machine.poweroff();
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[2222]);
    let out = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let journal = unit_journal(&machine);
    assert!(
        journal.contains("IPv4: 1 set(s) loaded (500 members)"),
        "{journal}"
    );
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2222),
        Outcome::Refused
    );

    // The list made short is plain rules again: the reload's last step destroys the set
    // the files no longer define, which the rules just loaded no longer match.
    fs::write(
        state.etc_iptables().join("lists/customers.txt"),
        format!("{CLIENT_V4}\n"),
    )
    .unwrap();
    render_and_reload(&machine);
    assert_eq!(ok(&machine, &["ipset", "list", "-n"]).trim(), "");
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2222),
        Outcome::Open
    );
    let journal = unit_journal(&machine);
    assert!(
        journal.contains("destroyed the ipset ictl.base.customers.v4: no rule matches it any more"),
        "{journal}"
    );

    // Uninstall takes the set with the rules: once the pass-through rules are loaded,
    // nothing matches it.
    write_list(&state, false);
    render_and_reload(&machine);
    assert_eq!(
        ok(&machine, &["ipset", "list", "-n"]).trim(),
        "ictl.base.customers.v4"
    );
    let said = ok(&machine, &["iptables-ctl", "uninstall"]);
    assert!(
        said.contains("destroyed the ipset ictl.base.customers.v4: no rule matches it any more"),
        "{said}"
    );
    assert_eq!(ok(&machine, &["ipset", "list", "-n"]).trim(), "");
}
