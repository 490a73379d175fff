//! The .deb on a booted Debian 12 (systemd-nspawn, the machine's own systemd and a real
//! dockerd), used the way an admin uses it, with the README's promises checked at every
//! step:
//! - `dpkg -i` refuses next to iptables-persistent, naming the conflict, and changes
//!   nothing;
//! - installed, it enables and starts nothing and leaves the rules as they were;
//! - `man iptables-ctl`, `man iptables-ctl.toml` and bash completion work;
//! - `iptables-ctl install` brings the firewall up, the re-assertion hooked into Docker;
//! - an upgrade to a newer build (the same sources as version 0.1.1-next, which
//!   `packaging/build --version` makes) keeps the rules in force throughout: a prober
//!   connects from outside during the whole `dpkg -i` and sees 0 wrong outcomes, the
//!   instance is neither restarted nor reloaded, and `status` names the older version;
//! - `apt-get remove` is refused while an apply waits for `confirm` (its rollback runs
//!   from the package); once confirmed, it leaves the rules in the kernel and the files
//!   in /etc/iptables;
//!   `apt-get purge` removes the rendered set and the enable links, keeps the policy,
//!   and still leaves the rules in the kernel.
//!
//! The packages are built before the tests (`.ci/run` runs `packaging/build` for both);
//! without them the test fails in CI and is skipped elsewhere.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use common::docker::{
    POLICY, PUBLISHED, assert_probes, diagnostics, mismatches, restart_docker, run_httpd,
    start_docker_with_busybox, start_httpd, wait_for_reassertion,
};
use common::nspawn::{Machine, MachineState, Setup, image, systemd_tests_enabled};
use common::{built_package, stderr, stdout};

const UNITS: [&str; 3] = [
    "iptables.service",
    "iptables@base.service",
    "iptables-docker@base.service",
];

/// Runs `argv` in the machine with apt's and dpkg's non-interactive settings; returns
/// its output whatever its exit status.
fn admin(machine: &Machine<'_>, argv: &[&str]) -> std::process::Output {
    let mut full = vec!["env", "DEBIAN_FRONTEND=noninteractive"];
    full.extend_from_slice(argv);
    machine.exec(&full)
}

