//! The ordinary situations in which the firewall once failed open while every command
//! said all was well, each built for real: a booted systemd 252 in systemd-nspawn, the
//! real dockerd it starts, and TCP connects from a client namespace over IPv4 and IPv6
//! (two client addresses per family: one the policy allows, one it does not).
//!
//! Every test is named after what must hold; each asserts first the behaviour that was
//! observed wrong (an open port, a wrong exit code, a unit left inactive).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::net::TcpStream;
use std::time::Duration;

use common::docker::{
    FIRST_V4, FIRST_V6, IPV6_DAEMON_JSON, POLICY, PUBLISHED, assert_probes, diagnostics,
    restart_docker, run_httpd, start_docker_with_busybox,
};
use common::nspawn::{
    CLIENT_V4, MACHINE_V4, MACHINE_V6, Machine, MachineState, image, systemd_tests_enabled,
};
use common::{Outcome, listen, probe, wait_until};
use common::{stderr, stdout, tree};
use iptables_ctl::systemd::ServiceManager;

const RULES_UNIT: &str = "iptables@base.service";
const DOCKER_UNIT: &str = "iptables-docker@base.service";

/// Runs `argv` in the machine; it must exit with `code`. Returns (stdout, stderr).
fn expect_code(machine: &Machine<'_>, argv: &[&str], code: i32) -> (String, String) {
    let out = machine.exec(argv);
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{argv:?}:\n{o}{e}\n{}",
        diagnostics(machine)
    );
    (o, e)
}

/// A booted machine with `policy` installed as instance base.
fn installed<'a>(state: &'a MachineState, policy: &str) -> Machine<'a> {
    fs::write(state.etc_iptables().join("base.toml"), policy).unwrap();
    let machine = Machine::boot(state);
    expect_code(&machine, &["iptables-ctl", "install"], 0);
    machine
}

/// Docker started by the machine's systemd, with `web` publishing 8080 and 9090.
fn docker_with_web(machine: &Machine<'_>, daemon_json: Option<&str>) {
    start_docker_with_busybox(machine, daemon_json);
    run_httpd(
        machine,
        "web",
        &["--restart", "always", "-p", "8080:80", "-p", "9090:80"],
    );
}

/// The live FORWARD rules of `program` (iptables-save or ip6tables-save).
fn forward_rules(machine: &Machine<'_>, program: &str) -> Vec<String> {
    machine
        .save(program)
        .lines()
        .filter(|l| l.starts_with("-A FORWARD"))
        .map(str::to_owned)
        .collect()
}

fn status_json(machine: &Machine<'_>) -> (Option<i32>, serde_json::Value) {
    let out = machine.exec(&["iptables-ctl", "status", "--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}\n{}{}", stdout(&out), stderr(&out)));
    (out.status.code(), report)
}

fn boot_enabled(test: &str) -> bool {
    systemd_tests_enabled(test)
}

#[test]
fn a_misspelt_external_interface_leaves_no_published_port_open() {
    if !boot_enabled("a_misspelt_external_interface_leaves_no_published_port_open") {
        return;
    }
    let state = MachineState::new(&image());
    let policy = POLICY.replace("external = \"eth0\"", "external = [\"eth9\"]");
    fs::write(state.etc_iptables().join("base.toml"), &policy).unwrap();
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[22, 2222]);
    let check = machine.exec(&["iptables-ctl", "check"]);
    let install = machine.exec(&["iptables-ctl", "install"]);
    docker_with_web(&machine, None);

    // No published port is open beyond the policy...
    assert_probes(&machine, "external = [\"eth9\"]", &PUBLISHED);

    // ...check goes through, and install ends saying the policy is not in force as
    // written (exit 5), as status does; both warn about the name, naming the
    // interfaces that exist.
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(install.status.code(), Some(5), "{}", stderr(&install));
    for warned in [stderr(&check), stderr(&install)] {
        assert!(
            warned.contains("eth9") && warned.contains("does not exist") && warned.contains("eth0"),
            "{warned}"
        );
    }

    // The policy means something the host cannot give: status says so, not "in force".
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 5);
    assert!(text.contains("eth9"), "{text}");
    // The audit still lists both published ports, and flags what it cannot evaluate.
    let (text, _) = expect_code(&machine, &["iptables-ctl", "audit"], 6);
    assert!(!text.contains("no published ports"), "{text}");
    for port in [8080, 9090] {
        assert!(
            text.contains(&format!("{MACHINE_V4}:{port} ->"))
                && text.contains(&format!("[{MACHINE_V6}]:{port} ->")),
            "{port}: {text}"
        );
    }
    assert!(text.contains("eth9 does not exist"), "{text}");
    machine.poweroff();
}

