//! The commands as an admin runs them, on a staged tree (`--root`): init, check, render,
//! their refusals, and that a second run changes nothing.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::path::Path;

use common::kernel_tests_enabled;

/// Runs `iptables-ctl --root ROOT ARGS...`, which must succeed; returns stdout.
fn succeed(root: &Path, args: &[&str]) -> String {
    let out = command(root, args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `iptables-ctl --root ROOT ARGS...`, which must fail; returns stderr.
fn fail(root: &Path, args: &[&str]) -> String {
    let out = command(root, args)
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    String::from_utf8_lossy(&out).into_owned()
}

fn command(root: &Path, args: &[&str]) -> assert_cmd::Command {
    common::staged_command(root, args)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A staged root holding `policy` as the base instance's policy.
fn staged(policy: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("etc/iptables");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(policy, dir.join("base.toml")).expect("policy");
    (root, dir)
}

#[test]
fn init_writes_a_starter_policy_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = succeed(root.path(), &["init"]);
    assert!(out.contains("ssh (tcp 22) from anywhere"), "{out}");
    let policy = root.path().join("etc/iptables/base.toml");
    let first = std::fs::read(&policy).expect("policy written");

    assert!(fail(root.path(), &["init"]).contains("already exists"));
    let now = std::fs::read(&policy).expect("policy");
    assert_eq!(now, first, "a refused init must not change the policy");

    std::fs::write(&policy, "# mine\n").expect("edit");
    succeed(root.path(), &["init", "--force"]);
    assert_eq!(std::fs::read(&policy).expect("policy"), first);

    let printed = succeed(root.path(), &["init", "other", "--stdout"]);
    assert!(printed.contains("[[host.services]]"));
    let other = root.path().join("etc/iptables/other.toml");
    assert!(!other.exists(), "--stdout must not write");
}

#[test]
fn check_then_render_then_render_again() {
    if !kernel_tests_enabled("check_then_render_then_render_again") {
        return;
    }
    let (root, dir) = staged("tests/policies/named-lists.toml");
    let root = root.path();

    let checked = succeed(root, &["check"]);
    assert!(
        checked.contains("base.rules: ") && checked.contains("base.rules6: "),
        "{checked}"
    );
    assert!(
        checked.contains("a second load changed nothing"),
        "{checked}"
    );
    assert_eq!(listing(&dir), ["base.toml"], "check must write nothing");

    let printed = succeed(root, &["render", "--stdout"]);
    assert!(printed.contains("--ctorigdstport 3000"));
    assert_eq!(
        listing(&dir),
        ["base.toml"],
        "render --stdout must write nothing"
    );

    assert_eq!(succeed(root, &["render"]).matches("wrote ").count(), 6);
    let all = [
        ".base.set",
        "base.rules",
        "base.rules.empty",
        "base.rules6",
        "base.rules6.empty",
        "base.sets",
        "base.sets6",
        "base.toml",
    ];
    assert_eq!(listing(&dir), all);
    assert_eq!(succeed(root, &["render"]).matches("unchanged ").count(), 6);

    // --config reads another policy but writes the instance's files in the same place.
    let elsewhere = root.join("web.toml");
    std::fs::copy("tests/policies/web-server.toml", &elsewhere).expect("policy");
    let elsewhere = elsewhere.to_str().expect("utf-8 path");
    succeed(root, &["--config", elsewhere, "render"]);
    let rules = std::fs::read_to_string(dir.join("base.rules")).expect("rules");
    assert!(
        rules.contains("web.toml") && rules.contains("--ctorigdstport 443"),
        "{rules}"
    );
}

/// A render started while another run holds the lock waits for it, says so, and
/// writes once the other run is done (runs serialize; none fails for meeting another).
#[test]
fn render_waits_while_another_run_holds_the_lock_and_says_so() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let (root, dir) = staged("tests/policies/minimal.toml");
    let held = iptables_ctl::files::DirLock::acquire(&dir).expect("lock");
    let mut render = Command::new(assert_cmd::cargo::cargo_bin("iptables-ctl"))
        .arg("--root")
        .arg(root.path())
        .args(["render", "--no-kernel-check"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(render.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read");
    assert!(line.contains("waiting for the lock on"), "{line}");
    assert_eq!(
        listing(&dir),
        ["base.toml"],
        "nothing is written while it waits"
    );
    drop(held);
    assert!(render.wait().expect("wait").success());
    assert!(
        listing(&dir).contains(&"base.rules".to_owned()),
        "{:?}",
        listing(&dir)
    );
}

/// The live commands need systemd and root; without them they say so and change nothing.
#[test]
fn live_commands_explain_a_missing_systemd_and_a_caller_who_is_not_root() {
    if !kernel_tests_enabled("live_commands_explain_a_missing_systemd_and_a_caller_who_is_not_root")
    {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_iptables-ctl");
    for command in [
        "install",
        "uninstall",
        "start",
        "stop",
        "restart",
        "reload",
        "status",
    ] {
        // No systemd at that address (as on a host not booted with systemd).
        let out = std::process::Command::new(bin)
            .arg(command)
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                "unix:path=/nonexistent/system_bus_socket",
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "cannot reach systemd over D-Bus at unix:path=/nonexistent/system_bus_socket"
            ) && err.contains("--root DIR"),
            "{command}: {err}"
        );
        // Not root.
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                bin,
                command,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("`iptables-ctl {command}` must run as root")),
            "{command}: {err}"
        );
    }
    // audit and explain read the live firewall: root only.
    for args in [
        vec!["audit"],
        vec!["explain", "--from", "192.0.2.1", "--to", "192.0.2.2:80"],
    ] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", bin])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "`iptables-ctl {}` must run as root: it reads the live firewall",
                args[0]
            )),
            "{err}"
        );
    }
    // explain's destination is checked before anything runs.
    let out = std::process::Command::new(bin)
        .args(["explain", "--from", "192.0.2.1", "--to", "192.0.2.2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected ADDR:PORT[/tcp|udp]"));
    // start/stop/reload/status have no offline form.
    let root = tempfile::tempdir().unwrap();
    let err = fail(root.path(), &["start"]);
    assert!(
        err.contains("`start` needs the running systemd; --root only works with"),
        "{err}"
    );
}

