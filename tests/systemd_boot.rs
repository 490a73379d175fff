//! iptables-ctl against a real systemd (252, Debian 12) booted in systemd-nspawn, driven
//! over that systemd's own D-Bus from the test, with real TCP connects from a client
//! namespace into the machine's network namespace:
//!
//! - `install` with no policy writes the starter policy, installs, enables and starts the
//!   units; the rules are live and SSH stays reachable;
//! - an edited policy + `reload` is live with no moment where the rules are absent
//!   (a prober hammers a closed port throughout); a broken policy is refused and the live
//!   rules and files stay byte-identical;
//! - `stop` loads the pass-through files, `start` brings the rules back; `restart` and
//!   `start` with bad files are refused before anything changes, and a unit that fails
//!   to start all the same is reported with its journal lines;
//! - a machine with netfilter-persistent enabled (and its `iptables.service` alias) and
//!   Docker's chains in the other backend is refused, nothing changes, and `--force`
//!   installs; `status` gives 4 before install, 0 in force, 5 on drift, and `--json`;
//! - with a real dockerd started by the machine's systemd and a real container: the
//!   published port filter works, `systemctl restart docker` re-asserts the rules after
//!   Docker (DOCKER-USER still first), stopping Docker keeps INPUT, and after a reboot
//!   the rules were active before network-pre.target and before dockerd started;
//! - the audit on a real dockerd lists every published port, agrees with real connects,
//!   and flags a port a hand-made rule opens.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::docker::{diagnostics, run_httpd, start_docker_with_busybox, start_httpd};
use common::nspawn::{MACHINE_V4, MACHINE_V6, Machine, MachineState, image, systemd_tests_enabled};
use common::{Outcome, listen, probe, wait_until};
use common::{stderr, stdout, tree};
use iptables_ctl::systemd::ServiceManager;

const RULES_UNIT: &str = "iptables@base.service";
const DOCKER_UNIT: &str = "iptables-docker@base.service";

/// The policy the reload installs: SSH and 2222 open, everything else refused.
const EDITED_POLICY: &str = r#"
[interfaces]
external = "eth0"

[[host.services]]
port = 22
comment = "ssh"

[[host.services]]
port = 2222
comment = "host service"
"#;

/// Probes `port` on the machine over IPv4 and IPv6.
fn both(machine: &Machine<'_>, port: u16) -> [Outcome; 2] {
    [
        probe(&machine.client, None, MACHINE_V4, port),
        probe(&machine.client, None, MACHINE_V6, port),
    ]
}

