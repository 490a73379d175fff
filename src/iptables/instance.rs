//! An instance's files and how they are produced: where its policy, templates and
//! outputs live (optionally under a staged `--root`), and rendering everything in memory
//! so that nothing is written until every check has passed.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::set::{FileSet, OUTPUT_LIMIT};
use crate::files::source;
use crate::iptables::render::{self, RenderRequest, RenderedFile, TemplateKind, Templates};
use crate::iptables::trial::{RulesetTrial, TrialError, TrialReport};
use crate::policy::types::InstanceName;
use crate::policy::{Backend, Policy};

/// Loads the policy of `instance` (from `policy_path`) and renders its four files in
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

/// Proves an instance's rendered files with `trial`, family by family. When the kernel
/// refuses a line that came from a `[[raw]]` entry, the error points at that entry.
pub fn prove(
    policy: &Policy,
    files: &[RenderedFile],
    trial: &dyn RulesetTrial,
) -> anyhow::Result<Vec<(Family, TrialReport)>> {
    let mut reports = Vec::new();
    for family in Family::ALL {
        let find = |kind| {
            files
                .iter()
                .find(|f| f.family == family && f.kind == kind)
                .map(|f| (f.file_name.as_str(), f.text.as_str()))
                .ok_or_else(|| {
                    anyhow::anyhow!("internal error: no {family} {kind:?} file was rendered")
                })
        };
        let (rules, empty) = (find(TemplateKind::Rules)?, find(TemplateKind::Empty)?);
        let error = match trial.trial(family, rules, empty) {
            Ok(report) => {
                reports.push((family, report));
                continue;
            }
            Err(error) => error,
        };
        if let TrialError::Refused {
            line: Some((n, text)),
            stderr,
            file,
            program,
        } = &error
            && let Some(origin) = policy.raw_origin(Backend::Iptables, text, stderr)
        {
            return Err(anyhow::Error::new(origin)
                .context(format!("{file} line {n} was refused by {program}")));
        }
        return Err(error.into());
    }
    Ok(reports)
}

/// The instance's four output files (two families, rules and pass-through), written
/// and read back as one set.
pub fn output_set(layout: &Layout, instance: &InstanceName) -> FileSet {
    let names = Family::ALL
        .into_iter()
        .flat_map(|family| {
            [TemplateKind::Rules, TemplateKind::Empty]
                .map(|kind| render::output_file_name(instance, family, kind))
        })
        .collect();
    FileSet::new(&layout.config_dir(), &instance.to_string(), names)
}

/// One of the instance's output files as it is on disk (bounded, like every read):
/// its path and text. A missing file is an error naming it.
pub fn read_output(
    layout: &Layout,
    instance: &InstanceName,
    family: Family,
    kind: TemplateKind,
) -> anyhow::Result<(PathBuf, String)> {
    let path = layout
        .config_dir()
        .join(render::output_file_name(instance, family, kind));
    let read = || -> anyhow::Result<String> {
        let (bytes, _) = source::read_output(&path, OUTPUT_LIMIT)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        Ok(String::from_utf8(bytes)?)
    };
    let text = read().with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path, text))
}

/// Loads one family's rendered rules and pass-through files, as they are on disk, with
/// `trial`. Errors name the file.
pub fn prove_on_disk(
    layout: &Layout,
    instance: &InstanceName,
    family: Family,
    trial: &dyn RulesetTrial,
) -> anyhow::Result<TrialReport> {
    let read = |kind| {
        read_output(layout, instance, family, kind)
            .map(|(path, text)| (path.display().to_string(), text))
    };
    let (rules_name, rules) = read(TemplateKind::Rules)?;
    let (empty_name, empty) = read(TemplateKind::Empty)?;
    trial
        .trial(family, (&rules_name, &rules), (&empty_name, &empty))
        .with_context(|| format!("cannot interpret {rules_name}"))
}
