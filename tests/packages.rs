//! The packages `bash packaging/build` leaves in target/packages, read the way a package
//! manager reads them: the .deb's file list, control fields and maintainer scripts
//! (dpkg-deb), the .rpm's file list, requires, conflicts and scriptlets (`rpm -qp`), and
//! the .rpm installed into a scratch root. A firewall's package must not surprise its
//! admin: no script starts, stops, restarts, reloads or enables a unit, loads or
//! flushes rules, and nothing is shipped as a conffile or a preset. This test builds
//! nothing: without the packages it fails in CI (CI set) and is skipped elsewhere.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The one package with extension `ext` in target/packages, if it is there.
fn package(test: &str, ext: &str) -> Option<PathBuf> {
    common::built_package(test, "target/packages", ext)
}

/// Whether `tool` is on PATH; in CI its absence is a failure.
fn tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} needs {tool} (packaging/build installs it)"
        );
        eprintln!("SKIPPED {test}: needs {tool} (packaging/build installs it)");
    }
    found
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// What both packages must hold, as paths under /, for the binary, the units, the
/// templates, the documentation, the manual pages and the completions. The RPM names
/// zsh's directory as its distributions do.
fn expected_files(zsh_dir: &str) -> Vec<String> {
    let mut files: Vec<String> = [
        "/usr/sbin/iptables-ctl",
        "/usr/share/iptables-ctl/templates/rules.tera",
        "/usr/share/iptables-ctl/templates/empty.tera",
        "/usr/share/doc/iptables-ctl/examples/base.toml",
        "/usr/share/doc/iptables-ctl/README.md",
        "/usr/share/man/man8/iptables-ctl.8.gz",
        "/usr/share/man/man5/iptables-ctl.toml.5.gz",
        "/usr/share/bash-completion/completions/iptables-ctl",
        "/usr/share/fish/vendor_completions.d/iptables-ctl.fish",
    ]
    .map(str::to_owned)
    .to_vec();
    for unit in iptables_ctl::systemd::units::SHIPPED_UNITS {
        files.push(format!("/usr/lib/systemd/system/{}", unit.file_name));
    }
    // One page per command an admin runs.
    for command in common::ADMIN_COMMANDS {
        files.push(format!("/usr/share/man/man8/iptables-ctl-{command}.8.gz"));
    }
    files.push(format!("{zsh_dir}/_iptables-ctl"));
    files
}

/// Where a package may put files at all: nothing under /etc (no conffile, no enable
/// link), no systemd preset, nothing under /var or /run.
fn assert_places(files: &[String]) {
    let allowed = [
        "/usr/sbin/iptables-ctl",
        "/usr/lib/systemd/system/iptables",
        "/usr/share/iptables-ctl/",
        "/usr/share/doc/iptables-ctl/",
        "/usr/share/licenses/iptables-ctl/",
        "/usr/share/man/man5/iptables-ctl",
        "/usr/share/man/man8/iptables-ctl",
        "/usr/share/bash-completion/completions/iptables-ctl",
        "/usr/share/zsh/",
        "/usr/share/fish/vendor_completions.d/iptables-ctl",
    ];
    for file in files {
        assert!(
            allowed.iter().any(|prefix| file.starts_with(prefix)),
            "unexpected file in the package: {file}"
        );
        assert!(
            !file.contains("system-preset") && !file.contains(".wants/"),
            "a package must not enable units: {file}"
        );
    }
}

/// The problems in a maintainer script: anything that starts, stops, restarts,
/// reloads, enables or masks a unit, loads or flushes rules, or takes the firewall
/// down. Comment lines are left out; words are split on blanks, quotes and `;|&()`.
fn script_problems(name: &str, text: &str) -> Vec<String> {
    let forbidden_verbs = [
        "start",
        "restart",
        "stop",
        "reload",
        "try-restart",
        "reload-or-restart",
        "try-reload-or-restart",
        "condrestart",
        "enable",
        "reenable",
        "preset",
        "mask",
        "isolate",
        "kill",
    ];
    let forbidden_programs = [
        "deb-systemd-invoke",
        "deb-systemd-helper",
        "invoke-rc.d",
        "service",
        "iptables-restore",
        "ip6tables-restore",
        "nft",
    ];
    let rule_tools = [
        "iptables",
        "ip6tables",
        "iptables-legacy",
        "ip6tables-legacy",
        "iptables-nft",
        "ip6tables-nft",
    ];
    let flushing = ["-F", "--flush", "-X", "--delete-chain", "-P", "--policy"];
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        // Text the script prints is not a command.
        if line.trim_start().starts_with("echo ") {
            continue;
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || "'\";|&()`".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            let program = word.rsplit('/').next().unwrap_or(word);
            let says = |what: &str| format!("{name}:{}: {what}: {}", n + 1, line.trim());
            if program == "systemctl" {
                // The first word after the options is the verb.
                let verb = words[i + 1..].iter().find(|w| !w.starts_with('-'));
                if verb.is_some_and(|v| forbidden_verbs.contains(v)) {
                    problems.push(says("acts on a unit"));
                }
            }
            if forbidden_programs.contains(&program) {
                problems.push(says("runs a forbidden program"));
            }
            if rule_tools.contains(&program) && words[i + 1..].iter().any(|w| flushing.contains(w))
            {
                problems.push(says("flushes rules"));
            }
            // The tool itself, run (not looked up with `command -v`, nor a path of its
            // own such as /run/iptables-ctl).
            let looked_up = i > 0 && ["-v", "command"].contains(&words[i - 1]);
            let is_tool = *word == "iptables-ctl" || word.ends_with("bin/iptables-ctl");
            if is_tool && !looked_up {
                problems.push(says("runs iptables-ctl"));
            }
        }
    }
    problems
}

