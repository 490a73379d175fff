//! Bad-input matrix: every malformed, ill-typed, out-of-range or hostile policy (and a
//! broken admin template, a missing or unreadable file) makes `iptables-ctl render` exit 1
//! with a message that names the location, and leaves the output directory exactly as it
//! was (same bytes, same modes, no temporary files left behind).
//!
//! Each case starts from a root where a valid policy has already been rendered, so the
//! test also proves that a failed run never touches previously rendered files.

// Test code: a failed setup step should stop the test with a clear message.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A policy that renders (and passes the kernel check) on any host.
const VALID: &str = "[interfaces]\nexternal = \"eth0\"\n\n[[host.services]]\nport = 22\n";

/// What a case does to the freshly rendered root before the failing run.
enum Setup {
    /// Replace the policy with these bytes.
    Policy(&'static [u8]),
    /// Write an admin template override (`rules.tera` or `empty.tera`) with this text.
    Template(&'static str, &'static str),
    /// Delete the policy.
    RemovePolicy,
    /// Replace the policy with a directory.
    PolicyIsDirectory,
    /// Make the policy mode 0000 and run the binary as `nobody` (root reads anything).
    UnreadablePolicy,
    /// Replace the policy with a FIFO nobody writes to.
    PolicyIsFifo,
    /// Replace the policy with a symlink to /dev/zero.
    PolicyIsDevZero,
    /// Replace the policy with this many bytes of comments.
    LargePolicy(usize),
    /// Replace the policy with the text this makes.
    GeneratedPolicy(fn() -> String),
    /// Give the (valid) policy to `nobody`, mode 0666.
    PolicyOwnedByNobody,
    /// Write a harmless admin template into a templates directory of mode 0777.
    TemplateInWorldWritableDirectory,
}

/// How the failing run is started.
#[derive(Clone, Copy)]
enum Runner {
    /// As the test (root).
    Direct,
    /// As uid/gid 65534 with no supplementary groups.
    Nobody,
}

struct Case {
    name: &'static str,
    setup: Setup,
    /// Substrings stderr must contain. `{policy}` stands for the policy's path and
    /// `{templates}` for the template override directory.
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    use Setup::{GeneratedPolicy, Policy, Template};
    vec![
        // --- malformed TOML ---
        Case {
            name: "unterminated string",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\n"),
            expect: &["{policy}:2:17: syntax: "],
        },
        Case {
            name: "unclosed table header",
            setup: Policy(b"[interfaces\nexternal = \"eth0\"\n"),
            expect: &["{policy}:1:12: syntax: "],
        },
        Case {
            name: "duplicate key",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\nport = 23\n"),
            expect: &["{policy}:5:1: syntax: "],
        },
        // --- wrong types ---
        Case {
            name: "port = true",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = true\n"),
            expect: &["{policy}:4:8: host.services[0].port: ", "boolean"],
        },
        Case {
            name: "ping = \"yes\"",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[host]\nping = \"yes\"\n"),
            expect: &["{policy}:4:8: host.ping: ", "expected a boolean"],
        },
        Case {
            name: "table where a value is expected",
            setup: Policy(b"interfaces = 5\n"),
            expect: &["{policy}:1:14: interfaces: "],
        },
        Case {
            name: "negative log burst",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[log]\nburst = -1\n"),
            expect: &["{policy}:4:9: log.burst: "],
        },
        // --- unknown keys and values ---
        Case {
            name: "unknown top-level key",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[firewall]\nenabled = true\n"),
            expect: &["{policy}:3:", ": firewall: unknown field `firewall`"],
        },
        Case {
            name: "unknown nested key",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 80\nsource = \"10.0.0.0/8\"\n",
            ),
            expect: &["{policy}:5:1: docker.published[0].source: unknown field `source`"],
        },
        Case {
            name: "unknown protocol",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\nproto = \"icmp\"\n"),
            expect: &["{policy}:5:9: host.services[0].proto: ", "icmp"],
        },
        Case {
            name: "unknown raw chain",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"forward\"\nrule = \"-p udp -j ACCEPT\"\n",
            ),
            expect: &["{policy}:4:9: raw[0].chain: ", "forward"],
        },
        Case {
            name: "reference to an undeclared list",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\nfrom = [\"10.0.0.0/8\", \"ofice\"]\n",
            ),
            expect: &["{policy}:5:23: host.services[0].from[1]: ", "unknown list \"ofice\""],
        },
        // --- bad CIDRs ---
        Case {
            name: "host bits set",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\nfrom = [\"10.0.0.1/8\"]\n"),
            expect: &["{policy}:5:9: host.services[0].from[0]: ", "host bits set"],
        },
        Case {
            name: "prefix length /33",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 443\nfrom = [\"10.0.0.0/33\"]\n",
            ),
            expect: &["{policy}:5:", "docker.published[0].from", "10.0.0.0/33"],
        },
        Case {
            name: "garbage address in a list",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[lists]\noffice = [\"10.0.0.0/8\", \"300.1.2.3\"]\n"),
            expect: &["{policy}:4:", "lists.office", "300.1.2.3"],
        },
        Case {
            name: "network as host_address",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 443\nhost_address = \"10.0.0.0/8\"\n",
            ),
            expect: &["{policy}:5:16: docker.published[0].host_address: "],
        },
        // --- ports ---
        Case {
            name: "port 0",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 0\n"),
            expect: &["{policy}:4:8: host.services[0].port: ", "found 0"],
        },
        Case {
            name: "port 65536",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 8080\n[[docker.published]]\nport = 65536\n",
            ),
            expect: &["{policy}:6:8: docker.published[1].port: ", "found 65536"],
        },
        Case {
            name: "port 0 inside a list",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = [80, 0]\n"),
            expect: &["{policy}:4:13: docker.published[0].port[1]: "],
        },
        Case {
            name: "reversed range",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[outbound.allow]]\nport = \"9000-8000\"\n"),
            expect: &["{policy}:4:8: outbound.allow[0].port: ", "9000-8000"],
        },
        // --- interface names ---
        Case {
            name: "interface name of 16 characters",
            setup: Policy(b"[interfaces]\nexternal = \"abcdefghijklmnop\"\n"),
            expect: &["{policy}:2:12: interfaces.external: ", "abcdefghijklmnop"],
        },
        Case {
            name: "interface name with a space",
            setup: Policy(b"[interfaces]\nexternal = [\"eth0\", \"eth 1\"]\n"),
            expect: &["{policy}:2:", "interfaces.external", "\"eth 1\""],
        },
        Case {
            name: "interface name with a quote",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\ninterfaces = [\"eth0\\\" -j ACCEPT\"]\n",
            ),
            expect: &["{policy}:5:15: host.services[0].interfaces[0]: "],
        },
        Case {
            name: "interface name with a newline",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\\n-A FORWARD -j ACCEPT\"\n"),
            expect: &["{policy}:2:12: interfaces.external: "],
        },
        Case {
            name: "docker bridge with an injected rule",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\ndocker_bridges = [\"docker0\", \"br-+ -j ACCEPT\"]\n"),
            expect: &["{policy}:3:30: interfaces.docker_bridges[1]: "],
        },
        Case {
            // An "empty" value rather than an empty file: no bridges at all.
            name: "empty docker_bridges",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\ndocker_bridges = []\n"),
            expect: &["{policy}:3:18: interfaces.docker_bridges: "],
        },
        // --- comments ---
        Case {
            name: "comment with a quote",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\ncomment = \"ssh\\\" -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:11: host.services[0].comment: "],
        },
        Case {
            name: "comment with a newline (multi-line string)",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\ncomment = \"\"\"\nssh\n-A FORWARD -j ACCEPT\"\"\"\n",
            ),
            expect: &["{policy}:5:11: host.services[0].comment: ", "'\\n'"],
        },
        // --- injection attempts in the remaining string fields ---
        Case {
            name: "injection in a list name",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[lists]\n\"x\\n-A FORWARD -j ACCEPT\" = [\"10.0.0.0/8\"]\n",
            ),
            expect: &["{policy}:4:1: lists.\"x\\n-A FORWARD -j ACCEPT\": expected a list name"],
        },
        Case {
            name: "injection in a list entry",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[lists]\noffice = [\"10.0.0.0/8\\n-A FORWARD -j ACCEPT\"]\n",
            ),
            expect: &["{policy}:4:", "lists.office"],
        },
        Case {
            name: "injection in host.services.from",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\nfrom = [\"0.0.0.0/0 -j ACCEPT\"]\n",
            ),
            expect: &["{policy}:5:", "host.services[0].from"],
        },
        Case {
            name: "injection in outbound.allow.to",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[outbound]\npolicy = \"allowlist\"\n[[outbound.allow]]\nport = 443\nto = [\"192.0.2.1\\\" -j ACCEPT\"]\n",
            ),
            expect: &["{policy}:7:", "outbound.allow[0].to"],
        },
        Case {
            name: "injection in outbound.allow.comment",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[outbound.allow]]\nport = 443\ncomment = \"x\\\" -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:11: outbound.allow[0].comment: "],
        },
        Case {
            name: "injection in docker.published.comment",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 443\ncomment = \"web\\n-A FORWARD -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:11: docker.published[0].comment: "],
        },
        Case {
            name: "injection in docker.published.from",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 443\nfrom = [\"office -j ACCEPT\"]\n",
            ),
            expect: &["{policy}:5:", "docker.published[0].from"],
        },
        Case {
            name: "injection in docker.published.host_address",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[docker.published]]\nport = 443\nhost_address = \"10.0.0.5 -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:16: docker.published[0].host_address: "],
        },
        Case {
            name: "injection in log.prefix",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[log]\nenabled = true\nprefix = \"fw\\\" -j ACCEPT\"\n"),
            expect: &["{policy}:5:10: log.prefix: "],
        },
        Case {
            name: "injection in log.rate",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[log]\nenabled = true\nrate = \"5/minute\\n-A FORWARD -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: log.rate: "],
        },
        Case {
            name: "injection in an enum value (defaults.deny)",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[defaults]\ndeny = \"drop\\n-A FORWARD -j ACCEPT\"\n"),
            expect: &["{policy}:4:8: defaults.deny: "],
        },
        Case {
            name: "raw rule with a newline and a second rule",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-p udp -j ACCEPT\\n-A FORWARD -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: "],
        },
        Case {
            name: "raw rule with a port that iptables would wrap",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-p udp --dport 99999 -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "99999"],
        },
        Case {
            name: "raw rule the kernel refuses (tcp-reset without -p tcp)",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-j REJECT --reject-with tcp-reset\"\n",
            ),
            expect: &["base.rules line ", "{policy}:5:8: raw[0].rule: the kernel's parser refused this rule"],
        },
        // --- issue 9: spellings iptables' getopt reads as something else ---
        Case {
            name: "raw rule --dport=99999 (getopt reads --dport 99999, the kernel wraps it)",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-p udp --dport=99999 -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "iptables reads `--dport=99999` as `--dport 99999`"],
        },
        Case {
            name: "raw rule --dpo 99999 (an abbreviation of --dport)",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-p udp --dpo 99999 -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "`--dpo` abbreviates one of --dport, --dports: write the option in full"],
        },
        Case {
            name: "raw rule -tnat",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-tnat -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "as `-t nat`"],
        },
        Case {
            name: "raw rule --jump=DOCKER",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"docker-user\"\nrule = \"-p tcp --jump=DOCKER\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "as `--jump DOCKER`"],
        },
        Case {
            name: "raw rule --modprobe=/x",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"--modprobe=/x -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "--modprobe /x"],
        },
        Case {
            name: "raw rule -6 (drops the rule from the IPv4 file)",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-6 -p tcp -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "-6 is not allowed in a raw rule"],
        },
        // --- issue 9: a template hiding a target behind an escaped quote ---
        Case {
            name: "template hiding -j NFQUEUE behind \\\"",
            setup: Template(
                "rules.tera",
                "*filter\n:INPUT DROP [0:0]\n-F INPUT\n-A INPUT -m comment --comment \"a\\\" \" -j NFQUEUE --queue-num 7 -m comment --comment \" -j ACCEPT\nCOMMIT\n",
            ),
            expect: &["{templates}/rules.tera, is refused at line ", "a backslash in a rule"],
        },
        // --- issue 9: empty, unbounded and untrusted files ---
        Case {
            name: "empty policy",
            setup: Policy(b""),
            expect: &["{policy}:1:1: syntax: expected a policy, found an empty file"],
        },
        Case {
            name: "policy is a FIFO",
            setup: Setup::PolicyIsFifo,
            expect: &["cannot read policy {policy}: ", "expected a regular file, found a FIFO"],
        },
        Case {
            name: "policy is /dev/zero",
            setup: Setup::PolicyIsDevZero,
            expect: &["cannot read policy {policy}: ", "expected a regular file, found a device"],
        },
        Case {
            name: "policy over the size limit",
            setup: Setup::LargePolicy(4 * 1024 * 1024 + 1),
            expect: &["cannot read policy {policy}: ", "expected at most 4194304 bytes, found 4194305"],
        },
        Case {
            name: "policy owned by nobody, mode 0666",
            setup: Setup::PolicyOwnedByNobody,
            expect: &["cannot read policy {policy}: ", "{policy} is owned by uid 65534"],
        },
        Case {
            name: "template in a world-writable directory",
            setup: Setup::TemplateInWorldWritableDirectory,
            expect: &["{templates} is writable by anyone (mode 0777)"],
        },
        Case {
            name: "raw rule switching table",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-t nat -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "-t is not allowed"],
        },
        Case {
            name: "raw rule jumping to Docker's chain",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"docker-user\"\nrule = \"-p tcp -j DOCKER\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "DOCKER"],
        },
        Case {
            name: "raw rule with an unbalanced quote",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-m comment --comment \\\"x -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: "],
        },
        Case {
            name: "raw rule the kernel refuses",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-m nosuchmatch -j ACCEPT\"\n",
            ),
            expect: &["{policy}:5:8: raw[0].rule: ", "refused"],
        },
        Case {
            name: "injection in raw.comment",
            setup: Policy(
                b"[interfaces]\nexternal = \"eth0\"\n[[raw]]\nchain = \"input\"\nrule = \"-p udp -j ACCEPT\"\ncomment = \"x\\\" -A FORWARD\"\n",
            ),
            expect: &["{policy}:6:11: raw[0].comment: "],
        },
        // --- encoding, empty and unusable files ---
        Case {
            name: "non-UTF-8 byte in a comment",
            setup: Policy(b"[interfaces]\nexternal = \"eth0\"\n[[host.services]]\nport = 22\ncomment = \"caf\xff\"\n"),
            expect: &["{policy}:5:15: syntax: ", "0xff"],
        },
        Case {
            name: "missing policy",
            setup: Setup::RemovePolicy,
            expect: &["cannot read policy {policy}: ", "No such file or directory"],
        },
        Case {
            name: "unreadable policy",
            setup: Setup::UnreadablePolicy,
            expect: &["cannot read policy {policy}: ", "Permission denied"],
        },
        Case {
            name: "policy path is a directory",
            setup: Setup::PolicyIsDirectory,
            expect: &["cannot read policy {policy}: ", "expected a regular file, found a directory"],
        },
        // --- admin templates ---
        Case {
            name: "template with a syntax error",
            setup: Template(
                "rules.tera",
                "*filter\n:INPUT DROP [0:0]\n-F INPUT\n{{ host.ping }\nCOMMIT\n",
            ),
            expect: &["{templates}/rules.tera:4:14"],
        },
        Case {
            name: "empty template with an unknown tag",
            setup: Template("empty.tera", "*filter\n{% frobnicate %}\nCOMMIT\n"),
            expect: &["{templates}/empty.tera:2:"],
        },
        Case {
            name: "template using an undefined variable",
            setup: Template(
                "rules.tera",
                "*filter\n:INPUT DROP [0:0]\n-F INPUT\n-A INPUT {{ no_such_variable }} -j ACCEPT\nCOMMIT\n",
            ),
            expect: &["{templates}/rules.tera:4:13", "no_such_variable"],
        },
        Case {
            name: "template opening FORWARD",
            setup: Template("rules.tera", "*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n"),
            expect: &["{templates}/rules.tera", "FORWARD", "line "],
        },
        Case {
            name: "template touching the nat table",
            setup: Template("empty.tera", "*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n"),
            expect: &["{templates}/empty.tera", "*nat", "line "],
        },
        Case {
            // 40 million rules: without a count before expanding, minutes and gigabytes
            // before the rendered file's rule cap refused them.
            name: "4,000 entries each naming a 64-network list on 4 ports",
            setup: GeneratedPolicy(|| {
                let mut text = big_list_policy();
                for i in 0..4000 {
                    let p = 10_000 + 8 * i;
                    text.push_str(&format!(
                        "[[host.services]]\nport = [{p}, {}, {}, {}]\nfrom = [\"big\"]\n",
                        p + 2,
                        p + 4,
                        p + 6
                    ));
                }
                text
            }),
            expect: &[
                "{policy}:12:8: host.services[1]: expected at most 24900 rules from the policy in the IPv4 file (a file holds 25000, 100 of them the template's own), found a policy that renders up to 1024001",
                "this entry up to 256: 4 port range(s) x 1 interface(s) x 64 IPv4 address(es)",
            ],
        },
        Case {
            // The million rules, with lists short enough to stay rules: 400
            // ports x 64 networks, refused with the exact count and its factors.
            name: "400 ports x 64 networks",
            setup: GeneratedPolicy(|| {
                let ports: Vec<String> = (0..400).map(|i| (8000 + 2 * i).to_string()).collect();
                format!(
                    "{}[[docker.published]]\nport = [{}]\nfrom = [\"big\"]\n",
                    big_list_policy(),
                    ports.join(", ")
                )
            }),
            expect: &[
                "{policy}:12:8: docker.published[0]: expected at most 24900 rules from the policy in the IPv4 file",
                "400 port range(s) x 1 interface(s) x 64 IPv4 address(es) x 2 chains",
            ],
        },
        Case {
            // 10^10 iterations that write nothing: without a limit, a hang holding the
            // directory lock.
            name: "template looping without end",
            setup: Template(
                "rules.tera",
                "*filter\n{% for i in range(end=100000) %}{% for j in range(end=100000) %}{% endfor %}{% endfor %}COMMIT\n",
            ),
            expect: &[
                "{templates}/rules.tera: rendering did not finish within 10 s",
                "nothing was written",
            ],
        },
        Case {
            // 10^8 rules: without a limit, gigabytes before the shape check sees them.
            name: "template writing without end",
            setup: Template(
                "empty.tera",
                "*filter\n{% for i in range(end=100000) %}{% for j in range(end=1000) %}-A INPUT -j ACCEPT\n{% endfor %}{% endfor %}COMMIT\n",
            ),
            expect: &[
                "{templates}/empty.tera: its output exceeds 50331648 bytes",
                "the limit keeps every run bounded",
            ],
        },
    ]
}