#[test]
fn a_tree_staged_elsewhere_keeps_auto_and_protects_the_host_it_boots_on() {
    if !boot_enabled("a_tree_staged_elsewhere_keeps_auto_and_protects_the_host_it_boots_on") {
        return;
    }
    // Staged on a host whose default route is on stg0, with its own sshd port.
    let staged = tempfile::tempdir().unwrap();
    let root = staged.path();
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    fs::write(root.join("etc/ssh/sshd_config"), "Port 2222\n").unwrap();
    let binary = env!("CARGO_BIN_EXE_iptables-ctl");
    let out = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg(format!(
            "ip link add stg0 type veth peer name stg1 && ip link set stg0 up && ip link set stg1 up && \
             ip route add default dev stg0 && \
             exec {binary} --root {} install",
            root.display()
        ))
        .env_remove("SSH_CONNECTION")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let starter = fs::read_to_string(root.join("etc/iptables/base.toml")).unwrap();
    assert!(starter.contains("external = \"auto\""), "{starter}");
    assert!(!starter.contains("stg0"), "{starter}");
    assert!(
        starter.contains("port = [2222]"),
        "the staged tree's sshd port: {starter}"
    );

    // Booted on a machine whose interface is eth0.
    let state = MachineState::new(&image());
    for (from, to) in [
        (root.join("etc/iptables"), state.etc_iptables()),
        (root.join("etc/systemd/system"), state.etc_systemd()),
    ] {
        common::run_ok(
            "cp",
            &[
                "-a",
                &format!("{}/.", from.display()),
                &to.to_string_lossy(),
            ],
            b"",
        );
    }
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[22, 2222]);
    docker_with_web(&machine, None);
    assert_probes(
        &machine,
        "staged starter booted elsewhere",
        &[
            (FIRST_V4, 8080, Outcome::Refused),
            (FIRST_V4, 9090, Outcome::Refused),
            (FIRST_V6, 8080, Outcome::Refused),
            (FIRST_V6, 9090, Outcome::Refused),
            (FIRST_V4, 2222, Outcome::Open),
            (FIRST_V6, 2222, Outcome::Open),
        ],
    );
    expect_code(&machine, &["iptables-ctl", "status"], 0);
    machine.poweroff();
}

#[test]
fn a_forward_accept_inserted_by_hand_is_not_in_force() {
    if !boot_enabled("a_forward_accept_inserted_by_hand_is_not_in_force") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    docker_with_web(&machine, None);
    // IPv4 is the family this test is about (the hand rule is an iptables one).
    assert_probes(&machine, "installed", &PUBLISHED[..4]);

    machine.exec_ok(&[
        "iptables", "-I", "FORWARD", "-i", "eth0", "-o", "docker0", "-j", "ACCEPT",
    ]);
    // The hole is real...
    assert_eq!(
        probe(&machine.client, Some(CLIENT_V4), MACHINE_V4, 9090),
        Outcome::Open
    );
    // ...and status says so.
    let (code, report) = status_json(&machine);
    assert_eq!(code, Some(5), "{report:#}");
    assert_eq!(report["in_force"], false, "{report:#}");
    let ipv4 = &report["live"]["families"][0];
    assert_eq!(
        (
            &ipv4["family"],
            &ipv4["in_force"],
            &ipv4["docker_user_first"]
        ),
        (
            &serde_json::json!("IPv4"),
            &serde_json::json!(false),
            &serde_json::json!(false)
        ),
        "{report:#}"
    );
    let (text, _) = expect_code(&machine, &["iptables-ctl", "audit"], 6);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("tcp {MACHINE_V4}:9090 ->"))
                && l.ends_with("NOT ALLOWED BY THE POLICY")),
        "{text}"
    );
    // reload puts the jump first again: the hand rule then protects nothing it opened.
    expect_code(&machine, &["iptables-ctl", "reload"], 0);
    assert_probes(&machine, "after reload", &PUBLISHED);
    expect_code(&machine, &["iptables-ctl", "status"], 0);
    machine.poweroff();
}