#[test]
fn install_reload_stop_start_on_a_booted_systemd() {
    if !systemd_tests_enabled("install_reload_stop_start_on_a_booted_systemd") {
        return;
    }
    let image = image();
    let state = MachineState::new(&image);
    let machine = Machine::boot(&state);
    let bus = machine.bus();
    let listeners = listen(&machine.netns, &[22, 2222, 2223]);
    for listener in &listeners {
        listener.set_nonblocking(true).unwrap();
    }
    // Probes are never accepted by anyone; drain them so the accept queue (128) never
    // fills, which would drop SYNs and look like a firewall gap.
    let drain = || {
        for listener in &listeners {
            while listener.accept().is_ok() {}
        }
    };
    assert_eq!(
        both(&machine, 2223),
        [Outcome::Open; 2],
        "no firewall before install"
    );

    // install with no policy: the starter policy, units enabled and active.
    let out = machine.exec(&["iptables-ctl", "install"]);
    assert!(
        out.status.success(),
        "install failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("installing the starter policy"), "{text}");
    assert!(text.contains("external interfaces: eth0"), "{text}");
    for unit in [RULES_UNIT, "iptables.service"] {
        let status = bus.unit_status(unit).unwrap();
        assert_eq!(
            (
                status.active_state.as_str(),
                status.unit_file_state.as_str()
            ),
            ("active", "enabled"),
            "{unit}"
        );
    }
    assert_eq!(
        bus.unit_status(DOCKER_UNIT).unwrap().unit_file_state,
        "enabled"
    );
    assert!(
        state
            .etc_systemd()
            .join("docker.service.wants")
            .join(DOCKER_UNIT)
            .symlink_metadata()
            .is_ok(),
        "enabled into docker.service.wants"
    );
    assert_eq!(
        both(&machine, 22),
        [Outcome::Open; 2],
        "the starter policy keeps SSH open"
    );
    assert_eq!(
        both(&machine, 2223),
        [Outcome::Refused; 2],
        "everything else is refused"
    );
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(0)
    );

    // Edit + reload while a prober checks, all through the reload, that the closed port
    // never opens and SSH never closes.
    fs::write(state.etc_iptables().join("base.toml"), EDITED_POLICY).unwrap();
    let stop = AtomicBool::new(false);
    let seen = Mutex::new((0usize, Vec::new()));
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                for (port, want) in [(2223, Outcome::Refused), (22, Outcome::Open)] {
                    let got = probe(&machine.client, None, MACHINE_V4, port);
                    drain();
                    let mut seen = seen.lock().unwrap();
                    seen.0 += 1;
                    if got != want {
                        seen.1.push((port, got));
                    }
                }
            }
        });
        let out = machine.exec(&["iptables-ctl", "reload"]);
        stop.store(true, Ordering::Release);
        out
    });
    assert!(
        out.status.success(),
        "reload failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let (probes, wrong) = seen.lock().unwrap().clone();
    eprintln!(
        "reload: {probes} probes during the reload, {} wrong",
        wrong.len()
    );
    assert!(probes >= 2, "the prober ran ({probes} probes)");
    assert!(
        wrong.is_empty(),
        "rules were absent during reload: {wrong:?}"
    );
    assert_eq!(both(&machine, 2222), [Outcome::Open; 2], "the edit is live");
    assert_eq!(both(&machine, 2223), [Outcome::Refused; 2]);

    // A broken policy: refused, live rules and files untouched.
    let live_before = (
        machine.save("iptables-save"),
        machine.save("ip6tables-save"),
    );
    fs::write(
        state.etc_iptables().join("base.toml"),
        format!("{EDITED_POLICY}\n[[host.services]]\nport = 70000\n"),
    )
    .unwrap();
    let files_before = tree(&state.etc_iptables());
    let out = machine.exec(&["iptables-ctl", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("/etc/iptables/base.toml:") && err.contains("host.services[2].port"),
        "{err}"
    );
    assert_eq!(
        (
            machine.save("iptables-save"),
            machine.save("ip6tables-save")
        ),
        live_before
    );
    assert_eq!(tree(&state.etc_iptables()), files_before);
    fs::write(state.etc_iptables().join("base.toml"), EDITED_POLICY).unwrap();

    // stop: pass-through; start: back.
    let out = machine.exec(&["iptables-ctl", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        both(&machine, 2223),
        [Outcome::Open; 2],
        "stop loads the .empty files"
    );
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(3)
    );
    let out = machine.exec(&["iptables-ctl", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        both(&machine, 2223),
        [Outcome::Refused; 2],
        "start brings the rules back"
    );

    // Bad files on disk: restart is refused while the rules stand...
    let rules = state.etc_iptables().join("base.rules");
    let good = fs::read_to_string(&rules).unwrap();
    fs::write(
        &rules,
        format!("{good}*filter\n-A INPUT -j NO-SUCH-CHAIN\nCOMMIT\n"),
    )
    .unwrap();
    let live_before = machine.save("iptables-save");
    let out = machine.exec(&["iptables-ctl", "restart"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refusing to restart"),
        "{}",
        stderr(&out)
    );
    assert_eq!(machine.save("iptables-save"), live_before);
    assert_eq!(both(&machine, 2223), [Outcome::Refused; 2]);
    // ...and so is start: the host stays as stopped left it, and the error names the line.
    assert!(machine.exec(&["iptables-ctl", "stop"]).status.success());
    let out = machine.exec(&["iptables-ctl", "start"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("refusing to start") && err.contains("NO-SUCH-CHAIN"),
        "{err}"
    );
    assert_eq!(
        bus.unit_status(RULES_UNIT).unwrap().active_state,
        "inactive"
    );
    fs::write(&rules, good).unwrap();
    assert!(machine.exec(&["iptables-ctl", "start"]).status.success());
    // A unit that fails to start all the same (here an admin's drop-in loading a file
    // iptables-restore refuses)...
    fs::write(
        state.etc_iptables().join("broken.rules"),
        "*filter\n-A INPUT -j NO-SUCH-CHAIN\nCOMMIT\n",
    )
    .unwrap();
    let drop_in = state.etc_systemd().join("iptables@base.service.d");
    fs::create_dir_all(&drop_in).unwrap();
    fs::write(
        drop_in.join("broken.conf"),
        "[Service]\nExecStartPre=/usr/sbin/iptables-restore -w -n /etc/iptables/broken.rules\n",
    )
    .unwrap();
    machine.exec_ok(&["systemctl", "daemon-reload"]);
    // ...does not open the host on restart: a stop would load the pass-through files
    // and the failed start would leave them; restart reloads instead.
    let out = machine.exec(&["iptables-ctl", "restart"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("with no gap"), "{}", stdout(&out));
    assert_eq!(
        both(&machine, 2223),
        [Outcome::Refused; 2],
        "the rules stay in force through a restart whose start would fail"
    );
    assert_eq!(bus.unit_status(RULES_UNIT).unwrap().active_state, "active");
    // A start that fails is reported with its journal lines.
    assert!(machine.exec(&["iptables-ctl", "stop"]).status.success());
    let out = machine.exec(&["iptables-ctl", "start"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("iptables@base.service: start failed"), "{err}");
    assert!(err.contains("result: exit-code"), "{err}");
    assert!(err.contains("last journal lines"), "{err}");
    assert!(
        err.contains("iptables-restore"),
        "the journal shows iptables-restore's complaint: {err}"
    );
    assert_eq!(bus.unit_status(RULES_UNIT).unwrap().active_state, "failed");
    fs::remove_dir_all(&drop_in).unwrap();
    fs::remove_file(state.etc_iptables().join("broken.rules")).unwrap();
    machine.exec_ok(&["systemctl", "daemon-reload"]);
    assert!(machine.exec(&["iptables-ctl", "start"]).status.success());
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(0)
    );

    // uninstall: pass-through, units gone, policy and rules kept.
    let out = machine.exec(&["iptables-ctl", "uninstall"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(both(&machine, 2223), [Outcome::Open; 2]);
    assert!(bus.unit_status(RULES_UNIT).unwrap().is_not_found());
    assert!(!state.etc_systemd().join("iptables@.service").exists());
    assert!(
        state
            .etc_systemd()
            .join("multi-user.target.wants")
            .join(RULES_UNIT)
            .symlink_metadata()
            .is_err()
    );
    assert!(state.etc_iptables().join("base.toml").exists());
    assert!(state.etc_iptables().join("base.rules").exists());
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(4)
    );

    machine.poweroff();
}

#[test]
fn install_refuses_netfilter_persistent_and_a_backend_mismatch_until_forced() {
    if !systemd_tests_enabled(
        "install_refuses_netfilter_persistent_and_a_backend_mismatch_until_forced",
    ) {
        return;
    }
    let image = image();
    let state = MachineState::new(&image);
    let machine = Machine::boot(&state);
    // Nothing installed yet: status says so with systemctl's code.
    let out = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(stdout(&out).contains("iptables@base.service: not installed"));
    machine.exec_ok(&["systemctl", "enable", "netfilter-persistent.service"]);
    // Docker's chains in the legacy tables while iptables here is nf_tables.
    machine.exec_ok(&["iptables-legacy", "-t", "nat", "-N", "DOCKER"]);
    fs::write(state.etc_iptables().join("base.toml"), EDITED_POLICY).unwrap();
    let before = (
        tree(&state.etc_systemd()),
        tree(&state.etc_iptables()),
        machine.save("iptables-save"),
    );

    let out = machine.exec(&["iptables-ctl", "install"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("refusing to install"), "{err}");
    assert!(err.contains("netfilter-persistent is enabled"), "{err}");
    assert!(
        err.contains("/etc/systemd/system/iptables.service is an alias of"),
        "{err}"
    );
    assert!(
        err.contains("iptables here is nf_tables but Docker's chains are in the legacy tables"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        (
            tree(&state.etc_systemd()),
            tree(&state.etc_iptables()),
            machine.save("iptables-save")
        ),
        before,
        "nothing changed"
    );
    assert!(
        machine
            .bus()
            .unit_status(RULES_UNIT)
            .unwrap()
            .is_not_found()
    );

    // A start that systemd fails (here an admin's drop-in whose ExecStartPre fails):
    // install --force gets past the conflicts, writes, enables, fails to start, and puts
    // everything back: files, enable links, and systemd's view of the units.
    let drop_in = state.etc_systemd().join("iptables@base.service.d");
    fs::create_dir_all(&drop_in).unwrap();
    fs::write(
        drop_in.join("fail.conf"),
        "[Service]\nExecStartPre=/bin/false\n",
    )
    .unwrap();
    let bus = machine.bus();
    let our_units = [RULES_UNIT, DOCKER_UNIT, "iptables.service"];
    let unit_file_states = || -> Vec<Option<String>> {
        our_units
            .iter()
            .map(|unit| bus.unit_file_state(unit).unwrap().map(|s| s.to_string()))
            .collect()
    };
    let before = (
        tree(&state.etc_systemd()),
        tree(&state.etc_iptables()),
        machine.save("iptables-save"),
        unit_file_states(),
    );
    // netfilter-persistent's alias is what systemd knows as iptables.service.
    assert_eq!(before.3, [None, None, Some("alias".to_owned())]);
    let out = machine.exec(&["iptables-ctl", "install", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("created symlink"), "{text}");
    assert!(
        text.contains("putting the previous files and unit state back"),
        "{text}"
    );
    assert!(stderr(&out).contains("start failed"), "{}", stderr(&out));
    assert_eq!(
        (
            tree(&state.etc_systemd()),
            tree(&state.etc_iptables()),
            machine.save("iptables-save"),
            unit_file_states(),
        ),
        before,
        "a failed start changes nothing, the alias included"
    );
    // Nor does the unit, gone again, linger in `systemctl --failed`.
    let rules = bus.unit_status(RULES_UNIT).unwrap();
    assert_eq!(
        (rules.load_state.as_str(), rules.active_state.as_str()),
        ("not-found", "inactive")
    );
    fs::remove_dir_all(&drop_in).unwrap();

    let out = machine.exec(&["iptables-ctl", "install", "--force"]);
    // Forced past the mismatch, the rules load but are not in force: Docker's FORWARD
    // jump, in the legacy tables, never reaches them (exit 5, the lint named).
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("iptables-ctl: warning: (--force) netfilter-persistent is enabled"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the rules are loaded but NOT IN FORCE")
            && stderr(&out).contains("[iptables-variant-mismatch]"),
        "{}",
        stderr(&out)
    );
    // Once Docker's chains are gone from the legacy tables, they are.
    machine.exec_ok(&["iptables-legacy", "-t", "nat", "-X", "DOCKER"]);
    assert_eq!(
        machine.bus().unit_status(RULES_UNIT).unwrap().active_state,
        "active"
    );
    let out = machine.exec(&["iptables-ctl", "status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unit"]["active_state"], "active");
    assert_eq!(report["live"]["backend"], "nf_tables");
    for family in report["live"]["families"].as_array().unwrap() {
        assert_eq!(family["in_force"], true, "{family}");
    }
    // Drift: a rule added by hand is reported, with exit code 5 (not in force).
    machine.exec_ok(&[
        "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "5555", "-j", "ACCEPT",
    ]);
    let out = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stdout(&out).contains("unexpected: -A INPUT -p tcp -m tcp --dport 5555 -j ACCEPT"),
        "{}",
        stdout(&out)
    );
    machine.poweroff();
}

/// The policy of the Docker test: published 8080 open, every other published port
/// refused; host service 2222 open.
const DOCKER_POLICY: &str = r#"
[interfaces]
external = "eth0"

[[host.services]]
port = 2222
comment = "host service"

[[docker.published]]
port = 8080
comment = "web"
"#;

/// Microseconds on CLOCK_MONOTONIC at which `unit` last became active.
fn activated_at(bus: &impl ServiceManager, unit: &str) -> u64 {
    let at = bus.unit_status(unit).unwrap().active_enter_monotonic_us;
    assert!(at > 0, "{unit} never became active");
    at
}

/// Asserts that, from the client, the container's published 8080 is open and 9090
/// refused. On a mismatch the message carries what is needed to tell the firewall's
/// fault from the container's: the live rules, the containers and our units' journal.
fn assert_published_8080_only(machine: &Machine<'_>) {
    let seen = (
        probe(&machine.client, None, MACHINE_V4, 8080),
        probe(&machine.client, None, MACHINE_V4, 9090),
    );
    if seen != (Outcome::Open, Outcome::Refused) {
        panic!(
            "published 8080, 9090: expected (Open, Refused), saw {seen:?}\n{}",
            diagnostics(machine)
        );
    }
}

/// The machine's live INPUT chain: its policy and rules.
fn input_lines(machine: &Machine<'_>) -> Vec<String> {
    iptables_ctl::iptables::dump::parse(&machine.save("iptables-save"))
        .unwrap()
        .table("filter")
        .unwrap()
        .chain_lines(&["INPUT"])
}

fn forward_first(machine: &Machine<'_>) -> String {
    machine
        .save("iptables-save")
        .lines()
        .find(|l| l.starts_with("-A FORWARD"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn docker_started_by_systemd_restarts_stops_and_reboots_under_the_rules() {
    if !systemd_tests_enabled(
        "docker_started_by_systemd_restarts_stops_and_reboots_under_the_rules",
    ) {
        return;
    }
    let image = image();
    let state = MachineState::new(&image);
    fs::write(state.etc_iptables().join("base.toml"), DOCKER_POLICY).unwrap();
    let machine = Machine::boot(&state);
    let bus = machine.bus();
    let _listeners = listen(&machine.netns, &[2222, 2223]);
    let out = machine.exec(&["iptables-ctl", "install"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // A real dockerd, started by the machine's systemd, and a real container.
    start_docker_with_busybox(&machine, None);
    run_httpd(
        &machine,
        "web",
        &["--restart", "always", "-p", "8080:80", "-p", "9090:80"],
    );
    assert_published_8080_only(&machine);
    assert_eq!(forward_first(&machine), "-A FORWARD -j DOCKER-USER");
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(0)
    );

    // Restarting Docker re-asserts the rules after it: DOCKER-USER is still jumped to
    // first and the rules are in force.
    let asserted_before = activated_at(&bus, DOCKER_UNIT);
    machine.exec_ok(&["systemctl", "restart", "docker.service"]);
    start_httpd(&machine, "web");
    let docker_up = activated_at(&bus, "docker.service");
    // systemctl waits for docker's own job only; the propagated restart of our unit
    // (PartOf=, ordered After=) finishes a moment later.
    wait_until(
        Duration::from_secs(30),
        "the rules are re-asserted after docker restart",
        || activated_at(&bus, DOCKER_UNIT) > asserted_before,
    );
    assert!(
        activated_at(&bus, DOCKER_UNIT) >= docker_up,
        "the re-assertion ran after docker.service was up"
    );
    assert_eq!(forward_first(&machine), "-A FORWARD -j DOCKER-USER");
    let status = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    assert_published_8080_only(&machine);

    // The admin's own `systemctl reload` loads the files again beside Docker's chains.
    machine.exec_ok(&["systemctl", "reload", RULES_UNIT]);
    assert_eq!(forward_first(&machine), "-A FORWARD -j DOCKER-USER");
    assert_published_8080_only(&machine);
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(0)
    );

    // Stopping Docker leaves the host's protection in place.
    let input_before = input_lines(&machine);
    machine.exec_ok(&["systemctl", "stop", "docker.service", "docker.socket"]);
    assert_eq!(
        bus.unit_status("docker.service").unwrap().active_state,
        "inactive"
    );
    assert_eq!(input_lines(&machine), input_before);
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Refused
    );
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2222),
        Outcome::Open
    );
    assert_eq!(bus.unit_status(RULES_UNIT).unwrap().active_state, "active");

    // A simulated reboot: power off, boot the same disk.
    drop(bus);
    machine.poweroff();
    let machine = Machine::boot(&state);
    let bus = machine.bus();
    let rules_at = activated_at(&bus, RULES_UNIT);
    let network_pre_at = activated_at(&bus, "network-pre.target");
    let docker_started = bus
        .unit_status("docker.service")
        .unwrap()
        .inactive_exit_monotonic_us;
    assert!(docker_started > 0, "docker.service started at boot");
    assert!(
        rules_at <= network_pre_at,
        "rules in force before network-pre.target ({rules_at} > {network_pre_at})"
    );
    assert!(
        rules_at <= docker_started,
        "rules in force before dockerd started ({rules_at} > {docker_started})"
    );
    assert!(activated_at(&bus, DOCKER_UNIT) >= activated_at(&bus, "docker.service"));
    start_httpd(&machine, "web");
    let _listeners = listen(&machine.netns, &[2223]);
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Refused
    );
    assert_published_8080_only(&machine);
    assert_eq!(forward_first(&machine), "-A FORWARD -j DOCKER-USER");
    assert_eq!(
        machine.exec(&["iptables-ctl", "status"]).status.code(),
        Some(0)
    );
    machine.poweroff();
}

/// The policy of the audit test: 8080 open to the client's network, 8081 only to a
/// network the client is not in, 9090 not listed (denied), and the default bridges.
const AUDIT_POLICY: &str = r#"
[interfaces]
external = "eth0"

[[docker.published]]
port = 8080
from = ["10.99.0.0/24"]

[[docker.published]]
port = 8081
from = ["192.0.2.0/24"]
"#;

#[test]
fn audit_on_a_real_dockerd_lists_every_published_port_and_flags_the_uncovered_one() {
    if !systemd_tests_enabled(
        "audit_on_a_real_dockerd_lists_every_published_port_and_flags_the_uncovered_one",
    ) {
        return;
    }
    let image = image();
    let state = MachineState::new(&image);
    fs::write(state.etc_iptables().join("base.toml"), AUDIT_POLICY).unwrap();
    let machine = Machine::boot(&state);
    let out = machine.exec(&["iptables-ctl", "install"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    start_docker_with_busybox(&machine, None);
    run_httpd(
        &machine,
        "web",
        &["-p", "8080:80", "-p", "8081:80", "-p", "9090:80"],
    );
    // A network whose bridge has a custom name, which the policy's docker_bridges
    // (docker0, br-+) do not cover: its published port is refused all the same, since
    // the deny does not depend on interface names.
    machine.exec_ok(&[
        "docker",
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=legacy0",
        "legacy",
    ]);
    run_httpd(
        &machine,
        "legacy",
        &["--network", "legacy", "-p", "7070:80"],
    );
    let ports = [8080, 8081, 9090, 7070];
    let audit_agrees = |expected: [Outcome; 4], code: i32, last: &str| {
        // What real connections from the client (10.99.0.1) see.
        let real: Vec<Outcome> = ports
            .iter()
            .map(|port| probe(&machine.client, None, MACHINE_V4, *port))
            .collect();
        assert_eq!(real, expected);
        let out = machine.exec(&["iptables-ctl", "audit"]);
        let text = stdout(&out);
        eprintln!("{text}");
        assert_eq!(out.status.code(), Some(code), "{text}{}", stderr(&out));
        let line = |port: u16| {
            text.lines()
                .find(|l| l.starts_with(&format!("tcp {MACHINE_V4}:{port} ->")))
                .unwrap_or_else(|| panic!("no line for {port}:\n{text}"))
                .to_owned()
        };
        for (port, ending) in [
            (8080, "reachable only from 10.99.0.0/24  ok"),
            (8081, "reachable only from 192.0.2.0/24  ok"),
            (9090, "reachable from nowhere  ok"),
            (7070, last),
        ] {
            assert!(line(port).ends_with(ending), "{}", line(port));
        }
        // The audit agrees with the real connections.
        for (port, outcome) in ports.into_iter().zip(real) {
            let l = line(port);
            let client_allowed =
                l.contains("reachable from anywhere") || l.contains("10.99.0.0/24");
            assert_eq!(client_allowed, outcome == Outcome::Open, "{port}");
        }
    };
    audit_agrees(
        [
            Outcome::Open,
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Refused,
        ],
        0,
        "reachable from nowhere  ok",
    );

    // status names the bridge the policy does not cover.
    let out = machine.exec(&["iptables-ctl", "status"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "Docker's bridge legacy0 (from its FORWARD rules) is outside interfaces.docker_bridges"
        ),
        "{}",
        stdout(&out)
    );

    // A rule inserted by hand opens 7070 to the world: the audit flags it.
    machine.exec_ok(&[
        "iptables",
        "-I",
        "DOCKER-USER",
        "-p",
        "tcp",
        "-m",
        "conntrack",
        "--ctstate",
        "DNAT",
        "--ctorigdstport",
        "7070",
        "-j",
        "RETURN",
    ]);
    audit_agrees(
        [
            Outcome::Open,
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Open,
        ],
        6,
        "reachable from anywhere  NOT ALLOWED BY THE POLICY",
    );
    let out = machine.exec(&["iptables-ctl", "audit", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flagged: Vec<u64> = report["exposures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["not_allowed"].as_array().unwrap().is_empty())
        .map(|e| e["port"]["host_port"].as_u64().unwrap())
        .collect();
    assert_eq!(flagged, [7070]);

    let out = machine.exec(&[
        "iptables-ctl",
        "explain",
        "--from",
        "10.99.0.1",
        "--to",
        &format!("{MACHINE_V4}:9090"),
    ]);
    let walk = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(walk.contains("-j DNAT --to-destination"), "{walk}");
    assert!(walk.ends_with("verdict: REJECT (tcp-reset)\n"), "{walk}");
    machine.poweroff();
}