/// A valid policy whose `[lists]` holds `big`, 64 IPv4 /32s (the most a list may hold
/// and still be rules, not a set), on line 4 (the entries that follow start on line 10).
fn big_list_policy() -> String {
    let nets: Vec<String> = (0..64).map(|i| format!("\"10.0.{i}.1/32\"")).collect();
    format!(
        "[interfaces]\nexternal = \"eth0\"\n[lists]\nbig = [{}]\n[[host.services]]\nport = 22\n\n# entries:\n\n",
        nets.join(", ")
    )
}

/// Every file and directory under `dir`, recursively, by relative path: content (empty for
/// directories, the target for links) and the full `st_mode` (type and permission bits).
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            let relative = path
                .strip_prefix(base)
                .expect("path below the snapshot root")
                .to_owned();
            if meta.is_dir() {
                out.insert(relative, (Vec::new(), meta.mode()));
                walk(base, &path, out);
            } else if meta.is_file() {
                let bytes =
                    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                out.insert(relative, (bytes, meta.mode()));
            } else {
                // A FIFO or a symlink: reading would block or follow it; its kind and
                // mode (and a link's target) say whether it changed.
                let target = fs::read_link(&path).unwrap_or_default();
                out.insert(
                    relative,
                    (target.into_os_string().into_encoded_bytes(), meta.mode()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Runs `iptables-ctl --root ROOT render` and returns its exit code (`None` when killed by
/// a signal) and stderr.
fn run_render(root: &Path, runner: Runner) -> (Option<i32>, String) {
    let binary = Command::cargo_bin("iptables-ctl")
        .expect("the iptables-ctl binary is built")
        .get_program()
        .to_owned();
    let mut command = match runner {
        Runner::Direct => Command::new(&binary),
        Runner::Nobody => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&binary);
            c
        }
    };
    // A run that blocks (on a FIFO, say) fails the case instead of hanging the suite.
    let output = command
        .timeout(std::time::Duration::from_secs(120))
        .env_remove("SSH_CONNECTION")
        .arg("--root")
        .arg(root)
        .arg("render")
        .output()
        .expect("iptables-ctl can be started");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Runs one case; returns a description of what went wrong, if anything.
fn run_case(case: &Case) -> Result<(), String> {
    let root = tempfile::tempdir().expect("temporary root");
    let config = root.path().join("etc/iptables");
    let policy = config.join("base.toml");
    let templates = config.join("templates");
    fs::create_dir_all(&config).expect("create etc/iptables");
    fs::write(&policy, VALID).expect("write the valid policy");

    // A successful render first, so that there are outputs a failed run could damage.
    let (code, stderr) = run_render(root.path(), Runner::Direct);
    if code != Some(0) {
        return Err(format!(
            "the valid policy did not render (exit {code:?}):\n{stderr}"
        ));
    }
    for name in [
        "base.rules",
        "base.rules.empty",
        "base.rules6",
        "base.rules6.empty",
    ] {
        if !config.join(name).is_file() {
            return Err(format!("the valid render did not write {name}"));
        }
    }

    let runner = match &case.setup {
        Setup::Policy(bytes) => {
            fs::write(&policy, bytes).expect("write the bad policy");
            Runner::Direct
        }
        Setup::Template(name, text) => {
            fs::create_dir_all(&templates).expect("create the templates directory");
            fs::write(templates.join(name), text).expect("write the template");
            Runner::Direct
        }
        Setup::GeneratedPolicy(make) => {
            fs::write(&policy, make()).expect("write the generated policy");
            Runner::Direct
        }
        Setup::RemovePolicy => {
            fs::remove_file(&policy).expect("remove the policy");
            Runner::Direct
        }
        Setup::PolicyIsDirectory => {
            fs::remove_file(&policy).expect("remove the policy");
            fs::create_dir(&policy).expect("create a directory in its place");
            Runner::Direct
        }
        Setup::PolicyIsFifo => {
            fs::remove_file(&policy).expect("remove the policy");
            let status = std::process::Command::new("mkfifo")
                .arg(&policy)
                .status()
                .expect("mkfifo runs");
            assert!(status.success(), "mkfifo {}", policy.display());
            Runner::Direct
        }
        Setup::PolicyIsDevZero => {
            fs::remove_file(&policy).expect("remove the policy");
            std::os::unix::fs::symlink("/dev/zero", &policy).expect("symlink to /dev/zero");
            Runner::Direct
        }
        Setup::LargePolicy(size) => {
            let mut text = String::from(VALID);
            while text.len() < *size {
                text.push_str("# padding\n");
            }
            text.truncate(*size);
            fs::write(&policy, text).expect("write the large policy");
            Runner::Direct
        }
        Setup::PolicyOwnedByNobody => {
            std::os::unix::fs::chown(&policy, Some(65534), Some(65534)).expect("chown nobody");
            set_mode(&policy, 0o666);
            Runner::Direct
        }
        Setup::TemplateInWorldWritableDirectory => {
            fs::create_dir_all(&templates).expect("create the templates directory");
            fs::write(templates.join("empty.tera"), "*filter\nCOMMIT\n")
                .expect("write the template");
            set_mode(&templates, 0o777);
            Runner::Direct
        }
        Setup::UnreadablePolicy => {
            // nobody must reach the directory (and lock it) but not read the file.
            for dir in [root.path(), &root.path().join("etc"), &config] {
                set_mode(dir, 0o755);
            }
            set_mode(&policy, 0o000);
            Runner::Nobody
        }
    };

    let before = snapshot_tree(&config);
    let (code, stderr) = run_render(root.path(), runner);
    let after = snapshot_tree(&config);

    let mut problems = Vec::new();
    if code != Some(1) {
        problems.push(format!("expected exit code 1, got {code:?}"));
    }
    if stderr.contains("panicked") {
        problems.push("the binary panicked".to_owned());
    }
    if !stderr.starts_with("iptables-ctl: error: ") {
        problems.push("stderr does not start with `iptables-ctl: error: `".to_owned());
    }
    for pattern in case.expect {
        let wanted = pattern
            .replace("{policy}", &policy.display().to_string())
            .replace("{templates}", &templates.display().to_string());
        if !stderr.contains(&wanted) {
            problems.push(format!("stderr lacks {wanted:?}"));
        }
    }
    let leftovers: Vec<_> = after
        .keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".iptables-ctl-"))
        })
        .collect();
    if !leftovers.is_empty() {
        problems.push(format!("temporary files left behind: {leftovers:?}"));
    }
    if before != after {
        let changed: Vec<_> = before
            .keys()
            .chain(after.keys())
            .filter(|p| before.get(*p) != after.get(*p))
            .collect();
        problems.push(format!("etc/iptables changed: {changed:?}"));
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n--- stderr ---\n{stderr}", problems.join("\n")))
    }
}