#[test]
fn old_docker_with_ipv6_gets_its_docker_user_jump_from_us() {
    if !boot_enabled("old_docker_with_ipv6_gets_its_docker_user_jump_from_us") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    let _listeners = listen(&machine.netns, &[22, 2222]);
    docker_with_web(&machine, Some(IPV6_DAEMON_JSON));
    // Docker 20.10 DNATs IPv6 published ports here (no docker-proxy path).
    assert!(
        machine.save("ip6tables-save").contains(":DOCKER-USER -")
            && machine
                .exec_ok(&["ip6tables-save", "-t", "nat"])
                .contains("DNAT"),
        "{}",
        diagnostics(&machine)
    );
    assert_probes(&machine, "Docker 20.10 with IPv6", &PUBLISHED);
    for program in ["iptables-save", "ip6tables-save"] {
        let forward = forward_rules(&machine, program);
        assert_eq!(
            forward.first().map(String::as_str),
            Some("-A FORWARD -j DOCKER-USER"),
            "{program}: {forward:?}"
        );
    }
    // status is in force, and says it was IPv6 that needed the repair.
    let (code, report) = status_json(&machine);
    assert_eq!(code, Some(0), "{report:#}");
    let families = &report["live"]["families"];
    assert_eq!(
        (&families[0]["family"], &families[1]["family"]),
        (&serde_json::json!("IPv4"), &serde_json::json!("IPv6"))
    );
    assert!(families[0]["forward_repair"].is_null(), "{report:#}");
    assert!(
        families[1]["forward_repair"]["count"].as_u64() >= Some(1),
        "{report:#}"
    );
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 0);
    let ipv6_forward = text
        .lines()
        .skip_while(|l| !l.starts_with("IPv6:"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        ipv6_forward.contains("FORWARD: jumps to DOCKER-USER first (repaired by iptables-ctl"),
        "{text}"
    );

    // Reloads neither duplicate the jump nor lose it.
    for _ in 0..2 {
        machine.exec_ok(&["systemctl", "reload", RULES_UNIT]);
        expect_code(&machine, &["iptables-ctl", "reload"], 0);
    }
    for program in ["iptables-save", "ip6tables-save"] {
        let jumps = forward_rules(&machine, program)
            .iter()
            .filter(|l| *l == "-A FORWARD -j DOCKER-USER")
            .count();
        assert_eq!(jumps, 1, "{program}");
    }
    // The re-assertion runs however often Docker starts: no start limit (systemd's
    // default is 5 starts in 10 s) ever refuses it.
    for attempt in 0..8 {
        let out = machine.exec(&["systemctl", "restart", DOCKER_UNIT]);
        assert!(
            out.status.success(),
            "restart {attempt} of {DOCKER_UNIT} refused: {}",
            stderr(&out)
        );
    }
    // After Docker restarts, the jump is first again.
    let before = activated_at(&machine.bus(), DOCKER_UNIT);
    restart_docker(&machine);
    wait_until(Duration::from_secs(30), "the re-assertion ran", || {
        activated_at(&machine.bus(), DOCKER_UNIT) > before
    });
    common::docker::start_httpd(&machine, "web");
    assert_eq!(
        forward_rules(&machine, "ip6tables-save")
            .first()
            .map(String::as_str),
        Some("-A FORWARD -j DOCKER-USER")
    );
    assert_probes(&machine, "after docker restart", &PUBLISHED);
    machine.poweroff();
}

fn activated_at(bus: &impl ServiceManager, unit: &str) -> u64 {
    bus.unit_status(unit).unwrap().active_enter_monotonic_us
}

