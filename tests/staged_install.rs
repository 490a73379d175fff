//! `--root` install into an empty directory produces exactly the expected tree (snapshot).
//!
//! Also proven on staged trees: a second install changes nothing; install with no policy
//! writes the starter policy with `external = "auto"`, whatever routes the staging host
//! has (the tree is for the host it boots on); uninstall removes the unit files and enable
//! links and keeps the policy and rendered files; a netfilter-persistent enable link makes
//! install refuse without touching the tree, and `--force` installs anyway.
//!
//! install runs the kernel check (a throwaway network namespace), so these tests need
//! root. The starter-policy case runs the binary in a fresh network namespace of its own
//! (`unshare --net`) to control which default route it sees; the root namespace's network
//! and firewall are never touched.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use common::kernel_tests_enabled;

/// A small policy.
const POLICY: &str = r#"# Staged by tests/staged_install.rs.
[interfaces]
external = ["eth0"]

[[host.services]]
port = 22
comment = "ssh"
"#;

/// The enable link netfilter-persistent's package makes.
const NETFILTER_PERSISTENT_LINK: &str =
    "etc/systemd/system/multi-user.target.wants/netfilter-persistent.service";

fn command(root: &Path, args: &[&str]) -> assert_cmd::Command {
    common::staged_command(root, args)
}

