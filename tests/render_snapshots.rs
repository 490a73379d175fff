//! Golden-file tests: every policy under tests/policies (and the shipped example) renders
//! to exactly the committed snapshot, for all four output files.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use common::{example_policies, render_policy};

#[test]
fn rendered_policies_match_snapshots() {
    let policies = example_policies();
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
        let all: String = render_policy(&policy)
            .iter()
            .map(|f| format!("=== {} ===\n{}", f.file_name, f.text))
            .collect();
        insta::assert_snapshot!(name, all);
    }
}