#[test]
fn ipv6_clients_of_docker_proxy_get_what_the_published_entry_says() {
    if !boot_enabled("ipv6_clients_of_docker_proxy_get_what_the_published_entry_says") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    docker_with_web(&machine, None);
    let ports = machine.exec_ok(&["docker", "ps", "--format", "{{.Ports}}"]);
    assert!(
        ports.contains(":::8080->80/tcp"),
        "docker-proxy serves IPv6: {ports}"
    );
    assert_probes(&machine, "IPv6 through docker-proxy", &PUBLISHED);

    let (text, _) = expect_code(&machine, &["iptables-ctl", "audit"], 0);
    for port in [8080, 9090] {
        assert!(
            text.contains(&format!("[{MACHINE_V6}]:{port} ->")),
            "{port}: {text}"
        );
    }
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 0);
    assert!(!text.contains("Docker is not running"), "{text}");
    assert!(text.contains("docker-proxy"), "{text}");
    machine.poweroff();
}

#[test]
fn systemctl_acts_on_every_enabled_instance_through_the_umbrella_and_waits() {
    if !boot_enabled("systemctl_acts_on_every_enabled_instance_through_the_umbrella_and_waits") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    let _listeners = listen(&machine.netns, &[22, 2222, 2223]);
    docker_with_web(&machine, None);
    let active = |unit: &str| {
        machine
            .bus()
            .unit_status(unit)
            .unwrap()
            .active_state
            .to_string()
    };
    // With the instance stopped, Docker alone decides: 9090 is open to everyone.
    let pass_through = [
        (FIRST_V4, 9090, Outcome::Open),
        (FIRST_V6, 9090, Outcome::Open),
        (FIRST_V4, 2223, Outcome::Open),
        (FIRST_V6, 2223, Outcome::Open),
    ];

    machine.exec_ok(&["systemctl", "stop", "iptables"]);
    assert_eq!(
        (active(RULES_UNIT), active(DOCKER_UNIT)),
        ("inactive".to_owned(), "inactive".to_owned()),
        "stop waited for the instance and its re-assertion"
    );
    assert_probes(&machine, "after systemctl stop iptables", &pass_through);

    machine.exec_ok(&["systemctl", "start", "iptables"]);
    assert_eq!(
        (active(RULES_UNIT), active(DOCKER_UNIT)),
        ("active".to_owned(), "active".to_owned()),
        "start waited for the instance and its re-assertion"
    );
    assert_probes(&machine, "after systemctl start iptables", &PUBLISHED);
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Refused
    );

    // A new rendering on disk, loaded by `systemctl reload iptables`.
    fs::write(
        state.etc_iptables().join("base.toml"),
        POLICY.replace("port = 2222", "port = [2222, 2223]"),
    )
    .unwrap();
    expect_code(&machine, &["iptables-ctl", "render"], 0);
    machine.exec_ok(&["systemctl", "reload", "iptables"]);
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Open
    );

    let entered = |unit: &str| activated_at(&machine.bus(), unit);
    let before = entered(RULES_UNIT);
    machine.exec_ok(&["systemctl", "restart", "iptables"]);
    assert_eq!(
        active(RULES_UNIT),
        "active",
        "restart waited for the instance"
    );
    assert!(
        entered(RULES_UNIT) > before,
        "restart restarted the instance"
    );
    assert_probes(&machine, "after systemctl restart iptables", &PUBLISHED);
    machine.exec_ok(&["systemctl", "stop", "iptables"]);
    assert_eq!(active(RULES_UNIT), "inactive");

    // Every enabled instance: a second one enabled by hand (install refuses two).
    fs::write(state.etc_iptables().join("web.toml"), POLICY).unwrap();
    expect_code(&machine, &["iptables-ctl", "render", "web"], 0);
    machine.exec_ok(&["systemctl", "enable", "iptables@web.service"]);
    machine.exec_ok(&["systemctl", "start", "iptables"]);
    assert_eq!(
        (active(RULES_UNIT), active("iptables@web.service")),
        ("active".to_owned(), "active".to_owned())
    );
    machine.exec_ok(&["systemctl", "stop", "iptables"]);
    assert_eq!(
        (active(RULES_UNIT), active("iptables@web.service")),
        ("inactive".to_owned(), "inactive".to_owned())
    );
    machine.exec_ok(&["systemctl", "disable", "iptables@web.service"]);

    // The umbrella follows `iptables-ctl stop` and `start`: it never reports active while
    // nothing runs, so `systemctl start iptables` after a stop starts the rules again.
    machine.exec_ok(&["systemctl", "start", "iptables"]);
    expect_code(&machine, &["iptables-ctl", "stop"], 0);
    assert_eq!(active("iptables.service"), "inactive");
    machine.exec_ok(&["systemctl", "start", "iptables"]);
    assert_eq!(active(RULES_UNIT), "active");
    expect_code(&machine, &["iptables-ctl", "stop"], 0);
    expect_code(&machine, &["iptables-ctl", "start"], 0);
    assert_eq!(active("iptables.service"), "active");
    machine.exec_ok(&["systemctl", "reload", "iptables"]);
    machine.exec_ok(&["systemctl", "stop", "iptables"]);
    let failed = machine.exec_ok(&[
        "systemctl",
        "list-units",
        "--failed",
        "--plain",
        "--no-legend",
    ]);
    assert!(!failed.contains("iptables"), "{failed}");
    let journal = common::docker::journal(&machine);
    assert!(!journal.contains("Failed with result"), "{journal}");
    machine.poweroff();
}

