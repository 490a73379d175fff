//! Every lint of the registry, triggered for real and silent on a correct setup: a
//! booted systemd 252 in systemd-nspawn with iptables-ctl installed, the real dockerd
//! it starts publishing 8080 and 9090 (IPv6 through docker-proxy, as Docker's default
//! setup does), and each mistake made as an admin makes it (a policy file, a rule
//! inserted by hand, a Docker network, the other iptables variant).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;

use common::docker::{POLICY, diagnostics, restart_docker, run_httpd, start_docker_with_busybox};
use common::nspawn::{Machine, MachineState, image, systemd_tests_enabled};
use common::{stderr, stdout};

/// The lint names in a `check --json` outcome (its `lint` events) or a `status --json`
/// report (its `lints`), in order.
fn lint_names(json: &serde_json::Value) -> Vec<String> {
    let findings: Vec<&serde_json::Value> = match json.get("lints") {
        Some(lints) => lints.as_array().unwrap().iter().collect(),
        None => json["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "lint")
            .map(|e| &e["finding"])
            .collect(),
    };
    findings
        .iter()
        .map(|f| f["lint"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs `argv` (ending with `--json`) in the machine: its exit code and document.
fn json_of(machine: &Machine<'_>, argv: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = machine.exec(argv);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{argv:?}: {e}\n{}{}\n{}",
            stdout(&out),
            stderr(&out),
            diagnostics(machine)
        )
    });
    (out.status.code(), value)
}

/// What `check` finds in `policy` (written to /etc/iptables/lint.toml): the lint names,
/// and the document.
fn check(
    state: &MachineState,
    machine: &Machine<'_>,
    policy: &str,
) -> (Vec<String>, serde_json::Value) {
    fs::write(state.etc_iptables().join("lint.toml"), policy).unwrap();
    let (code, value) = json_of(
        machine,
        &[
            "iptables-ctl",
            "--config",
            "/etc/iptables/lint.toml",
            "check",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{value:#}");
    (lint_names(&value), value)
}

/// `status --json` (skipping `skip`) must exit with `code` and find exactly `lints`, in
/// the registry's order; returns the report.
fn expect_status(
    machine: &Machine<'_>,
    skip: &[&str],
    code: i32,
    lints: &[&str],
) -> serde_json::Value {
    let mut argv = vec!["iptables-ctl", "status", "--json"];
    for lint in skip {
        argv.extend(["--skip", lint]);
    }
    let (exit, report) = json_of(machine, &argv);
    assert_eq!(
        (exit, lint_names(&report)),
        (Some(code), lints.iter().map(|l| (*l).to_owned()).collect()),
        "{report:#}"
    );
    report
}

/// The finding of `lint` in `json` (as [`lint_names`] reads it), as text.
fn finding(json: &serde_json::Value, lint: &str) -> String {
    let all = json.get("lints").cloned().unwrap_or_else(|| {
        serde_json::Value::Array(
            json["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["event"] == "lint")
                .map(|e| e["finding"].clone())
                .collect(),
        )
    });
    let found = all
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["lint"] == lint)
        .unwrap_or_else(|| panic!("no {lint} in {json:#}"));
    format!(
        "{} | why: {} | fix: {} | {}",
        found["message"], found["why"], found["fix"], found["severity"]
    )
}

fn policy_with(extra: &str) -> String {
    format!("{POLICY}\n{extra}")
}

#[test]
fn each_lint_fires_on_the_mistake_it_names_and_is_silent_on_a_correct_setup() {
    if !systemd_tests_enabled("each_lint_fires_on_the_mistake_it_names") {
        return;
    }
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    let machine = Machine::boot(&state);
    let out = machine.exec(&["iptables-ctl", "install"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    start_docker_with_busybox(&machine, None);
    run_httpd(&machine, "web", &["-p", "8080:80", "-p", "9090:80"]);

    // The registry lists every lint with its severity; errors cannot be skipped.
    let (code, listing) = json_of(&machine, &["iptables-ctl", "lints", "--json"]);
    assert_eq!(code, Some(0));
    let listed: Vec<&str> = listing["lints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 10, "{listing:#}");

    // A correct setup: nothing to say, in force.
    expect_status(&machine, &[], 0, &[]);
    let (names, outcome) = check(&state, &machine, POLICY);
    assert!(names.is_empty(), "{outcome:#}");

    // published-port-in-input: a host service, and an input raw rule, on 9090.
    let (names, outcome) = check(
        &state,
        &machine,
        &policy_with(
            "[[host.services]]\nport = 9090\ncomment = \"meant for the container\"\n\n[[raw]]\nchain = \"input\"\nrule = \"-p tcp --dport 9090 -s 10.99.0.3 -j ACCEPT\"\nfamily = \"ipv4\"\n",
        ),
    );
    assert_eq!(names, ["published-port-in-input"; 2], "{outcome:#}");
    let text = finding(&outcome, "published-port-in-input");
    assert!(
        text.contains("lint.toml:")
            && text.contains("host.services[2].port")
            && text.contains("9090/tcp (IPv4, DNAT to 172.17.0.2:80)")
            && text.contains("decides nothing")
            && text.contains("warning"),
        "{text}"
    );

    // dport-in-docker-user: a docker-user raw rule on the host port Docker maps to 80.
    let (names, outcome) = check(
        &state,
        &machine,
        &policy_with("[[raw]]\nchain = \"docker-user\"\nrule = \"-p tcp --dport 9090 -j DROP\"\n"),
    );
    assert_eq!(names, ["dport-in-docker-user"], "{outcome:#}");
    let text = finding(&outcome, "dport-in-docker-user");
    assert!(
        text.contains("raw[0].rule") && text.contains("--ctorigdstport 9090"),
        "{text}"
    );

    // missing-interface: a misspelt uplink.
    let (names, outcome) = check(
        &state,
        &machine,
        &POLICY.replace("external = \"eth0\"", "external = \"eht0\""),
    );
    assert_eq!(names, ["missing-interface"], "{outcome:#}");
    assert!(finding(&outcome, "missing-interface").contains("eht0 does not exist on this host"));

    // bridge-pattern-matches-uplink: a docker_bridges pattern that takes eth0 too.
    let (names, outcome) = check(
        &state,
        &machine,
        &POLICY.replace(
            "external = \"eth0\"",
            "external = \"eth0\"\ndocker_bridges = [\"docker0\", \"br-+\", \"eth+\"]",
        ),
    );
    assert_eq!(names, ["bridge-pattern-matches-uplink"], "{outcome:#}");

    // ipv6-published-without-ipv6-sources: docker-proxy serves 8080 on IPv6, and the
    // entry lists only an IPv4 client; saying family = "ipv4" makes it deliberate.
    let v4_only = POLICY.replace(
        "from = [\"10.99.0.3\", \"fd99::3\"]",
        "from = [\"10.99.0.3\"]",
    );
    let (names, outcome) = check(&state, &machine, &v4_only);
    assert_eq!(
        names,
        ["ipv6-published-without-ipv6-sources"],
        "{outcome:#}"
    );
    let text = finding(&outcome, "ipv6-published-without-ipv6-sources");
    assert!(
        text.contains("docker.published[0].from")
            && text.contains("docker-proxy")
            && text.contains("every IPv6 client is refused"),
        "{text}"
    );
    let (names, outcome) = check(
        &state,
        &machine,
        &v4_only.replace(
            "from = [\"10.99.0.3\"]",
            "from = [\"10.99.0.3\"]\nfamily = \"ipv4\"",
        ),
    );
    assert!(names.is_empty(), "{outcome:#}");

    // drift and published-port-in-input: an INPUT rule inserted by hand on 8080.
    let by_hand = ["INPUT", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"];
    machine.exec_ok(&[&["iptables", "-I"][..], &by_hand].concat());
    let report = expect_status(&machine, &[], 5, &["published-port-in-input", "drift"]);
    assert!(
        finding(&report, "drift")
            .contains("unexpected: `-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT`"),
        "{report:#}"
    );
    machine.exec_ok(&[&["iptables", "-D"][..], &by_hand].concat());

    // dport-in-docker-user (live) and drift: a DOCKER-USER rule inserted by hand.
    let by_hand = ["DOCKER-USER", "-p", "tcp", "--dport", "9090", "-j", "DROP"];
    machine.exec_ok(&[&["iptables", "-I"][..], &by_hand].concat());
    expect_status(&machine, &[], 5, &["dport-in-docker-user", "drift"]);
    machine.exec_ok(&[&["iptables", "-D"][..], &by_hand].concat());

    // forward-not-first: an ACCEPT put before the jump to DOCKER-USER.
    machine.exec_ok(&["iptables", "-I", "FORWARD", "-j", "ACCEPT"]);
    expect_status(&machine, &[], 5, &["forward-not-first"]);
    machine.exec_ok(&["iptables", "-D", "FORWARD", "-j", "ACCEPT"]);

    // bridge-outside-docker-bridges: a Docker network with a bridge of its own name.
    machine.exec_ok(&[
        "docker",
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=legacy0",
        "legacy",
    ]);
    expect_status(&machine, &[], 5, &["bridge-outside-docker-bridges"]);
    machine.exec_ok(&["docker", "network", "rm", "legacy"]);
    expect_status(&machine, &[], 0, &[]);

    // rules-in-other-variant: a warning, so still in force; it can be skipped, by
    // --skip or by the policy, and an error cannot.
    machine.exec_ok(&[
        "iptables-legacy",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "9",
        "-j",
        "DROP",
    ]);
    let report = expect_status(&machine, &[], 0, &["rules-in-other-variant"]);
    assert!(
        finding(&report, "rules-in-other-variant")
            .contains("-t filter -A INPUT -p tcp -m tcp --dport 9 -j DROP"),
        "{report:#}"
    );
    let report = expect_status(&machine, &["rules-in-other-variant"], 0, &[]);
    assert_eq!(
        report["skipped_lints"],
        serde_json::json!(["rules-in-other-variant"])
    );
    let (names, outcome) = check(
        &state,
        &machine,
        &policy_with("[lints]\nskip = [\"rules-in-other-variant\"]\n"),
    );
    assert!(names.is_empty(), "{outcome:#}");
    let out = machine.exec(&["iptables-ctl", "status", "--skip", "drift"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lint drift cannot be skipped"),
        "{}",
        stderr(&out)
    );
    machine.exec_ok(&["iptables-legacy", "-F", "INPUT"]);

    machine.poweroff();
}

/// Sets `iptables` and `ip6tables` to `variant` (`legacy` or `nft`), as an admin does.
fn alternatives(machine: &Machine<'_>, variant: &str) {
    for program in ["iptables", "ip6tables"] {
        machine.exec_ok(&[
            "update-alternatives",
            "--set",
            program,
            &format!("/usr/sbin/{program}-{variant}"),
        ]);
    }
}

/// Docker started while iptables was the legacy one, then iptables switched to
/// nf_tables without restarting Docker: the rules load where Docker's FORWARD jump never
/// goes (an error). Restarting Docker, as the lint says, clears it; Docker's chains left
/// in the legacy tables are then a warning, and the rules are in force.
#[test]
fn the_variant_lints_follow_the_variant_docker_uses() {
    if !systemd_tests_enabled("the_variant_lints_follow_the_variant_docker_uses") {
        return;
    }
    let state = MachineState::new(&image());
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    let machine = Machine::boot(&state);
    alternatives(&machine, "legacy");
    start_docker_with_busybox(&machine, None);
    alternatives(&machine, "nft");
    let out = machine.exec(&["iptables-ctl", "install", "--force"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report = expect_status(&machine, &[], 5, &["iptables-variant-mismatch"]);
    assert!(
        finding(&report, "iptables-variant-mismatch")
            .contains("Docker's chains are in the legacy tables"),
        "{report:#}"
    );
    let (names, outcome) = check(&state, &machine, POLICY);
    assert_eq!(names, ["iptables-variant-mismatch"], "{outcome:#}");

    restart_docker(&machine);
    common::docker::wait_for_reassertion(&machine);
    let report = expect_status(&machine, &[], 0, &["rules-in-other-variant"]);
    assert!(
        finding(&report, "rules-in-other-variant")
            .contains("-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"),
        "{report:#}"
    );
    machine.poweroff();
}