/// A list read from a file beside the policy: its networks reach the rules; a bad line
/// is reported with the file, line and list, and nothing is written.
#[test]
fn lists_read_from_files_render_and_a_bad_line_is_located() {
    let (root, dir) = staged("tests/policies/minimal.toml");
    let policy = std::fs::read_to_string(dir.join("base.toml")).expect("policy")
        + "\n[lists]\ncustomers = { file = \"lists/customers.txt\" }\n\n[[docker.published]]\nport = 8443\nfrom = [\"customers\"]\n";
    std::fs::write(dir.join("base.toml"), policy).expect("policy");
    std::fs::create_dir(dir.join("lists")).expect("mkdir");
    let list = dir.join("lists/customers.txt");
    std::fs::write(
        &list,
        "# customers\n192.0.2.0/24\n198.51.100.7 # one host\n192.0.2.300\n",
    )
    .expect("list");
    let err = fail(root.path(), &["render", "--no-kernel-check"]);
    assert!(
        err.contains("lists/customers.txt:4:1") && err.contains("lists.customers"),
        "{err}"
    );
    assert_eq!(listing(&dir), ["base.toml", "lists"], "nothing was written");

    std::fs::write(
        &list,
        "# customers\n192.0.2.0/24\n198.51.100.7 # one host\n",
    )
    .expect("list");
    succeed(root.path(), &["render", "--no-kernel-check"]);
    let rules = std::fs::read_to_string(dir.join("base.rules")).expect("rules");
    for source in ["-s 192.0.2.0/24", "-s 198.51.100.7/32"] {
        assert!(
            rules
                .lines()
                .any(|l| l.contains(source) && l.contains("--ctorigdstport 8443")),
            "{source}: {rules}"
        );
    }
}

/// A `[[raw]]` rule matching an ipset is proven with that set made, empty and of the
/// same type, in the throwaway namespace (the kernel needs it to load the rule); a set
/// the host does not have is named in the refusal. Run in a namespace of the test's own,
/// which holds the set.
#[test]
fn raw_rules_matching_an_ipset_are_proven_with_the_hosts_set() {
    if !kernel_tests_enabled("raw_rules_matching_an_ipset_are_proven_with_the_hosts_set") {
        return;
    }
    let ns = common::Netns::new();
    ns.exec_ok(
        "ipset",
        &["restore"],
        b"create office hash:net family inet\nadd office 192.0.2.0/24\n",
    );
    let check = |set: &str| {
        let (root, dir) = staged("tests/policies/minimal.toml");
        let policy = std::fs::read_to_string(dir.join("base.toml")).expect("policy")
            + &format!(
                "\n[[raw]]\nchain = \"input\"\nfamily = \"ipv4\"\nrule = \"-p tcp -m set --match-set {set} src --dport 9100 -j ACCEPT\"\n"
            );
        std::fs::write(dir.join("base.toml"), policy).expect("policy");
        let binary = assert_cmd::cargo::cargo_bin("iptables-ctl");
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(binary)
            .arg("--root")
            .arg(root.path())
            .arg("check")
            .output()
            .expect("iptables-ctl")
    };
    let out = check("office");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = check("nosuchset");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("base.rules matches the ipset nosuchset, which this host does not have"),
        "{err}"
    );
}