#[test]
fn bad_input_fails_with_a_location_and_changes_nothing() {
    let cases = cases();
    assert!(
        cases.len() >= 25,
        "the matrix needs at least 25 cases, has {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run_case(case)
                .err()
                .map(|why| format!("=== {} ===\n{why}", case.name))
        })
        .collect();
    println!(
        "bad-input matrix: {} cases run, {} failed",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// A template whose memory doubles with every loop (a string concatenated with itself)
/// reaches the process's address-space limit in seconds, instead of the host's memory:
/// the run ends (Rust aborts on a failed allocation) and the rendered files are as they
/// were.
#[test]
fn a_template_that_needs_more_memory_than_the_limit_ends_the_run_and_writes_nothing() {
    let root = tempfile::tempdir().expect("temporary root");
    let config = root.path().join("etc/iptables");
    fs::create_dir_all(config.join("templates")).expect("create etc/iptables/templates");
    fs::write(config.join("base.toml"), VALID).expect("write the valid policy");
    let (code, stderr) = run_render(root.path(), Runner::Direct);
    assert_eq!(code, Some(0), "the valid policy renders: {stderr}");
    fs::write(
        config.join("templates/rules.tera"),
        "*filter\n{% set_global s = \"x\" %}{% for i in range(end=40) %}{% set_global s = s ~ s %}{% endfor %}{{ s | length }}\nCOMMIT\n",
    )
    .expect("write the template");

    let before = snapshot_tree(&config);
    let (code, stderr) = run_render(root.path(), Runner::Direct);
    assert_eq!(
        code, None,
        "ended by a signal (abort), not an exit: {stderr}"
    );
    assert!(stderr.contains("memory allocation of"), "{stderr}");
    assert_eq!(snapshot_tree(&config), before, "the files are as they were");
}