/// A script that runs daemon-reload, and only where systemd runs.
fn assert_daemon_reload(name: &str, text: &str) {
    assert!(
        text.contains("systemctl --system daemon-reload"),
        "{name} must run daemon-reload:\n{text}"
    );
    assert!(
        text.contains("[ -d /run/systemd/system ]"),
        "{name} must run daemon-reload only where systemd runs:\n{text}"
    );
}

#[test]
fn the_script_checker_catches_what_it_must() {
    for bad in [
        "systemctl start iptables@base.service",
        "systemctl --system restart iptables.service || true",
        "if true; then systemctl enable iptables@base; fi",
        "/bin/systemctl stop iptables",
        "deb-systemd-invoke start iptables.service",
        "iptables -F",
        "ip6tables -w -t filter --flush",
        "iptables-restore < /etc/iptables/base.rules",
        "iptables-ctl uninstall",
        "/usr/sbin/iptables-ctl stop base",
    ] {
        assert!(!script_problems("t", bad).is_empty(), "not caught: {bad}");
    }
    for good in [
        "systemctl --system daemon-reload >/dev/null || true",
        "# systemctl restart is never run",
        "echo \"iptables-ctl: run 'iptables-ctl install'\"",
        "if command -v iptables-ctl >/dev/null 2>&1; then",
        "rm -rf /run/iptables-ctl",
    ] {
        assert!(
            script_problems("t", good).is_empty(),
            "wrongly caught: {good}"
        );
    }
}