#[test]
fn a_second_instance_is_refused_and_uninstalling_it_leaves_the_first_alone() {
    if !boot_enabled("a_second_instance_is_refused_and_uninstalling_it_leaves_the_first_alone") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    let _listeners = listen(&machine.netns, &[22, 2222, 2223]);
    docker_with_web(&machine, None);
    fs::write(state.etc_iptables().join("web.toml"), POLICY).unwrap();
    let before = (
        tree(&state.etc_systemd()),
        tree(&state.etc_iptables()),
        machine.save("iptables-save"),
    );
    for args in [&["install", "web"][..], &["install", "web", "--force"]] {
        let mut argv = vec!["iptables-ctl"];
        argv.extend_from_slice(args);
        let (_, err) = expect_code(&machine, &argv, 1);
        assert!(err.contains("instance base is enabled"), "{err}");
        assert_eq!(
            (
                tree(&state.etc_systemd()),
                tree(&state.etc_iptables()),
                machine.save("iptables-save")
            ),
            before,
            "{args:?} changed something"
        );
    }
    expect_code(&machine, &["iptables-ctl", "uninstall", "web"], 0);
    expect_code(&machine, &["iptables-ctl", "status"], 0);
    assert!(state.etc_systemd().join("iptables@.service").exists());
    assert_probes(&machine, "base after uninstall web", &PUBLISHED);
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Refused
    );

    // Even with a second instance enabled behind our back, uninstalling it keeps the
    // units the first one runs from.
    machine.exec_ok(&["systemctl", "enable", "iptables@web.service"]);
    expect_code(&machine, &["iptables-ctl", "uninstall", "web"], 0);
    assert!(state.etc_systemd().join("iptables@.service").exists());
    assert!(
        state
            .etc_systemd()
            .join("iptables-docker@.service")
            .exists()
    );
    expect_code(&machine, &["iptables-ctl", "status"], 0);
    assert_probes(&machine, "base after uninstall web, twice", &PUBLISHED);
    machine.poweroff();
}

