//! An instance's files and how they are produced: which output files it has
//! ([`OutputFiles`], the one place that knows their names), where its policy, templates
//! and outputs live (optionally under a staged `--root`), and rendering everything in
//! memory so that nothing is written until every check has passed.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::set::{FileSet, OUTPUT_LIMIT};
use crate::files::source;
use crate::iptables::render::{self, FileKind, RenderRequest, RenderedFile, Templates};
use crate::iptables::sets::{self, SetDefinition};
use crate::iptables::trial::{RulesetTrial, TrialError, TrialReport};
use crate::policy::types::InstanceName;
use crate::policy::{BackendKind, Policy};

/// Loads the policy of `instance` (from `policy_path`) and renders its six files in
/// memory, checked for shape but not yet loaded into a kernel.
pub fn render_instance(
    layout: &Layout,
    instance: &InstanceName,
    policy_path: &Path,
) -> anyhow::Result<(Policy, Vec<RenderedFile>)> {
    let policy = Policy::load(policy_path)?;
    let files = render_policy(layout, instance, &policy)?;
    Ok((policy, files))
}

/// Renders an already loaded `policy` as [`render_instance`] does. The result depends
/// on the policy and the templates only, not on the host.
pub fn render_policy(
    layout: &Layout,
    instance: &InstanceName,
    policy: &Policy,
) -> anyhow::Result<Vec<RenderedFile>> {
    // The header names the policy as the booted system will see it, not the staging path.
    let policy_path = &layout.as_booted(policy.path());
    let templates = Templates::load(&layout.templates_dir())?;
    render::render(
        &templates,
        &RenderRequest {
            instance,
            policy,
            policy_path,
        },
    )
    .with_context(|| format!("cannot render instance {instance}"))
}

/// Proves an instance's rendered files (each family's sets, rules and pass-through) with
/// `trial`, both families at once (each in a
/// namespace of its own: the kernel's commit of one family need not wait for the
/// other's). When the kernel refuses a line that came from a `[[raw]]` entry, the error
/// points at that entry; with both refused, the IPv4 error is the one reported.
pub fn prove(
    policy: &Policy,
    files: &[RenderedFile],
    trial: &dyn RulesetTrial,
) -> anyhow::Result<Vec<(Family, TrialReport)>> {
    let results = each_family_at_once(|family| -> anyhow::Result<TrialReport> {
        let find = |kind| {
            files
                .iter()
                .find(|f| f.family == family && f.kind == kind)
                .map(|f| (f.file_name.as_str(), f.text.as_str()))
                .ok_or_else(|| {
                    anyhow::anyhow!("internal error: no {family} {kind:?} file was rendered")
                })
        };
        let (sets, rules, empty) = (
            find(FileKind::Sets)?,
            find(FileKind::Rules)?,
            find(FileKind::Empty)?,
        );
        Ok(trial.trial(family, sets, rules, empty)?)
    });
    let mut reports = Vec::new();
    for (family, result) in results {
        let error = match result {
            Ok(report) => {
                reports.push((family, report));
                continue;
            }
            Err(error) => error,
        };
        if let Some(TrialError::Refused {
            line: Some((n, text)),
            stderr,
            file,
            program,
        }) = error.downcast_ref::<TrialError>()
            && let Some(origin) = policy.raw_origin(BackendKind::Iptables, text, stderr)
        {
            return Err(anyhow::Error::new(origin)
                .context(format!("{file} line {n} was refused by {program}")));
        }
        return Err(error);
    }
    Ok(reports)
}

/// The files an instance's rules are rendered to: for each family, the rules in force,
/// the pass-through rules loaded on stop and the ipsets the rules match (`<i>.rules`,
/// `<i>.rules.empty`, `<i>.sets`, `<i>.rules6`, `<i>.rules6.empty`, `<i>.sets6` in the
/// configuration directory). This type alone knows their names, the set they are
/// written and read back as, and how one of them is read.
#[derive(Debug, Clone)]
pub struct OutputFiles {
    dir: PathBuf,
    instance: InstanceName,
}

impl OutputFiles {
    /// The output files of `instance` under `layout`.
    pub fn new(layout: &Layout, instance: &InstanceName) -> OutputFiles {
        OutputFiles {
            dir: layout.config_dir(),
            instance: instance.clone(),
        }
    }

