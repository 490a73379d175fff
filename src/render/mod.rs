//! Rendering a validated policy into the four `iptables-restore` files of an instance
//! (`<i>.rules`, `<i>.rules.empty`, `<i>.rules6`, `<i>.rules6.empty`) with Tera.
//!
//! The policy is first turned into a typed context ([`context`]) whose strings are all
//! composed from validated values; the templates (built in, or an admin's copy under
//! `/etc/iptables/templates/`) lay the rules out; the output gets a header naming its
//! source and is checked by [`crate::ruleset::check_shape`] before anyone sees it.

pub mod context;

use std::io;
use std::path::{Path, PathBuf};

use tera::Tera;

use crate::policy::Policy;
use crate::policy::types::{Family, InstanceName};
use crate::ruleset::{self, ShapeError};
use crate::source::{self, SourceError};

/// The built-in templates, embedded at build time.
const BUILT_IN: [(TemplateKind, &str); 2] = [
    (
        TemplateKind::Rules,
        include_str!("../../templates/rules.tera"),
    ),
    (
        TemplateKind::Empty,
        include_str!("../../templates/empty.tera"),
    ),
];

/// The two templates an instance is rendered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// The rules in force (`rules.tera`).
    Rules,
    /// The pass-through rules loaded on stop (`empty.tera`).
    Empty,
}

impl TemplateKind {
    /// File name of the template, built in or under the override directory.
    pub fn file_name(self) -> &'static str {
        match self {
            TemplateKind::Rules => "rules.tera",
            TemplateKind::Empty => "empty.tera",
        }
    }
}

/// Where a template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// Embedded in the binary.
    BuiltIn,
    /// An admin's file.
    File(PathBuf),
}

/// Why rendering failed. Nothing is written when it does.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An admin's template exists but cannot be read.
    #[error("cannot read template {}", path.display())]
    ReadTemplate {
        /// The template file.
        path: PathBuf,
        /// Why not.
        source: SourceError,
    },
    /// Tera refused a template or failed while rendering it.
    #[error("template {template}: {report}")]
    Template {
        /// The template's path, or `built-in rules.tera`.
        template: String,
        /// Tera's report, with line and column.
        report: String,
    },
    /// The rendered file does not have the shape the tool guarantees.
    #[error("{file}, rendered from the template {template}, is refused at {error}")]
    Shape {
        /// The output file name.
        file: String,
        /// The template it came from.
        template: String,
        /// The offending line.
        error: ShapeError,
    },
}

/// The templates of one run.
pub struct Templates {
    tera: Tera,
    origins: [(TemplateKind, TemplateOrigin); 2],
}

impl Templates {
    /// The built-in templates, with any admin copies found in `override_dir` in their place.
    pub fn load(override_dir: &Path) -> Result<Templates, RenderError> {
        let mut tera = Tera::new();
        // Nothing rendered here is HTML; escaping would corrupt rules. Safety comes from
        // the validated context and the shape check instead.
        tera.autoescape_on(Vec::<&str>::new());
        let mut origins = BUILT_IN.map(|(kind, _)| (kind, TemplateOrigin::BuiltIn));
        for ((kind, built_in), origin) in BUILT_IN.iter().zip(origins.iter_mut()) {
            let path = override_dir.join(kind.file_name());
            let text = match source::read_if_present(&path, source::TEMPLATE_LIMIT) {
                Ok(Some(bytes)) => {
                    origin.1 = TemplateOrigin::File(path.clone());
                    String::from_utf8(bytes).map_err(|e| RenderError::ReadTemplate {
                        path: path.clone(),
                        source: SourceError::Io(io::Error::new(io::ErrorKind::InvalidData, e)),
                    })?
                }
                Ok(None) => (*built_in).to_owned(),
                Err(source) => return Err(RenderError::ReadTemplate { path, source }),
            };
            let name = template_name(*kind, &origin.1);
            tera.add_raw_template(&name, &text)
                .map_err(|e| RenderError::Template {
                    template: name.clone(),
                    report: e.to_string(),
                })?;
        }
        Ok(Templates { tera, origins })
    }

    fn origin(&self, kind: TemplateKind) -> &TemplateOrigin {
        self.origins
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, o)| o)
            .unwrap_or(&TemplateOrigin::BuiltIn)
    }
}

