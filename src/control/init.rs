//! `init`: writes the starter policy (the host's SSH port kept open, `external =
//! "auto"`) and says what to do next, or hands its text back for `--stdout`. It never
//! replaces a policy unless told to (`--force`).

use std::path::Path;

use anyhow::bail;
use serde::Serialize;

use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::{conflicts, lock_dir};
use crate::files;
use crate::files::layout::Layout;
use crate::host::HostProbe;
use crate::policy::starter::{self, StarterFacts};
use crate::policy::types::InstanceName;

/// Options of `init`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InitOptions {
    /// Replace a policy that exists.
    pub force: bool,
    /// Hand the text back instead of writing it.
    pub stdout: bool,
}

/// What to do after `init`, given what is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub(crate) enum NextStep {
    /// This instance is installed: check the new policy, then reload it.
    CheckAndReload,
    /// Another instance is installed, and only one can be.
    OtherInstanceInstalled {
        /// The installed instance.
        other: String,
    },
    /// Nothing is installed: check the policy, then install it.
    CheckAndInstall,
}

/// `init`: the starter policy of `instance`, written to `path` (or, with `stdout`,
/// recorded as a document to print).
pub(crate) fn init(
    layout: &Layout,
    instance: &InstanceName,
    path: &Path,
    host: &dyn HostProbe,
    options: InitOptions,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let facts = StarterFacts::gather(host);
    let (text, policy) = starter::starter_policy(&facts, path)?;
    if options.stdout {
        outcome.push(Event::Document { text });
        return Ok(Verdict::Done);
    }
    let (dir, name) = files::dir_and_name(path)?;
    files::create_dirs(dir)?;
    let _lock = lock_dir(dir, outcome)?;
    if path.exists() && !options.force {
        bail!(
            "{} already exists; edit it, or pass --force to replace it with a starter policy",
            path.display()
        );
    }
    files::write_files(dir, &[(name, text)])?;
    outcome.push(Event::StarterWritten {
        path: path.to_owned(),
        summary: starter::summary(&facts, &policy),
    });
    let root = layout.root();
    let next = if conflicts::enabled_under(root, instance) {
        NextStep::CheckAndReload
    } else if let Some(other) = conflicts::other_instances(root, instance).first() {
        NextStep::OtherInstanceInstalled {
            other: other.clone(),
        }
    } else {
        NextStep::CheckAndInstall
    };
    outcome.push(Event::Next {
        instance: instance.to_string(),
        step: next,
    });
    Ok(Verdict::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{FakeHost, staged};

    #[test]
    fn init_writes_the_starter_once_and_says_what_comes_next() {
        let staged = staged(None);
        let path = &staged.policy_path;
        let mut outcome = Outcome::new();
        let options = InitOptions::default();
        init(
            &staged.layout,
            &staged.instance,
            path,
            &FakeHost,
            options,
            &mut outcome,
        )
        .unwrap();
        assert!(matches!(
            &outcome.events()[0],
            Event::StarterWritten { path: p, summary } if p == path && !summary.is_empty()
        ));
        assert_eq!(
            outcome.events()[1],
            Event::Next {
                instance: "base".to_owned(),
                step: NextStep::CheckAndInstall
            }
        );
        let written = std::fs::read(path).unwrap();

        // A second init refuses to replace it; --stdout hands the text back instead.
        let mut again = Outcome::new();
        let error = init(
            &staged.layout,
            &staged.instance,
            path,
            &FakeHost,
            options,
            &mut again,
        )
        .unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        let stdout = InitOptions {
            stdout: true,
            ..options
        };
        init(
            &staged.layout,
            &staged.instance,
            path,
            &FakeHost,
            stdout,
            &mut again,
        )
        .unwrap();
        assert!(matches!(again.events(), [Event::Document { text }] if text.as_bytes() == written));
        assert_eq!(std::fs::read(path).unwrap(), written);
    }
}