    /// The file name of one output of `instance`, such as `base.rules6.empty`.
    pub fn name(instance: &InstanceName, family: Family, kind: FileKind) -> String {
        let (rules, sets) = match family {
            Family::Ipv4 => ("rules", "sets"),
            Family::Ipv6 => ("rules6", "sets6"),
        };
        match kind {
            FileKind::Rules => format!("{instance}.{rules}"),
            FileKind::Empty => format!("{instance}.{rules}.empty"),
            FileKind::Sets => format!("{instance}.{sets}"),
        }
    }

    /// Every output's file name, in rendering order: IPv4 rules, pass-through and sets,
    /// then IPv6's.
    pub fn names(&self) -> Vec<String> {
        Family::ALL
            .into_iter()
            .flat_map(|family| {
                [FileKind::Rules, FileKind::Empty, FileKind::Sets]
                    .map(|kind| OutputFiles::name(&self.instance, family, kind))
            })
            .collect()
    }

    /// The outputs as one set, written and read back together.
    pub fn set(&self) -> FileSet {
        FileSet::new(&self.dir, &self.instance.to_string(), self.names())
    }

    /// Where one output is.
    pub fn path(&self, family: Family, kind: FileKind) -> PathBuf {
        self.dir
            .join(OutputFiles::name(&self.instance, family, kind))
    }

    /// One output as it is on disk (bounded, like every read): its path and text. A
    /// missing file is an error naming it.
    pub fn read(&self, family: Family, kind: FileKind) -> anyhow::Result<(PathBuf, String)> {
        let path = self.path(family, kind);
        let text = read_if_present(&path)?.ok_or_else(|| {
            anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
                .context(format!("cannot read {}", path.display()))
        })?;
        Ok((path, text))
    }

    /// One family's sets file as it is on disk, or, when there is none, no sets: files
    /// rendered before sets existed have none, and their rules match none.
    pub fn read_sets(&self, family: Family) -> anyhow::Result<(PathBuf, String)> {
        let path = self.path(family, FileKind::Sets);
        let text = read_if_present(&path)?.unwrap_or_default();
        Ok((path, text))
    }

    /// [`OutputFiles::read_sets`], with the sets it defines, read as strictly as
    /// everything that loads it reads it ([`sets::parse`]).
    pub fn read_set_definitions(
        &self,
        family: Family,
    ) -> anyhow::Result<(PathBuf, String, Vec<SetDefinition>)> {
        let (path, text) = self.read_sets(family)?;
        let defined = sets::parse(&text, family).map_err(|message| {
            anyhow::anyhow!(
                "{} is not a sets file as iptables-ctl writes them: {message}",
                path.display()
            )
        })?;
        Ok((path, text, defined))
    }
}

/// The text of the output at `path` (bounded), or `None` when there is no such file.
fn read_if_present(path: &Path) -> anyhow::Result<Option<String>> {
    let read = || -> anyhow::Result<Option<String>> {
        match source::read_output(path, OUTPUT_LIMIT)? {
            Some((bytes, _)) => Ok(Some(String::from_utf8(bytes)?)),
            None => Ok(None),
        }
    };
    read().with_context(|| format!("cannot read {}", path.display()))
}

/// Loads one family's rendered sets, rules and pass-through files, as they are on disk,
/// with `trial`. Errors name the file.
pub fn prove_on_disk(
    layout: &Layout,
    instance: &InstanceName,
    family: Family,
    trial: &dyn RulesetTrial,
) -> anyhow::Result<TrialReport> {
    let outputs = OutputFiles::new(layout, instance);
    let read = |kind| {
        outputs
            .read(family, kind)
            .map(|(path, text)| (path.display().to_string(), text))
    };
    let (rules_name, rules) = read(FileKind::Rules)?;
    let (empty_name, empty) = read(FileKind::Empty)?;
    let (sets_path, sets) = outputs.read_sets(family)?;
    let sets_name = sets_path.display().to_string();
    trial
        .trial(
            family,
            (&sets_name, &sets),
            (&rules_name, &rules),
            (&empty_name, &empty),
        )
        .with_context(|| format!("cannot interpret {rules_name}"))
}

/// [`prove_on_disk`] for both families at once, each trial a thread of its own as in
/// [`prove`] (a trial mostly waits for the kernel): the reports in [`Family::ALL`]'s
/// order, or the first family's error in that order.
pub fn prove_all_on_disk(
    layout: &Layout,
    instance: &InstanceName,
    trial: &dyn RulesetTrial,
) -> anyhow::Result<Vec<(Family, TrialReport)>> {
    each_family_at_once(|family| prove_on_disk(layout, instance, family, trial))
        .into_iter()
        .map(|(family, result)| result.map(|report| (family, report)))
        .collect()
}

