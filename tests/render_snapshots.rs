//! Golden-file tests: every policy under tests/policies (and the shipped example) renders
//! to exactly the committed snapshot, for all four output files.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

use std::io;
use std::path::Path;

use iptables_ctl::host::{HostProbe, SshConnection};
use iptables_ctl::instance::{Layout, render_instance};

/// A host whose default route is on eth0, for policies that say `auto`.
struct FixedHost;

impl HostProbe for FixedHost {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        Ok(vec!["eth0".to_owned()])
    }
    fn sshd_ports(&self) -> Vec<u16> {
        vec![22]
    }
    fn ssh_connection(&self) -> Option<SshConnection> {
        None
    }
}

fn render_all(policy: &Path) -> String {
    let instance = "base".parse().expect("instance");
    // No templates directory in this layout: the built-in templates are used.
    let layout = Layout::new("/nonexistent-root");
    let (_, files) = render_instance(&layout, &instance, policy, &FixedHost)
        .unwrap_or_else(|e| panic!("{}: {e:#}", policy.display()));
    files
        .iter()
        .map(|f| format!("=== {} ===\n{}", f.file_name, f.text))
        .collect()
}

#[test]
fn rendered_policies_match_snapshots() {
    let mut policies: Vec<_> = std::fs::read_dir("tests/policies")
        .expect("tests/policies")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    policies.sort();
    policies.push("etc/iptables/base.toml".into());
    assert!(
        policies.len() >= 7,
        "expected at least six policies plus the example"
    );
    for policy in policies {
        let name = policy
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        insta::assert_snapshot!(name, render_all(&policy));
    }
}