/// The name a template is registered under, which Tera prints in its reports: the
/// admin's path, so errors point at the file to fix.
fn template_name(kind: TemplateKind, origin: &TemplateOrigin) -> String {
    match origin {
        TemplateOrigin::BuiltIn => format!("built-in {}", kind.file_name()),
        TemplateOrigin::File(path) => path.display().to_string(),
    }
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Family the file is for.
    pub family: Family,
    /// Rules or pass-through.
    pub kind: TemplateKind,
    /// File name inside `/etc/iptables`.
    pub file_name: String,
    /// The file's content.
    pub text: String,
}

impl RenderedFile {
    /// The files as `(file name, content)` pairs, ready for [`crate::files::write_files`].
    pub fn outputs(files: Vec<RenderedFile>) -> Vec<(String, String)> {
        files.into_iter().map(|f| (f.file_name, f.text)).collect()
    }
}

/// What to render.
pub struct RenderRequest<'a> {
    /// The instance.
    pub instance: &'a InstanceName,
    /// Its validated policy.
    pub policy: &'a Policy,
    /// Where the policy was read from (for the header).
    pub policy_path: &'a Path,
}

/// File name of one of an instance's outputs.
pub fn output_file_name(instance: &InstanceName, family: Family, kind: TemplateKind) -> String {
    let base = match family {
        Family::Ipv4 => "rules",
        Family::Ipv6 => "rules6",
    };
    match kind {
        TemplateKind::Rules => format!("{instance}.{base}"),
        TemplateKind::Empty => format!("{instance}.{base}.empty"),
    }
}

/// Renders all four files of an instance: IPv4 rules and empty, then IPv6 rules and empty.
pub fn render(
    templates: &Templates,
    request: &RenderRequest,
) -> Result<Vec<RenderedFile>, RenderError> {
    let mut files = Vec::with_capacity(4);
    for family in Family::ALL {
        let ctx = context::build(request.policy, family);
        let tera_ctx = tera::Context::from_serialize(&ctx).map_err(|e| RenderError::Template {
            template: "context".to_owned(),
            report: e.to_string(),
        })?;
        for kind in [TemplateKind::Rules, TemplateKind::Empty] {
            let origin = templates.origin(kind);
            let name = template_name(kind, origin);
            let body =
                templates
                    .tera
                    .render(&name, &tera_ctx)
                    .map_err(|e| RenderError::Template {
                        template: name.clone(),
                        report: e.to_string(),
                    })?;
            let file_name = output_file_name(request.instance, family, kind);
            let text = format!("{}{}", header(request, family, kind, origin), tidy(&body));
            ruleset::check_shape(&text).map_err(|error| RenderError::Shape {
                file: file_name.clone(),
                template: name.clone(),
                error,
            })?;
            files.push(RenderedFile {
                family,
                kind,
                file_name,
                text,
            });
        }
    }
    Ok(files)
}

/// The comment block every file starts with. Paths are shown with control characters
/// replaced, so an odd file name cannot break out of the comment.
fn header(
    request: &RenderRequest,
    family: Family,
    kind: TemplateKind,
    origin: &TemplateOrigin,
) -> String {
    let template = match origin {
        TemplateOrigin::BuiltIn => format!("the built-in template {}", kind.file_name()),
        TemplateOrigin::File(path) => format!("the template {}", printable_path(path)),
    };
    let (what, restore) = match (family, kind) {
        (Family::Ipv4, TemplateKind::Rules) => ("IPv4 rules", "iptables-restore"),
        (Family::Ipv4, TemplateKind::Empty) => (
            "IPv4 pass-through rules (loaded on stop)",
            "iptables-restore",
        ),
        (Family::Ipv6, TemplateKind::Rules) => ("IPv6 rules", "ip6tables-restore"),
        (Family::Ipv6, TemplateKind::Empty) => (
            "IPv6 pass-through rules (loaded on stop)",
            "ip6tables-restore",
        ),
    };
    format!(
        "# Generated by iptables-ctl {version}: {what} of instance {instance}.\n\
         # Source: {policy}, rendered with {template}.\n\
         # Do not edit: change the policy, then run `iptables-ctl reload {instance}`.\n\
         # Load with `{restore} -w -n`; it never flushes Docker's chains.\n",
        version = env!("CARGO_PKG_VERSION"),
        instance = request.instance,
        policy = printable_path(request.policy_path),
    )
}

fn printable_path(path: &Path) -> String {
    path.display()
        .to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Trailing spaces removed, runs of blank lines folded to one, one final newline: the
/// templates stay readable without whitespace-control acrobatics.
fn tidy(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut blank_run = true;
    for line in body.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            if !blank_run {
                out.push('\n');
            }
            blank_run = true;
        } else {
            out.push_str(line);
            out.push('\n');
            blank_run = false;
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