#[test]
fn stopped_means_stopped_and_started_means_the_docker_reassertion_too() {
    if !boot_enabled("stopped_means_stopped_and_started_means_the_docker_reassertion_too") {
        return;
    }
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    let machine = Machine::boot(&state);
    let _listeners = listen(&machine.netns, &[22, 2222, 2223]);
    // Docker first, then install: the re-assertion is in force at once.
    docker_with_web(&machine, None);
    expect_code(&machine, &["iptables-ctl", "install"], 0);
    let bus = machine.bus();
    assert_eq!(bus.unit_status(DOCKER_UNIT).unwrap().active_state, "active");
    let before = activated_at(&bus, DOCKER_UNIT);
    restart_docker(&machine);
    wait_until(
        Duration::from_secs(30),
        "the re-assertion ran after systemctl restart docker",
        || activated_at(&bus, DOCKER_UNIT) > before,
    );
    // A plain stop and start of Docker (not a restart) runs it too: systemd knows that
    // docker.service wants it without anyone else reloading systemd since install.
    machine.exec_ok(&["systemctl", "stop", "docker.service", "docker.socket"]);
    let before = activated_at(&bus, DOCKER_UNIT);
    machine.exec_ok(&["systemctl", "start", "docker.service"]);
    wait_until(
        Duration::from_secs(30),
        "the re-assertion ran after a plain start of docker",
        || activated_at(&bus, DOCKER_UNIT) > before,
    );

    // Stopped: a Docker restart does not bring the firewall back.
    expect_code(&machine, &["iptables-ctl", "stop"], 0);
    let skips = || {
        machine
            .exec_ok(&["journalctl", "-u", DOCKER_UNIT, "-o", "cat"])
            .matches("being skipped")
            .count()
    };
    let skipped_before = skips();
    restart_docker(&machine);
    // The re-assertion unit was started with Docker and skipped itself.
    wait_until(
        Duration::from_secs(30),
        "the re-assertion unit skipped itself",
        || skips() > skipped_before,
    );
    assert_eq!(
        bus.unit_status(DOCKER_UNIT).unwrap().active_state,
        "inactive"
    );
    assert_eq!(
        bus.unit_status(RULES_UNIT).unwrap().active_state,
        "inactive"
    );
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Open
    );
    expect_code(&machine, &["iptables-ctl", "status"], 3);

    // Started: the whole set, re-assertion included.
    expect_code(&machine, &["iptables-ctl", "start"], 0);
    assert_eq!(bus.unit_status(DOCKER_UNIT).unwrap().active_state, "active");
    let before = activated_at(&bus, DOCKER_UNIT);
    restart_docker(&machine);
    wait_until(
        Duration::from_secs(30),
        "the re-assertion ran after start and a docker restart",
        || activated_at(&bus, DOCKER_UNIT) > before,
    );
    common::docker::start_httpd(&machine, "web");
    assert_probes(&machine, "started again", &PUBLISHED);
    expect_code(&machine, &["iptables-ctl", "status"], 0);
    machine.poweroff();
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> std::process::Stdio {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    std::process::Stdio::from(write)
}

#[test]
fn a_closed_output_pipe_never_turns_a_done_reload_into_a_failure() {
    if !boot_enabled("a_closed_output_pipe_never_turns_a_done_reload_into_a_failure") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    let _listeners = listen(&machine.netns, &[22, 2222, 2223]);
    fs::write(
        state.etc_iptables().join("base.toml"),
        POLICY.replace("port = 2222", "port = [2222, 2223]"),
    )
    .unwrap();
    let out = machine.exec_with_stdout(&["iptables-ctl", "reload"], closed_pipe());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Open
    );
    for argv in [&["iptables-ctl", "check"][..], &["iptables-ctl", "status"]] {
        let out = machine.exec_with_stdout(argv, closed_pipe());
        assert_eq!(out.status.code(), Some(0), "{argv:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    machine.poweroff();
}

#[test]
fn rules_that_would_refuse_the_admins_ssh_session_are_refused_unless_forced() {
    if !boot_enabled("rules_that_would_refuse_the_admins_ssh_session_are_refused_unless_forced") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    let _listeners = listen(&machine.netns, &[22, 2222, 2223]);
    // The new policy moves SSH from 22 to 2223.
    let moved = POLICY.replace("port = 22\n", "port = 2223\n");
    fs::write(state.etc_iptables().join("base.toml"), &moved).unwrap();
    let session = format!("SSH_CONNECTION={CLIENT_V4} 50022 {MACHINE_V4} 22");
    let (_, warned) = expect_code(&machine, &["env", &session, "iptables-ctl", "check"], 0);
    assert!(
        warned.contains(CLIENT_V4) && warned.contains("port 22"),
        "{warned}"
    );
    let live = (
        machine.save("iptables-save"),
        machine.save("ip6tables-save"),
    );
    let files = tree(&state.etc_iptables());
    let (_, refused) = expect_code(&machine, &["env", &session, "iptables-ctl", "reload"], 1);
    assert!(
        refused.contains(CLIENT_V4)
            && refused.contains("port 22")
            && refused.contains("--force")
            && refused.contains("the live rules were left as they are"),
        "{refused}"
    );
    assert_eq!(
        (
            machine.save("iptables-save"),
            machine.save("ip6tables-save")
        ),
        live
    );
    assert_eq!(tree(&state.etc_iptables()), files);
    assert_eq!(probe(&machine.client, None, MACHINE_V4, 22), Outcome::Open);

    // Without SSH_CONNECTION (as under sudo), an established connection to sshd's port
    // is a session too.
    let connection = machine
        .client
        .enter(|| TcpStream::connect((MACHINE_V4, 22)).unwrap());
    let (_, refused) = expect_code(&machine, &["iptables-ctl", "reload"], 1);
    assert!(
        refused.contains(CLIENT_V4) && refused.contains("port 22"),
        "{refused}"
    );
    drop(connection);

    expect_code(
        &machine,
        &["env", &session, "iptables-ctl", "reload", "--force"],
        0,
    );
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 22),
        Outcome::Refused
    );
    assert_eq!(
        probe(&machine.client, None, MACHINE_V4, 2223),
        Outcome::Open
    );

    // start refuses the same way (the files on disk would lock the session out)...
    expect_code(&machine, &["iptables-ctl", "stop"], 0);
    let (_, refused) = expect_code(&machine, &["env", &session, "iptables-ctl", "start"], 1);
    assert!(
        refused.contains("refusing to start") && refused.contains("port 22"),
        "{refused}"
    );
    assert_eq!(
        machine.bus().unit_status(RULES_UNIT).unwrap().active_state,
        "inactive"
    );
    expect_code(
        &machine,
        &["env", &session, "iptables-ctl", "start", "--force"],
        0,
    );
    // ...and so does install, before it writes anything.
    expect_code(&machine, &["iptables-ctl", "uninstall"], 0);
    let files = tree(&state.etc_iptables());
    let (_, refused) = expect_code(&machine, &["env", &session, "iptables-ctl", "install"], 1);
    assert!(
        refused.contains("refusing to install") && refused.contains("port 22"),
        "{refused}"
    );
    assert_eq!(tree(&state.etc_iptables()), files);
    assert!(!state.etc_systemd().join("iptables@.service").exists());
    machine.poweroff();
}