#[test]
fn the_deb_holds_what_it_should_and_its_scripts_start_nothing() {
    let test = "the_deb_holds_what_it_should_and_its_scripts_start_nothing";
    let Some(deb) = package(test, "deb") else {
        return;
    };
    if !tool(test, "dpkg-deb") {
        return;
    }
    let deb = deb.to_str().expect("UTF-8 path");

    // The file list: `dpkg-deb -c` prints `ls -l`-like lines ending in ./path.
    let listing = run("dpkg-deb", &["-c", deb]);
    let files: Vec<String> = listing
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with('l'))
        .map(|l| {
            let path = l.split_whitespace().nth(5).expect("a path");
            path.trim_start_matches('.').to_owned()
        })
        .collect();
    for file in expected_files("/usr/share/zsh/vendor-completions") {
        assert!(
            files.contains(&file),
            "{file} missing from the .deb:\n{listing}"
        );
    }
    for file in [
        "/usr/share/doc/iptables-ctl/copyright",
        "/usr/share/doc/iptables-ctl/changelog.Debian.gz",
    ] {
        assert!(
            files.contains(&file.to_owned()),
            "{file} missing from the .deb"
        );
    }
    assert_places(&files);
    let binary = listing
        .lines()
        .find(|l| l.ends_with("./usr/sbin/iptables-ctl"))
        .expect("the binary");
    // Mode 0755, owned by root (dpkg-deb shows the owner by name or by number).
    let owner = binary.split_whitespace().nth(1).unwrap_or_default();
    assert!(
        binary.starts_with("-rwxr-xr-x ") && ["root/root", "0/0"].contains(&owner),
        "{binary}"
    );

    // Control fields.
    let field = |name: &str| run("dpkg-deb", &["-f", deb, name]).trim().to_owned();
    let depends: Vec<String> = field("Depends")
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    for needed in ["iptables", "iproute2", "systemd", "libc6"] {
        assert!(
            depends.iter().any(|d| d == needed),
            "Depends lacks {needed}: {depends:?}"
        );
    }
    let conflicts = field("Conflicts");
    for other in ["iptables-persistent", "netfilter-persistent"] {
        assert!(
            conflicts.split(',').any(|c| c.trim() == other),
            "Conflicts lacks {other}: {conflicts}"
        );
    }
    assert_eq!(field("Package"), "iptables-ctl");

    // Maintainer scripts, and no conffiles.
    let control = tempfile::tempdir().expect("tempdir");
    let dir = control.path().to_str().expect("UTF-8 path");
    run("dpkg-deb", &["-e", deb, dir]);
    assert!(
        std::fs::read_to_string(control.path().join("conffiles"))
            .unwrap_or_default()
            .trim()
            .is_empty(),
        "the .deb ships a conffile"
    );
    let mut problems = Vec::new();
    for name in ["preinst", "postinst", "prerm", "postrm"] {
        let Ok(text) = std::fs::read_to_string(control.path().join(name)) else {
            assert_ne!(name, "postinst", "the .deb has no postinst");
            assert_ne!(name, "postrm", "the .deb has no postrm");
            continue;
        };
        problems.extend(script_problems(name, &text));
        if name == "postinst" {
            assert_daemon_reload(name, &text);
        }
        if name == "postrm" {
            assert!(
                text.contains("rules stay in the kernel"),
                "postrm remove must say the rules stay:\n{text}"
            );
            assert!(
                !text.contains("rm -rf /etc") && !text.contains("rm -rf \"$config\""),
                "postrm must not remove the whole configuration:\n{text}"
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_rpm_holds_what_it_should_and_installs_into_a_scratch_root() {
    let test = "the_rpm_holds_what_it_should_and_installs_into_a_scratch_root";
    let Some(rpm) = package(test, "rpm") else {
        return;
    };
    if !tool(test, "rpm") {
        return;
    }
    let rpm = rpm.to_str().expect("UTF-8 path");

    let listing = run("rpm", &["-qp", "--list", rpm]);
    let files: Vec<String> = listing.lines().map(str::to_owned).collect();
    for file in expected_files("/usr/share/zsh/site-functions") {
        assert!(
            files.contains(&file),
            "{file} missing from the .rpm:\n{listing}"
        );
    }
    assert!(files.contains(&"/usr/share/licenses/iptables-ctl/copyright".to_owned()));
    assert!(files.contains(&"/usr/share/doc/iptables-ctl/changelog".to_owned()));
    assert_places(&files);
    assert_eq!(
        run("rpm", &["-qp", "--configfiles", rpm]).trim(),
        "",
        "the .rpm ships a config file"
    );

    let names = |query: &str| -> Vec<String> {
        run("rpm", &["-qp", query, rpm])
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    };
    let requires = names("--requires");
    for needed in [
        "/usr/sbin/iptables-restore",
        "/usr/sbin/ip6tables-restore",
        "/usr/sbin/ip",
        "systemd",
        "/bin/sh",
    ] {
        assert!(
            requires.iter().any(|r| r == needed),
            "Requires lacks {needed}: {requires:?}"
        );
    }
    let conflicts = names("--conflicts");
    assert!(
        conflicts.iter().any(|c| c == "iptables-services"),
        "Conflicts lacks iptables-services: {conflicts:?}"
    );

    // The scriptlets, as rpm prints them: a header line per scriptlet ("postinstall
    // scriptlet:", or "... scriptlet (using /bin/sh):"), then its text.
    let scripts = run("rpm", &["-qp", "--scripts", rpm]);
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in scripts.lines() {
        let header = line
            .split_whitespace()
            .nth(1)
            .is_some_and(|w| w.starts_with("scriptlet"))
            && line.ends_with(':')
            && !line.starts_with(char::is_whitespace);
        if header {
            sections.push((line.to_owned(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let headers: Vec<&str> = sections.iter().map(|(h, _)| h.as_str()).collect();
    for kind in ["postinstall", "preuninstall", "postuninstall"] {
        assert!(
            headers.iter().any(|h| h.starts_with(kind)),
            "no {kind} scriptlet: {headers:?}"
        );
    }
    assert!(
        !headers.iter().any(|h| h.starts_with("preinstall")),
        "unexpected preinstall scriptlet: {headers:?}"
    );
    let mut problems = Vec::new();
    for (header, text) in &sections {
        problems.extend(script_problems(header, text));
        if header.starts_with("postinstall") {
            assert_daemon_reload(header, text);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Installed into a scratch root: the files land where the list says. The scriptlets
    // need a shell inside the root, which a scratch root has not; they are read above.
    if !nix_root(test) {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().to_str().expect("UTF-8 path");
    run("rpm", &["--root", dir, "--initdb"]);
    run(
        "rpm",
        &[
            "-i",
            "--root",
            dir,
            "--nodeps",
            "--noscripts",
            "--ignorearch",
            rpm,
        ],
    );
    for file in expected_files("/usr/share/zsh/site-functions") {
        let path = root.path().join(file.trim_start_matches('/'));
        assert!(path.is_file(), "{} not installed", path.display());
    }
    let installed = run("rpm", &["--root", dir, "-q", "iptables-ctl"]);
    assert!(installed.starts_with("iptables-ctl-"), "{installed}");
    assert!(
        !root.path().join("etc/systemd").exists(),
        "installing enabled a unit"
    );
    run(
        "rpm",
        &[
            "-e",
            "--root",
            dir,
            "--nodeps",
            "--noscripts",
            "iptables-ctl",
        ],
    );
    assert!(!root.path().join("usr/sbin/iptables-ctl").exists());
}

/// Whether we are root (rpm -i into a scratch root sets owners); in CI a failure.
fn nix_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} needs root to install into a scratch root"
        );
        eprintln!("SKIPPED {test}: installing into a scratch root needs root");
    }
    root
}
