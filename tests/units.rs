//! The systemd units as shipped: `systemd-analyze verify` has nothing to say about them,
//! and the properties the firewall depends on hold in the files themselves (the behaviour
//! on a booted systemd is proven separately, in tests/fail_closed.rs among others).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

use std::process::Command;

fn unit(name: &str) -> String {
    std::fs::read_to_string(format!("units/{name}")).expect("unit file")
}

/// Lines `Key=value` of a unit file, comments and section headers left out.
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains('='))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn values(text: &str, key: &str) -> Vec<String> {
    settings(text)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn systemd_analyze_verify_reports_nothing() {
    // The units run `iptables-ctl` from systemd's own search path (/usr/sbin for the
    // package, /usr/local/bin for `cargo install`); verify resolves it the same way, so
    // here it is pointed at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = env!("CARGO_BIN_EXE_iptables-ctl");
    for entry in std::fs::read_dir("units").expect("units") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path)
            .expect("unit")
            .replace("=iptables-ctl ", &format!("={binary} "));
        std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("copy");
    }
    let instances = [
        "iptables.service",
        "iptables@base.service",
        "iptables-docker@base.service",
    ];
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(instances.iter().map(|u| dir.path().join(u)))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        out.status
    );
}

#[test]
fn rules_load_before_the_network_and_fail_loudly() {
    let text = unit("iptables@.service");
    assert_eq!(values(&text, "DefaultDependencies"), ["no"]);
    assert!(
        values(&text, "Before")
            .iter()
            .any(|v| v.split(' ').any(|u| u == "network-pre.target"))
    );
    assert!(
        values(&text, "Wants")
            .iter()
            .any(|v| v == "network-pre.target")
    );
    assert!(
        !settings(&text)
            .iter()
            .any(|(k, _)| k.starts_with("Condition")),
        "a Condition would skip the unit silently and leave the host open"
    );
    assert_eq!(values(&text, "DefaultInstance"), ["base"]);
}

#[test]
fn every_load_is_the_sets_then_a_no_flush_restore_of_the_instance_files_then_the_forward_jump_then_the_pruning()
 {
    for name in ["iptables@.service", "iptables-docker@.service"] {
        let text = unit(name);
        for key in ["ExecStart", "ExecReload", "ExecStop"] {
            let mut commands = values(&text, key);
            if commands.is_empty() {
                // The re-assertion unit has no reload, and no stop (see below).
                assert_eq!(name, "iptables-docker@.service", "{key}");
                continue;
            }
            if key != "ExecStop" {
                // Every load starts with the sets its rules match (the re-assertion
                // after Docker may load files rendered since the instance's last load).
                assert_eq!(
                    commands.first().map(String::as_str),
                    Some("iptables-ctl load-sets %i"),
                    "{name} {key}"
                );
                commands.remove(0);
            }
            if key != "ExecStop" {
                // Every load ends by putting FORWARD's jump to DOCKER-USER first, then
                // destroying the sets the files no longer define: a clean-up whose
                // failure never fails the load ("-").
                assert_eq!(
                    commands.pop().as_deref(),
                    Some("-iptables-ctl prune-sets %i"),
                    "{name} {key}"
                );
                assert_eq!(
                    commands.pop().as_deref(),
                    Some("iptables-ctl forward-jump %i"),
                    "{name} {key}"
                );
            }
            assert_eq!(commands.len(), 2, "{name} {key}: both families");
            for command in commands {
                let words: Vec<&str> = command.split_whitespace().collect();
                assert!(
                    matches!(
                        words.first(),
                        Some(&"/usr/sbin/iptables-restore" | &"/usr/sbin/ip6tables-restore")
                    ),
                    "{name} {key}: {command}"
                );
                assert!(
                    words.contains(&"-n") && words.contains(&"-w"),
                    "{name} {key} must be -w -n: {command}"
                );
                assert!(
                    words
                        .last()
                        .is_some_and(|f| f.starts_with("/etc/iptables/%i.rules")),
                    "{name} {key}: {command}"
                );
            }
        }
    }
    let stop = values(&unit("iptables@.service"), "ExecStop");
    assert!(
        stop.iter().all(|c| c.ends_with(".empty")),
        "stop loads the pass-through files: {stop:?}"
    );
}