/// Like [`command`], but the binary runs in a new network namespace made by `unshare`
/// where `setup` (shell commands) runs first.
fn command_in_new_netns(root: &Path, setup: &str, args: &[&str]) -> assert_cmd::Command {
    let script = format!("{setup} exec \"$0\" \"$@\"");
    let mut cmd = assert_cmd::Command::new("unshare");
    cmd.args(["--net", "--", "sh", "-c", &script])
        .arg(assert_cmd::cargo::cargo_bin("iptables-ctl"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SSH_CONNECTION");
    cmd
}

/// An empty staged root, optionally holding [`POLICY`] as the base instance's policy.
fn staged_root(with_policy: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    if with_policy {
        let dir = root.path().join("etc/iptables");
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("base.toml");
        fs::write(&path, POLICY).expect("policy");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    root
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `text` with the staged root's path replaced by `<ROOT>`.
fn redact(text: &str, root: &Path) -> String {
    text.replace(&root.display().to_string(), "<ROOT>")
}

/// Every path under `root`, depth first in name order.
fn walk(root: &Path) -> Vec<PathBuf> {
    fn visit(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            out.push(path.clone());
            if fs::symlink_metadata(&path).expect("stat").is_dir() {
                visit(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, &mut out);
    out
}

/// One line per path under `root`: its type, file mode, symlink target and, with
/// `content`, each file's text (the root's own path redacted). Directory modes are left
/// out: they follow the umask of whoever runs the tests.
fn tree(root: &Path, content: bool) -> String {
    let mut lines = Vec::new();
    for path in walk(root) {
        let rel = path.strip_prefix(root).expect("under root").display();
        let meta = fs::symlink_metadata(&path).expect("stat");
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            lines.push(format!("symlink {rel} -> {}", target.display()));
        } else if kind.is_dir() {
            lines.push(format!("dir     {rel}/"));
        } else if kind.is_file() {
            lines.push(format!("file    {rel} (mode {:o})", meta.mode() & 0o7777));
            if content {
                let body = redact(&fs::read_to_string(&path).expect("read"), root);
                lines.extend(
                    body.lines()
                        .map(|l| format!("    | {l}").trim_end().to_owned()),
                );
            }
        } else {
            lines.push(format!("other   {rel}"));
        }
    }
    lines.join("\n") + "\n"
}

/// [`tree`] with content, plus every entry's inode and modification time: equal
/// fingerprints mean nothing under `root` was written, replaced or removed (a directory's
/// mtime also changes when a temporary file was made and removed in it).
fn fingerprint(root: &Path) -> String {
    let mut text = tree(root, true);
    for path in std::iter::once(root.to_owned()).chain(walk(root)) {
        let meta = fs::symlink_metadata(&path).expect("stat");
        text.push_str(&format!(
            "{} ino {} mtime {}.{:09}\n",
            path.display(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec()
        ));
    }
    text
}

/// The relative paths of the regular files and symlinks under `root`.
fn files_and_links(root: &Path) -> Vec<String> {
    walk(root)
        .into_iter()
        .filter(|p| !fs::symlink_metadata(p).expect("stat").is_dir())
        .map(|p| {
            p.strip_prefix(root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect()
}

/// The files of a complete staged install of instance `base`.
const INSTALLED: [&str; 21] = [
    "etc/iptables/.base.set/current",
    "etc/iptables/.base.set/v1/base.rules",
    "etc/iptables/.base.set/v1/base.rules.empty",
    "etc/iptables/.base.set/v1/base.rules6",
    "etc/iptables/.base.set/v1/base.rules6.empty",
    "etc/iptables/.base.set/v1/base.sets",
    "etc/iptables/.base.set/v1/base.sets6",
    "etc/iptables/base.rules",
    "etc/iptables/base.rules.empty",
    "etc/iptables/base.rules6",
    "etc/iptables/base.rules6.empty",
    "etc/iptables/base.sets",
    "etc/iptables/base.sets6",
    "etc/iptables/base.toml",
    "etc/systemd/system/docker.service.wants/iptables-docker@base.service",
    "etc/systemd/system/iptables-docker@.service",
    "etc/systemd/system/iptables-rollback@.service",
    "etc/systemd/system/iptables.service",
    "etc/systemd/system/iptables@.service",
    "etc/systemd/system/multi-user.target.wants/iptables.service",
    "etc/systemd/system/multi-user.target.wants/iptables@base.service",
];

/// Every symlink under `root` points (as the booted system sees it) at a file that
/// exists in the staged tree: an enable link at a unit file (an absolute path), a rules
/// file's link through its set's `current` version (a relative one, which means the same
/// wherever the tree is).
fn assert_links_resolve_in_tree(root: &Path) {
    for path in walk(root) {
        if let Ok(target) = fs::read_link(&path) {
            let staged = match target.strip_prefix("/") {
                Ok(inner) => root.join(inner),
                Err(_) => path.parent().expect("a parent").join(&target),
            };
            if path.ends_with("current") {
                assert!(
                    staged.is_dir(),
                    "{} -> {}",
                    path.display(),
                    target.display()
                );
                continue;
            }
            assert!(
                staged.is_file(),
                "{} -> {} has no file in the staged tree",
                path.display(),
                target.display()
            );
        }
    }
}

#[test]
fn staged_install_writes_exactly_the_expected_tree() {
    if !kernel_tests_enabled("staged_install_writes_exactly_the_expected_tree") {
        return;
    }
    let root = staged_root(true);
    let r = root.path();
    let out = command(r, &["install"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = redact(&text(&out.stdout), r);
    assert!(
        stdout.contains("created symlink <ROOT>/etc/systemd/system/multi-user.target.wants/iptables@base.service -> /etc/systemd/system/iptables@.service"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("created symlink ").count(), 3, "{stdout}");
    insta::assert_snapshot!("install_stdout", stdout);
    insta::assert_snapshot!("install_tree", tree(r, true));
    assert_eq!(files_and_links(r), INSTALLED);
    assert_links_resolve_in_tree(r);

    // A second run finds everything in place and writes nothing.
    let before = fingerprint(r);
    let out = command(r, &["install"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let again = redact(&text(&out.stdout), r);
    assert!(!again.contains("created symlink"), "{again}");
    assert!(!again.contains("wrote "), "{again}");
    assert_eq!(again.matches("unchanged ").count(), 10, "{again}");
    assert_eq!(
        fingerprint(r),
        before,
        "the second install changed the tree"
    );
}

#[test]
fn a_staged_starter_policy_keeps_auto_whatever_the_staging_host_routes() {
    if !kernel_tests_enabled("a_staged_starter_policy_keeps_auto_whatever_the_staging_host_routes")
    {
        return;
    }
    // Without a default route, and with one on ext0: the starter says "auto" both times
    // (the tree is for the host it boots on), the rendered rules name no interface of the
    // staging host, and the install goes through.
    for setup in [
        "",
        "ip link add ext0 type veth peer name ext1 && ip link set ext0 up && \
         ip link set ext1 up && ip route add default dev ext0 &&",
    ] {
        let root = staged_root(false);
        let r = root.path();
        let out = command_in_new_netns(r, setup, &["install"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let stdout = redact(&text(&out.stdout), r);
        assert!(
            stdout.contains(
                "no policy at <ROOT>/etc/iptables/base.toml yet: installing the starter policy"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains("external interfaces: auto (those of the default routes wherever it runs; none known here)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("wrote <ROOT>/etc/iptables/base.toml"),
            "{stdout}"
        );
        assert_eq!(stdout.matches("created symlink ").count(), 3, "{stdout}");
        assert_eq!(files_and_links(r), INSTALLED);
        let policy = fs::read_to_string(r.join("etc/iptables/base.toml")).expect("starter");
        assert!(policy.contains("external = \"auto\""), "{policy}");
        assert!(
            policy.contains("none known where this file was written"),
            "{policy}"
        );
        assert!(!policy.contains("ext0"), "{policy}");
        let rules = fs::read_to_string(r.join("etc/iptables/base.rules")).expect("rules");
        assert!(!rules.contains("ext0"), "{rules}");
        assert_links_resolve_in_tree(r);
    }
}

#[test]
fn staged_uninstall_removes_units_and_links_and_keeps_the_policy() {
    if !kernel_tests_enabled("staged_uninstall_removes_units_and_links_and_keeps_the_policy") {
        return;
    }
    let root = staged_root(true);
    let r = root.path();
    command(r, &["install"]).assert().code(0);
    let config = r.join("etc/iptables");
    let kept: Vec<(PathBuf, Vec<u8>)> = walk(&config)
        .into_iter()
        .filter(|p| !p.is_dir())
        .map(|p| {
            let bytes = fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();

    let out = command(r, &["uninstall"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = redact(&text(&out.stdout), r);
    insta::assert_snapshot!("uninstall_stdout", stdout);
    insta::assert_snapshot!("uninstall_tree", tree(r, false));
    assert_eq!(files_and_links(r), INSTALLED[..14]);
    for (path, bytes) in kept {
        assert_eq!(
            fs::read(&path).expect("kept file"),
            bytes,
            "{} changed",
            path.display()
        );
    }
}

/// For configuration management: `install --json` says `changed: true` when it wrote
/// the tree, and the second run says `changed: false` and leaves every file, link and
/// directory as it was, mtimes included.
#[test]
fn install_twice_reports_changed_then_unchanged_and_touches_nothing() {
    if !kernel_tests_enabled("install_twice_reports_changed_then_unchanged_and_touches_nothing") {
        return;
    }
    let root = staged_root(true);
    let r = root.path();
    let document = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).expect("one JSON document")
    };
    let first = command(r, &["install", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let first = document(&first);
    assert_eq!(
        (&first["schema"], &first["changed"]),
        (&1.into(), &true.into()),
        "{first:#}"
    );
    let before = fingerprint(r);
    let second = command(r, &["install", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let second = document(&second);
    assert_eq!(second["changed"], false, "{second:#}");
    assert_eq!(second["verdict"], "done", "{second:#}");
    assert_eq!(
        fingerprint(r),
        before,
        "the second install changed the tree"
    );
}

/// An install by an earlier build also linked the instance into the umbrella's wants;
/// uninstall removes every enable link of the units, as `systemctl disable` does.
#[test]
fn staged_uninstall_removes_enable_links_an_earlier_install_made() {
    if !kernel_tests_enabled("staged_uninstall_removes_enable_links_an_earlier_install_made") {
        return;
    }
    let root = staged_root(true);
    let r = root.path();
    command(r, &["install"]).assert().code(0);
    let legacy = r.join("etc/systemd/system/iptables.service.wants/iptables@base.service");
    fs::create_dir_all(legacy.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/systemd/system/iptables@.service", &legacy).expect("link");

    let out = command(r, &["uninstall"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = redact(&text(&out.stdout), r);
    assert!(
        stdout.contains(
            "removed <ROOT>/etc/systemd/system/iptables.service.wants/iptables@base.service"
        ),
        "{stdout}"
    );
    assert!(
        legacy.symlink_metadata().is_err(),
        "the legacy link is gone"
    );
    assert_eq!(files_and_links(r), INSTALLED[..14]);
}

#[test]
fn staged_install_refuses_next_to_netfilter_persistent_unless_forced() {
    if !kernel_tests_enabled("staged_install_refuses_next_to_netfilter_persistent_unless_forced") {
        return;
    }
    let root = staged_root(true);
    let r = root.path();
    let link = r.join(NETFILTER_PERSISTENT_LINK);
    fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink("/lib/systemd/system/netfilter-persistent.service", &link)
        .expect("symlink");

    let before = fingerprint(r);
    let out = command(r, &["install"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = redact(&text(&out.stderr), r);
    assert!(
        stderr.contains(
            "refusing to install: another firewall setup would fight this one; nothing was changed"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "netfilter-persistent is enabled: at boot it restores /etc/iptables/rules.v4"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(--force installs anyway)"), "{stderr}");
    assert_eq!(fingerprint(r), before, "a refused install changed the tree");

    let out = command(r, &["install", "--force"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = redact(&text(&out.stdout), r);
    let stderr = redact(&text(&out.stderr), r);
    assert!(
        stderr.contains("iptables-ctl: warning: (--force) netfilter-persistent is enabled"),
        "{stderr}"
    );
    assert_eq!(stdout.matches("created symlink ").count(), 3, "{stdout}");
    let mut expected: Vec<&str> = INSTALLED.to_vec();
    expected.push(NETFILTER_PERSISTENT_LINK);
    assert_eq!(files_and_links(r), expected);
    assert_eq!(
        fs::read_link(&link).expect("still there"),
        Path::new("/lib/systemd/system/netfilter-persistent.service"),
        "--force must leave the other firewall's link alone"
    );
}

/// When a package already ships the units (in /usr/lib/systemd/system), install writes
/// none to /etc/systemd/system and enables the packaged ones.
#[test]
fn staged_install_enables_units_a_package_ships() {
    if !kernel_tests_enabled("staged_install_enables_units_a_package_ships") {
        return;
    }
    let root = staged_root(true);
    let r = root.path();
    let packaged = r.join("usr/lib/systemd/system");
    fs::create_dir_all(&packaged).unwrap();
    for unit in [
        "iptables.service",
        "iptables@.service",
        "iptables-docker@.service",
        "iptables-rollback@.service",
    ] {
        fs::copy(Path::new("units").join(unit), packaged.join(unit)).unwrap();
    }
    let out = command(r, &["install"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = redact(&text(&out.stdout), r);
    assert!(
        stdout.contains("units are shipped by the package in <ROOT>/usr/lib/systemd/system"),
        "{stdout}"
    );
    let listing = tree(r, false);
    assert!(
        !listing.contains("file    etc/systemd/system/iptables"),
        "{listing}"
    );
    for line in [
        "symlink etc/systemd/system/multi-user.target.wants/iptables@base.service -> /usr/lib/systemd/system/iptables@.service",
        "symlink etc/systemd/system/multi-user.target.wants/iptables.service -> /usr/lib/systemd/system/iptables.service",
        "symlink etc/systemd/system/docker.service.wants/iptables-docker@base.service -> /usr/lib/systemd/system/iptables-docker@.service",
    ] {
        assert!(listing.contains(line), "{line}\n{listing}");
    }
}

/// Issue 9: under umask 000 `install` made `etc/iptables` and the `.wants` directories
/// 0777 (anyone could later swap the rules), under 077 a staged `/etc` came out 0700, and
/// an existing 0600 rules file was reset to 0644.
#[test]
fn install_sets_modes_whatever_the_umask_and_keeps_a_private_file_private() {
    if !kernel_tests_enabled("install_sets_modes_whatever_the_umask") {
        return;
    }
    for umask in ["000", "077"] {
        let root = staged_root(false);
        let setup = format!("umask {umask};");
        let output = command_in_new_netns(root.path(), &setup, &["install"])
            .output()
            .expect("run install");
        assert!(
            output.status.success(),
            "umask {umask}: {}",
            common::stderr(&output)
        );
        let mut wrong = Vec::new();
        for path in walk(root.path()) {
            let meta = fs::symlink_metadata(&path).expect("stat");
            let expected = if meta.is_dir() {
                0o755
            } else if meta.is_file() {
                0o644
            } else {
                continue;
            };
            if meta.mode() & 0o7777 != expected {
                wrong.push(format!("{} is {:o}", path.display(), meta.mode() & 0o7777));
            }
        }
        assert!(wrong.is_empty(), "umask {umask}: {wrong:?}");

        let rules = root.path().join("etc/iptables/base.rules");
        fs::set_permissions(&rules, fs::Permissions::from_mode(0o600)).expect("chmod");
        let policy = root.path().join("etc/iptables/base.toml");
        let changed =
            fs::read_to_string(&policy).expect("policy") + "\n[[host.services]]\nport = 2222\n";
        fs::write(&policy, changed).expect("change the policy");
        let output = command_in_new_netns(root.path(), &setup, &["install"])
            .output()
            .expect("run install again");
        assert!(
            output.status.success(),
            "umask {umask}: {}",
            common::stderr(&output)
        );
        assert!(
            common::stdout(&output).contains("wrote"),
            "the rules were rewritten"
        );
        let mode = fs::metadata(&rules).expect("stat").mode() & 0o7777;
        assert_eq!(
            mode, 0o600,
            "umask {umask}: the admin's 0600 rules file was reset"
        );
    }
}

#[test]
fn install_on_a_read_only_root_fails_and_says_that_nothing_changed() {
    if !kernel_tests_enabled("install_on_a_read_only_root_fails_and_says_that_nothing_changed") {
        return;
    }
    for installed_before in [false, true] {
        let root = staged_root(true);
        let r = root.path();
        if installed_before {
            // Two installs of two policies: the store holds the version in force and
            // the one before it, which a write would clean away.
            let policy = r.join("etc/iptables/base.toml");
            let text = fs::read_to_string(&policy).expect("policy");
            command(r, &["install"]).assert().code(0);
            fs::write(&policy, format!("{text}\n[[host.services]]\nport = 80\n"))
                .expect("edit the policy");
            command(r, &["install"]).assert().code(0);
            // A new policy, so that install has files to change.
            fs::write(&policy, format!("{text}\n[[host.services]]\nport = 443\n"))
                .expect("edit the policy");
        }
        let before = fingerprint(r);
        // The tree read-only (a bind mount in a mount namespace of the run's own; the
        // machine's mounts are not touched).
        let script =
            "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && shift && exec \"$@\"";
        let out = assert_cmd::Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(r)
            .arg(assert_cmd::cargo::cargo_bin("iptables-ctl"))
            .arg("--root")
            .arg(r)
            .arg("install")
            .env_remove("SSH_CONNECTION")
            .assert()
            .code(1)
            .get_output()
            .clone();
        let stderr = redact(&text(&out.stderr), r);
        assert!(stderr.contains("Read-only file system"), "{stderr}");
        assert!(
            !stderr.contains("could not put every file back"),
            "nothing was changed, so nothing had to be put back: {stderr}"
        );
        assert_eq!(
            fingerprint(r),
            before,
            "installed before: {installed_before}"
        );
    }
}

#[test]
fn a_fifo_where_the_tool_reads_a_system_file_cannot_block_it() {
    if !kernel_tests_enabled("a_fifo_where_the_tool_reads_a_system_file_cannot_block_it") {
        return;
    }
    // sshd_config (read for the starter policy) and a unit file that `install` checks
    // for another firewall's: FIFOs nobody writes to.
    let root = staged_root(false);
    let r = root.path();
    let fifo = |path: PathBuf| {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
    };
    fifo(r.join("etc/ssh/sshd_config"));
    fifo(r.join("etc/systemd/system/iptables.service"));
    let out = command(r, &["install"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = redact(&text(&out.stderr), r);
    assert!(
        stderr.contains("<ROOT>/etc/systemd/system/iptables.service"),
        "the FIFO is another unit, not ours: {stderr}"
    );
    assert!(stderr.contains("refusing to install"), "{stderr}");
}
