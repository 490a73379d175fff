//! The commands as an admin runs them, on a staged tree (`--root`): init, check, render,
//! their refusals, and that a second run changes nothing.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::kernel_tests_enabled;

fn ctl(root: &Path) -> Command {
    let mut cmd = Command::cargo_bin("iptables-ctl").expect("binary");
    cmd.arg("--root").arg(root).env_remove("SSH_CONNECTION");
    cmd
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn init_writes_a_starter_policy_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = ctl(root.path())
        .arg("init")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("ssh (tcp 22) from anywhere"), "{out}");
    let policy = root.path().join("etc/iptables/base.toml");
    let first = std::fs::read(&policy).expect("policy written");

    let refused = ctl(root.path())
        .arg("init")
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8_lossy(&refused).contains("already exists"));
    assert_eq!(
        std::fs::read(&policy).expect("policy"),
        first,
        "a refused init must not change the policy"
    );

    std::fs::write(&policy, "# mine\n").expect("edit");
    ctl(root.path())
        .args(["init", "--force"])
        .assert()
        .success();
    assert_eq!(std::fs::read(&policy).expect("policy"), first);

    let printed = ctl(root.path())
        .args(["init", "other", "--stdout"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&printed).contains("[[host.services]]"));
    assert!(
        !root.path().join("etc/iptables/other.toml").exists(),
        "--stdout must not write"
    );
}

#[test]
fn check_then_render_then_render_again() {
    if !kernel_tests_enabled("check_then_render_then_render_again") {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("etc/iptables");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy("tests/policies/named-lists.toml", dir.join("base.toml")).expect("policy");

    let checked = ctl(root.path())
        .arg("check")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let checked = String::from_utf8_lossy(&checked);
    assert!(
        checked.contains("base.rules: ") && checked.contains("base.rules6: "),
        "{checked}"
    );
    assert!(
        checked.contains("a second load changed nothing"),
        "{checked}"
    );
    assert_eq!(listing(&dir), ["base.toml"], "check must write nothing");

    let printed = ctl(root.path())
        .args(["render", "--stdout"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&printed).contains("--ctorigdstport 3000"));
    assert_eq!(
        listing(&dir),
        ["base.toml"],
        "render --stdout must write nothing"
    );

    let rendered = ctl(root.path())
        .arg("render")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8_lossy(&rendered).matches("wrote ").count(),
        4
    );
    assert_eq!(
        listing(&dir),
        [
            "base.rules",
            "base.rules.empty",
            "base.rules6",
            "base.rules6.empty",
            "base.toml"
        ]
    );
    let again = ctl(root.path())
        .arg("render")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8_lossy(&again)
            .matches("unchanged ")
            .count(),
        4
    );

    // --config reads another policy but writes the instance's files in the same place.
    let elsewhere = root.path().join("web.toml");
    std::fs::copy("tests/policies/web-server.toml", &elsewhere).expect("policy");
    ctl(root.path())
        .arg("--config")
        .arg(&elsewhere)
        .arg("render")
        .assert()
        .success();
    let rules = std::fs::read_to_string(dir.join("base.rules")).expect("rules");
    assert!(
        rules.contains("web.toml") && rules.contains("--ctorigdstport 443"),
        "{rules}"
    );
}

#[test]
fn render_refuses_while_another_run_holds_the_lock() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("etc/iptables");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy("tests/policies/minimal.toml", dir.join("base.toml")).expect("policy");
    let _held = iptables_ctl::files::DirLock::acquire(&dir).expect("lock");
    let err = ctl(root.path())
        .args(["render", "--no-kernel-check"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8_lossy(&err).contains("locked by another iptables-ctl run"));
    assert_eq!(listing(&dir), ["base.toml"]);
}