#[test]
fn docker_reassertion_follows_docker_and_never_removes_rules() {
    let text = unit("iptables-docker@.service");
    assert!(
        values(&text, "After")
            .iter()
            .any(|v| v.split(' ').any(|u| u == "docker.service"))
    );
    assert_eq!(
        values(&text, "PartOf"),
        ["docker.service iptables@%i.service"],
        "a Docker restart must re-run it, and stopping the firewall stops it"
    );
    // Hooked into Docker by `install` (systemctl add-wants docker.service ...), not by
    // an [Install] section: lintian flags WantedBy=docker.service as an unusual target.
    assert!(
        !text.lines().any(|l| l.trim() == "[Install]"),
        "no [Install] section"
    );
    assert_eq!(
        iptables_ctl::systemd::units::shipped_unit("iptables-docker@base.service")
            .map(|u| u.hooked_into),
        Some(&["docker.service"][..])
    );
    // It never pulls the firewall in (stopped means stopped): it runs only while the
    // instance and Docker are active, and is skipped otherwise.
    for key in ["Requires", "Wants", "BindsTo"] {
        assert!(values(&text, key).is_empty(), "{key}");
    }
    assert_eq!(
        values(&text, "ExecCondition"),
        [
            "systemctl is-active --quiet iptables@%i.service",
            "systemctl is-active --quiet docker.service"
        ]
    );
    // Starting the rules starts the re-assertion.
    assert!(
        values(&unit("iptables@.service"), "Wants")
            .iter()
            .any(|v| v == "iptables-docker@%i.service")
    );
    assert!(
        values(&text, "ExecStop").is_empty(),
        "stopping Docker must leave the rules in place"
    );
    // The early unit must not be ordered after Docker: that would be an ordering cycle.
    let early = unit("iptables@.service");
    assert!(!values(&early, "After").iter().any(|v| v.contains("docker")));
}

#[test]
fn no_start_limit_can_skip_a_load() {
    for name in [
        "iptables.service",
        "iptables@.service",
        "iptables-docker@.service",
        "iptables-rollback@.service",
    ] {
        assert_eq!(
            values(&unit(name), "StartLimitIntervalSec"),
            ["0"],
            "{name}"
        );
    }
}

#[test]
fn the_umbrella_acts_on_every_enabled_instance_and_waits() {
    let text = unit("iptables.service");
    for (key, action) in [
        ("ExecStart", "start"),
        ("ExecReload", "reload"),
        ("ExecStop", "stop"),
    ] {
        assert_eq!(
            values(&text, key),
            [format!("iptables-ctl umbrella {action}")],
            "{key}"
        );
    }
    // No ordering between the umbrella and the instances: its jobs wait for theirs.
    let instance = unit("iptables@.service");
    assert!(
        !values(&instance, "Before")
            .iter()
            .any(|v| v.contains("iptables.service"))
    );
    assert!(
        !values(&instance, "After")
            .iter()
            .any(|v| v.contains("iptables.service"))
    );
    assert!(values(&instance, "PartOf").is_empty());
    // Enabling an instance links it into multi-user.target's wants, where the umbrella
    // finds it (a WantedBy= naming the umbrella, a service, is one lintian flags).
    assert_eq!(values(&instance, "WantedBy"), ["multi-user.target"]);
}

/// The rollback of an unconfirmed apply: started only by the transient timer `apply`
/// arms (never enabled, so no [Install]), once, and it runs the tool's own rollback.
#[test]
fn the_rollback_unit_is_a_oneshot_the_timer_starts() {
    let text = unit("iptables-rollback@.service");
    assert_eq!(values(&text, "Type"), ["oneshot"]);
    assert_eq!(
        values(&text, "ExecStart"),
        ["iptables-ctl rollback-pending %i"]
    );
    assert!(
        !text.lines().any(|l| l.trim() == "[Install]"),
        "no [Install] section"
    );
    assert!(
        values(&text, "RemainAfterExit").is_empty(),
        "each firing runs it again"
    );
}