/// `prove_family` run for every family of [`Family::ALL`] at once, a thread each (a
/// trial mostly waits for the kernel, and one family's commit need not wait for the
/// other's): the results in that order, a thread that died as [`TrialError::Thread`].
fn each_family_at_once<T: Send, E: From<TrialError> + Send>(
    prove_family: impl Fn(Family) -> Result<T, E> + Sync,
) -> Vec<(Family, Result<T, E>)> {
    let prove_family = &prove_family;
    std::thread::scope(|scope| {
        let running: Vec<_> = Family::ALL
            .into_iter()
            .map(|family| (family, scope.spawn(move || prove_family(family))))
            .collect();
        running
            .into_iter()
            .map(|(family, handle)| {
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err(TrialError::Thread.into()));
                (family, result)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_are_named_and_read_in_one_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        let instance: InstanceName = "edge".parse().expect("name");
        let outputs = OutputFiles::new(&layout, &instance);
        assert_eq!(
            outputs.names(),
            [
                "edge.rules",
                "edge.rules.empty",
                "edge.sets",
                "edge.rules6",
                "edge.rules6.empty",
                "edge.sets6"
            ]
        );
        let path = outputs.path(Family::Ipv6, FileKind::Empty);
        assert_eq!(path, dir.path().join("etc/iptables/edge.rules6.empty"));
        let missing = outputs
            .read(Family::Ipv6, FileKind::Empty)
            .expect_err("nothing written yet");
        assert!(
            format!("{missing:#}").contains("edge.rules6.empty"),
            "{missing:#}"
        );
        std::fs::create_dir_all(layout.config_dir()).expect("config dir");
        std::fs::write(&path, "*filter\nCOMMIT\n").expect("write");
        let (read_path, text) = outputs
            .read(Family::Ipv6, FileKind::Empty)
            .expect("readable");
        assert_eq!((read_path, text.as_str()), (path, "*filter\nCOMMIT\n"));
        assert_eq!(
            OutputFiles::name(&instance, Family::Ipv4, FileKind::Rules),
            "edge.rules"
        );
    }

    /// Instance `edge` of a one-line policy in a fresh tree, rendered in memory.
    fn rendered_edge() -> (tempfile::TempDir, Layout, InstanceName, Vec<RenderedFile>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        let instance: InstanceName = "edge".parse().expect("name");
        std::fs::create_dir_all(layout.config_dir()).expect("config dir");
        let policy_path = layout.policy_path(&instance);
        std::fs::write(&policy_path, "[interfaces]\nexternal = [\"eth0\"]\n").expect("policy");
        let (_, files) = render_instance(&layout, &instance, &policy_path).expect("renders");
        (dir, layout, instance, files)
    }

    /// `status` reads back the version that rendered the files in force from their
    /// first line: every file the renderer writes must open with that stamp.
    #[test]
    fn every_rendered_file_reads_back_as_rendered_by_this_version() {
        let (_dir, _layout, _instance, files) = rendered_edge();
        assert_eq!(files.len(), 6);
        for file in &files {
            assert_eq!(
                crate::files::stamp::rendered_by(file.text.as_bytes()),
                Some(crate::files::stamp::VERSION),
                "{}: {}",
                file.file_name,
                file.text.lines().next().unwrap_or_default()
            );
        }
    }

    /// A trial that returns only once both families are inside it at the same time (or
    /// fails after a bound, so that one family after the other fails the test instead of
    /// hanging it).
    struct RendezvousTrial(crate::control::fakes::Rendezvous);

    impl RulesetTrial for RendezvousTrial {
        fn trial(
            &self,
            family: Family,
            sets: (&str, &str),
            rules: (&str, &str),
            empty: (&str, &str),
        ) -> Result<TrialReport, TrialError> {
            if !self.0.arrive() {
                return Err(TrialError::Thread);
            }
            crate::control::fakes::AcceptingTrial.trial(family, sets, rules, empty)
        }
    }

    /// `status` and the lockout check prove the files on disk: both families at once,
    /// the reports in the families' order.
    #[test]
    fn the_files_on_disk_are_proven_for_both_families_at_once() {
        let (_dir, layout, instance, files) = rendered_edge();
        for file in &files {
            std::fs::write(layout.config_dir().join(&file.file_name), &file.text).expect("write");
        }
        let trial = RendezvousTrial(crate::control::fakes::Rendezvous::new(2));
        let reports = prove_all_on_disk(&layout, &instance, &trial).expect("both proven");
        let families: Vec<Family> = reports.iter().map(|(family, _)| *family).collect();
        assert_eq!(families, Family::ALL);
    }
}