#[test]
fn hints_name_reload_and_status_notices_an_unapplied_policy() {
    if !boot_enabled("hints_name_reload_and_status_notices_an_unapplied_policy") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = Machine::boot(&state);
    let (text, _) = expect_code(&machine, &["iptables-ctl", "init"], 0);
    assert!(
        text.contains("iptables-ctl install"),
        "not installed yet: {text}"
    );
    let starter = fs::read_to_string(state.etc_iptables().join("base.toml")).unwrap();
    assert!(
        starter
            .lines()
            .next()
            .unwrap()
            .contains("iptables-ctl reload"),
        "{starter}"
    );
    expect_code(&machine, &["iptables-ctl", "install"], 0);
    let rules = fs::read_to_string(state.etc_iptables().join("base.rules")).unwrap();
    assert!(
        rules.contains("then run `iptables-ctl reload base`"),
        "{rules}"
    );
    assert!(!rules.contains("iptables-ctl render"), "{rules}");
    let (text, _) = expect_code(&machine, &["iptables-ctl", "init", "--force"], 0);
    assert!(
        text.contains("`iptables-ctl reload base`"),
        "installed: {text}"
    );
    let (text, _) = expect_code(&machine, &["iptables-ctl", "init", "other"], 0);
    assert!(
        text.contains("only one instance can be") && !text.contains("install other"),
        "{text}"
    );

    // An edit not yet applied: status says so, and render says what it did not do.
    fs::write(
        state.etc_iptables().join("base.toml"),
        format!("{starter}\n[[host.services]]\nport = 2223\n"),
    )
    .unwrap();
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 5);
    assert!(
        text.contains("policy changed since it was applied: run `iptables-ctl reload`"),
        "{text}"
    );
    let (text, _) = expect_code(&machine, &["iptables-ctl", "render"], 0);
    assert!(text.contains("iptables-ctl reload"), "{text}");
    machine.poweroff();
}

