//! The record of the ipsets each instance loaded since boot
//! (`/run/iptables-ctl/INSTANCE.sets.json`): what may be destroyed once no file of the
//! instance defines it any more (a list removed, or no longer long) and no rule
//! matches it, and what `uninstall` destroys beside the sets its files define. It lives
//! under `/run` because the sets do not outlive a boot either. Read and written under
//! the instance's sets lock (see `backend.rs`).

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::files::{self, layout::Layout, source};
use crate::iptables::sets;
use crate::policy::types::InstanceName;

/// The names recorded for one instance.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// The sets loaded since boot and not destroyed since, sorted.
    loaded: Vec<String>,
}

fn file_name(instance: &InstanceName) -> String {
    format!("{instance}.sets.json")
}

fn path(layout: &Layout, instance: &InstanceName) -> PathBuf {
    layout.run_dir().join(file_name(instance))
}

/// The sets `instance` loaded since boot and not destroyed since. A record that is
/// missing or unreadable is taken for none: what it held is then left in the kernel,
/// never destroyed on a guess. Only names of this tool's sets are taken.
pub fn recorded(layout: &Layout, instance: &InstanceName) -> Vec<String> {
    source::read_consulted(&path(layout, instance))
        .and_then(|text| serde_json::from_str::<Record>(&text).ok())
        .map(|record| {
            record
                .loaded
                .into_iter()
                .filter(|name| name.starts_with(sets::PREFIX) && !sets::is_temporary(name))
                .collect()
        })
        .unwrap_or_default()
}

/// Records that `instance` loaded `names` (beside what it had loaded before).
pub fn add(layout: &Layout, instance: &InstanceName, names: &[String]) -> anyhow::Result<()> {
    let mut all = recorded(layout, instance);
    all.extend(names.iter().cloned());
    write(layout, instance, all)
}

/// Replaces the record of `instance` with `names` (what is still in the kernel).
pub fn write(
    layout: &Layout,
    instance: &InstanceName,
    mut names: Vec<String>,
) -> anyhow::Result<()> {
    names.sort();
    names.dedup();
    let dir = layout.run_dir();
    files::create_dirs(&dir)?;
    let text = serde_json::to_string_pretty(&Record { loaded: names })
        .context("cannot encode the record of loaded sets")?;
    files::write_files(&dir, &[(file_name(instance), format!("{text}\n"))])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What was added is read back once each, sorted; a name that is not one of this
    /// tool's sets (an edited record) is never taken.
    #[test]
    fn loaded_sets_are_recorded_once_each_and_only_this_tools() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        let instance = InstanceName::default();
        assert!(recorded(&layout, &instance).is_empty());
        add(&layout, &instance, &["ictl.base.b.v4".to_owned()]).unwrap();
        add(
            &layout,
            &instance,
            &["ictl.base.a.v4".to_owned(), "ictl.base.b.v4".to_owned()],
        )
        .unwrap();
        assert_eq!(
            recorded(&layout, &instance),
            ["ictl.base.a.v4", "ictl.base.b.v4"]
        );

        std::fs::write(
            path(&layout, &instance),
            r#"{"loaded": ["office", "ictl.base.a.v4", "ictl.base.a.v4~"]}"#,
        )
        .unwrap();
        assert_eq!(recorded(&layout, &instance), ["ictl.base.a.v4"]);
        std::fs::write(path(&layout, &instance), "not json").unwrap();
        assert!(recorded(&layout, &instance).is_empty());
    }
}