/// Like [`admin`]; the command must succeed. Returns stdout.
fn admin_ok(machine: &Machine<'_>, argv: &[&str]) -> String {
    let out = admin(machine, argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Both families' live filter tables (no counters).
fn live(machine: &Machine<'_>) -> (String, String) {
    (
        machine.save("iptables-save"),
        machine.save("ip6tables-save"),
    )
}

/// `systemctl show -p PROPERTY --value UNIT`.
fn property(machine: &Machine<'_>, unit: &str, property: &str) -> String {
    machine
        .exec_ok(&["systemctl", "show", "-p", property, "--value", unit])
        .trim()
        .to_owned()
}

/// The names of everything under the machine's /etc/systemd/system (seen from the
/// host) that names one of our units.
fn our_links(etc_systemd: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![etc_systemd.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            if meta.is_dir() {
                dirs.push(path.clone());
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("iptables") {
                found.push(
                    path.strip_prefix(etc_systemd)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}

/// What bash completes for `iptables-ctl WORD`, through the bash-completion loader as
/// an interactive shell would load it.
fn complete(machine: &Machine<'_>, word: &str) -> Vec<String> {
    let script = format!(
        "source /usr/share/bash-completion/bash_completion && _completion_loader iptables-ctl; \
         COMP_WORDS=(iptables-ctl '{word}'); COMP_CWORD=1; COMP_LINE=\"iptables-ctl {word}\"; \
         COMP_POINT=${{#COMP_LINE}}; \
         function=$(complete -p iptables-ctl | sed -E 's/.* -F ([^ ]+) .*/\\1/'); \
         \"$function\" iptables-ctl '{word}' iptables-ctl; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    machine
        .exec_ok(&["bash", "-c", &script])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_deb_installs_upgrades_and_goes_as_the_readme_says() {
    let test = "the_deb_installs_upgrades_and_goes_as_the_readme_says";
    if !systemd_tests_enabled(test) {
        return;
    }
    let (Some(old), Some(new)) = (
        built_package(test, "target/packages", "deb"),
        built_package(test, "target/packages-next", "deb"),
    ) else {
        return;
    };
    let state = MachineState::new(&image());
    let machine = Machine::boot_with(
        &state,
        &Setup::packages(&[
            (old.parent().unwrap(), "/packages"),
            (new.parent().unwrap(), "/packages-next"),
        ]),
    );
    let old_deb = format!("/packages/{}", old.file_name().unwrap().to_string_lossy());
    let new_deb = format!(
        "/packages-next/{}",
        new.file_name().unwrap().to_string_lossy()
    );
    let rules_before = live(&machine);

    // Next to iptables-persistent (the image has it), dpkg names the conflict and
    // installs nothing.
    let out = admin(&machine, &["dpkg", "-i", &old_deb]);
    assert!(!out.status.success(), "dpkg -i next to iptables-persistent");
    assert!(
        stderr(&out).contains("iptables-ctl conflicts with iptables-persistent"),
        "{}",
        stderr(&out)
    );
    assert!(
        !machine
            .exec(&["test", "-e", "/usr/sbin/iptables-ctl"])
            .status
            .success()
    );
    admin_ok(
        &machine,
        &[
            "apt-get",
            "remove",
            "-y",
            "iptables-persistent",
            "netfilter-persistent",
        ],
    );

    // Installed: nothing enabled, started or loaded.
    let said = admin_ok(&machine, &["dpkg", "-i", &old_deb]);
    assert!(said.contains("nothing was enabled or started"), "{said}");
    for unit in UNITS {
        assert_eq!(
            property(&machine, unit, "ActiveState"),
            "inactive",
            "{unit}"
        );
    }
    assert_eq!(
        property(&machine, "iptables@base.service", "UnitFileState"),
        "disabled"
    );
    assert_eq!(our_links(&state.etc_systemd()), Vec::<String>::new());
    assert_eq!(
        machine
            .exec_ok(&["systemctl", "list-jobs", "--no-legend"])
            .trim(),
        "",
        "no job queued"
    );
    assert_eq!(live(&machine), rules_before, "installing loaded no rules");
    assert_eq!(
        fs::read_dir(state.etc_iptables()).unwrap().count(),
        0,
        "nothing written to /etc/iptables"
    );

    // The manual and the completion, as installed.
    let page = machine.exec_ok(&["sh", "-c", "MANWIDTH=80 man -P cat iptables-ctl"]);
    assert!(page.contains("iptables-ctl-install(8)"), "{page}");
    let format = machine.exec_ok(&["sh", "-c", "MANWIDTH=80 man -P cat iptables-ctl.toml"]);
    assert!(format.contains("docker.published"), "{format}");
    assert_eq!(complete(&machine, "ins"), ["install"]);
    assert!(complete(&machine, "").contains(&"status".to_owned()));

    // A container publishing two ports, then the firewall.
    start_docker_with_busybox(&machine, None);
    run_httpd(&machine, "web", &["-p", "8080:80", "-p", "9090:80"]);
    fs::write(state.etc_iptables().join("base.toml"), POLICY).unwrap();
    let said = machine.exec_ok(&["iptables-ctl", "install"]);
    assert!(said.contains("in force"), "{said}");
    assert!(
        said.contains("/usr/lib/systemd/system"),
        "the package's units are used: {said}"
    );
    // Debian 12's systemd names the package's unit directory /lib (merged with /usr/lib).
    let hook = fs::read_link(
        state
            .etc_systemd()
            .join("docker.service.wants/iptables-docker@base.service"),
    )
    .unwrap();
    assert!(
        ["/lib", "/usr/lib"]
            .iter()
            .any(|dir| hook == Path::new(dir).join("systemd/system/iptables-docker@.service")),
        "the re-assertion is hooked into Docker: {}",
        hook.display()
    );
    assert_probes(&machine, "after install", &PUBLISHED);

    // The upgrade, with a prober connecting from outside all through it.
    let rules_in_force = live(&machine);
    let invocation = property(&machine, "iptables@base.service", "InvocationID");
    let stop = AtomicBool::new(false);
    let seen = Mutex::new((0usize, Vec::new()));
    let upgrade = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let wrong = mismatches(&machine, &PUBLISHED);
                let mut seen = seen.lock().unwrap();
                seen.0 += PUBLISHED.len();
                seen.1.extend(wrong);
            }
        });
        let out = admin(&machine, &["dpkg", "-i", &new_deb]);
        stop.store(true, Ordering::Release);
        out
    });
    assert!(
        upgrade.status.success(),
        "upgrade: {}{}",
        stdout(&upgrade),
        stderr(&upgrade)
    );
    let (probes, wrong) = seen.lock().unwrap().clone();
    eprintln!(
        "upgrade 0.1.0 -> 0.1.1-next: {probes} probes, {} wrong",
        wrong.len()
    );
    assert!(
        probes >= PUBLISHED.len(),
        "the prober ran ({probes} probes)"
    );
    assert!(
        wrong.is_empty(),
        "wrong outcomes during the upgrade (client, port, expected, seen): {wrong:?}\n{}",
        diagnostics(&machine)
    );
    assert!(
        stdout(&upgrade).contains("upgraded from 0.1.0-1; the rules in force were not touched"),
        "{}",
        stdout(&upgrade)
    );
    assert_eq!(
        live(&machine),
        rules_in_force,
        "the upgrade changed no rule"
    );
    assert_eq!(
        property(&machine, "iptables@base.service", "InvocationID"),
        invocation,
        "the instance was not restarted"
    );
    assert!(
        machine
            .exec_ok(&["iptables-ctl", "--version"])
            .contains("0.1.1-next")
    );
    // status: in force, and the files on disk name the version that rendered them.
    let said = machine.exec_ok(&["iptables-ctl", "status"]);
    assert!(
        said.contains("rendered by iptables-ctl 0.1.0 (this is 0.1.1-next)"),
        "{said}"
    );
    machine.exec_ok(&["iptables-ctl", "reload"]);
    let said = machine.exec_ok(&["iptables-ctl", "status"]);
    assert!(!said.contains("rendered by iptables-ctl 0.1.0"), "{said}");
    // The packaged re-assertion still follows Docker.
    restart_docker(&machine);
    wait_for_reassertion(&machine);
    start_httpd(&machine, "web");
    assert_probes(
        &machine,
        "after the upgrade and a Docker restart",
        &PUBLISHED,
    );

    // An apply waiting for confirm holds the removal back: its rollback runs from the
    // package's unit and binary.
    machine.exec_ok(&["iptables-ctl", "apply", "--confirm-within", "10m"]);
    let out = admin(&machine, &["apt-get", "remove", "-y", "iptables-ctl"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    // dpkg passes the maintainer script's words on to apt's output.
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("an apply of base waits for `iptables-ctl confirm base`"),
        "{said}"
    );
    assert!(
        machine
            .exec(&["test", "-x", "/usr/sbin/iptables-ctl"])
            .status
            .success()
    );
    machine.exec_ok(&["iptables-ctl", "confirm"]);

    // remove: the rules stay in the kernel, the files in /etc/iptables.
    let rules_in_force = live(&machine);
    let said = admin_ok(&machine, &["apt-get", "remove", "-y", "iptables-ctl"]);
    assert!(
        said.contains("The firewall rules stay in the kernel until the next reboot"),
        "{said}"
    );
    assert_eq!(live(&machine), rules_in_force, "remove changed no rule");
    assert_probes(&machine, "after apt-get remove", &PUBLISHED);
    for gone in [
        "/usr/sbin/iptables-ctl",
        "/usr/lib/systemd/system/iptables@.service",
    ] {
        assert!(
            !machine.exec(&["test", "-e", gone]).status.success(),
            "{gone}"
        );
    }
    for kept in ["base.toml", "base.rules", "base.rules6", ".base.set"] {
        assert!(state.etc_iptables().join(kept).exists(), "{kept} kept");
    }
    assert!(
        machine
            .exec(&["test", "-e", "/var/lib/iptables-ctl/generations/base/1"])
            .status
            .success(),
        "the generations stay until purge"
    );

    // purge: the rendered set and the enable links go; the policy and the rules stay.
    let said = admin_ok(&machine, &["apt-get", "purge", "-y", "iptables-ctl"]);
    assert!(
        said.contains("purged. The rules in the kernel were left as they are."),
        "{said}"
    );
    let mut left: Vec<String> = fs::read_dir(state.etc_iptables())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["base.toml"], "purge keeps only the policy");
    assert_eq!(
        fs::read_to_string(state.etc_iptables().join("base.toml")).unwrap(),
        POLICY
    );
    assert_eq!(our_links(&state.etc_systemd()), Vec::<String>::new());
    for gone in ["/run/iptables-ctl", "/var/lib/iptables-ctl/generations"] {
        assert!(
            !machine.exec(&["test", "-e", gone]).status.success(),
            "{gone}"
        );
    }
    assert_eq!(live(&machine), rules_in_force, "purge changed no rule");
    assert_probes(&machine, "after apt-get purge", &PUBLISHED);
    machine.poweroff();
}