#[test]
fn status_and_the_commands_say_what_is_true() {
    if !boot_enabled("status_and_the_commands_say_what_is_true") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    // reload with nothing changed does not claim new rules.
    let (text, _) = expect_code(&machine, &["iptables-ctl", "reload"], 0);
    assert!(!text.contains("the new rules are in force"), "{text}");
    assert!(text.contains("unchanged"), "{text}");
    // One word for the backend, in text and JSON.
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 0);
    assert!(text.contains("backend: nf_tables"), "{text}");
    let (_, report) = status_json(&machine);
    assert_eq!(report["live"]["backend"], "nf_tables");
    // A stopped unit: one line, no list of every missing rule.
    expect_code(&machine, &["iptables-ctl", "stop"], 0);
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 3);
    assert!(
        text.contains("stopped: pass-through rules loaded"),
        "{text}"
    );
    assert!(!text.contains("missing:"), "{text}");
    expect_code(&machine, &["iptables-ctl", "start"], 0);
    // Never installed.
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status", "web"], 4);
    assert!(text.contains("not installed"), "{text}");
    // Not root: what status needs, not what it does not do.
    let (_, err) = expect_code(
        &machine,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "iptables-ctl",
            "status",
        ],
        1,
    );
    assert!(!err.contains("changes system services"), "{err}");
    assert!(err.contains("root"), "{err}");
    // explain refuses an interface the host does not have, naming those it has.
    let (_, err) = expect_code(
        &machine,
        &[
            "iptables-ctl",
            "explain",
            "--from",
            CLIENT_V4,
            "--to",
            &format!("{MACHINE_V4}:22"),
            "--in",
            "eth7",
        ],
        1,
    );
    assert!(err.contains("eth7") && err.contains("eth0"), "{err}");
    // A refusal says the live rules were left alone.
    fs::write(
        state.etc_iptables().join("base.toml"),
        format!("{POLICY}\n[[host.services]]\nport = 70000\n"),
    )
    .unwrap();
    let (_, err) = expect_code(&machine, &["iptables-ctl", "reload"], 1);
    assert!(
        err.contains("the live rules were left as they are"),
        "{err}"
    );
    machine.poweroff();
}

#[test]
fn every_outcome_has_its_own_exit_code() {
    if !boot_enabled("every_outcome_has_its_own_exit_code") {
        return;
    }
    let state = MachineState::new(&image());
    let machine = installed(&state, POLICY);
    docker_with_web(&machine, None);
    expect_code(&machine, &["iptables-ctl", "status"], 0);
    expect_code(&machine, &["iptables-ctl", "audit"], 0);
    // status could not run: 1.
    expect_code(
        &machine,
        &[
            "env",
            "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent",
            "iptables-ctl",
            "status",
        ],
        1,
    );
    // drift: 5.
    machine.exec_ok(&[
        "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "5555", "-j", "ACCEPT",
    ]);
    expect_code(&machine, &["iptables-ctl", "status"], 5);
    machine.exec_ok(&[
        "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "5555", "-j", "ACCEPT",
    ]);
    // audit could not run: 1; audit flagged: 6.
    fs::write(state.etc_iptables().join("base.toml"), "[docker\n").unwrap();
    expect_code(&machine, &["iptables-ctl", "audit"], 1);
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    machine.exec_ok(&["iptables", "-I", "DOCKER-USER", "-j", "RETURN"]);
    expect_code(&machine, &["iptables-ctl", "audit"], 6);
    machine.poweroff();
}

#[test]
fn the_image_builds_from_the_machines_own_apt_sources() {
    let script = fs::read_to_string("tests/nspawn/build-image").unwrap();
    let addresses: Vec<&str> = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("://"))
        .collect();
    assert!(
        addresses.is_empty(),
        "a mirror's address in the script: {addresses:?}"
    );
    assert!(script.contains("/etc/apt/sources.list.d/"), "{script}");
}

#[test]
fn a_bridge_pattern_that_matches_the_uplink_is_reported() {
    if !boot_enabled("a_bridge_pattern_that_matches_the_uplink_is_reported") {
        return;
    }
    let state = MachineState::new(&image());
    let policy = POLICY.replace(
        "external = \"eth0\"\n",
        "external = \"eth0\"\ndocker_bridges = [\"docker0\", \"eth+\"]\n",
    );
    fs::write(state.etc_iptables().join("base.toml"), &policy).unwrap();
    let machine = Machine::boot(&state);
    let (_, warned) = expect_code(&machine, &["iptables-ctl", "check"], 0);
    assert!(
        warned.contains("interfaces.docker_bridges[1]: eth+ matches eth0"),
        "{warned}"
    );
    expect_code(&machine, &["iptables-ctl", "install"], 5);
    let (text, _) = expect_code(&machine, &["iptables-ctl", "status"], 5);
    assert!(text.contains("eth+ matches eth0"), "{text}");
    machine.poweroff();
}
