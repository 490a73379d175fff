//! Rendering a validated policy into the files of an instance: per family, the
//! `iptables-restore` rules and pass-through files (`<i>.rules`, `<i>.rules.empty`,
//! `<i>.rules6`, `<i>.rules6.empty`) with Tera, and the `ipset restore` file of the
//! sets its rules match (`<i>.sets`, `<i>.sets6`: [`crate::iptables::sets`], not a
//! template, since nothing about it is the admin's to lay out).
//!
//! The policy is first planned per family ([`crate::plan::FamilyPlan`]: every entry
//! expanded into typed rules), then each plan is spelled in iptables syntax as the
//! template context ([`context`]), whose strings are all composed from validated
//! values; the templates (built in, or an admin's copy under `/etc/iptables/templates/`)
//! lay the rules out; the output gets a header naming its source and is checked by
//! [`crate::iptables::shape::check_shape`] before anyone sees it.

pub mod context;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tera::Tera;

use crate::family::Family;
use crate::files::set::OUTPUT_LIMIT;
use crate::files::source::{self, SourceError};
use crate::files::stamp;
use crate::iptables::instance::OutputFiles;
use crate::iptables::sets;
use crate::iptables::shape::{self, ShapeError};
use crate::plan::FamilyPlan;
use crate::policy::types::InstanceName;
use crate::policy::{BackendKind, Policy};

/// The built-in templates, embedded at build time.
const BUILT_IN: [(TemplateKind, &str); 2] = [
    (
        TemplateKind::Rules,
        include_str!("../../../templates/rules.tera"),
    ),
    (
        TemplateKind::Empty,
        include_str!("../../../templates/empty.tera"),
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

/// What one of an instance's files is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The rules in force, from `rules.tera`.
    Rules,
    /// The pass-through rules loaded on stop, from `empty.tera`.
    Empty,
    /// The ipsets the rules match, loaded before them.
    Sets,
}

impl From<TemplateKind> for FileKind {
    fn from(kind: TemplateKind) -> FileKind {
        match kind {
            TemplateKind::Rules => FileKind::Rules,
            TemplateKind::Empty => FileKind::Empty,
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

/// How long rendering an instance's files may take. The built-in templates take
/// milliseconds; an admin's template that loops without end (nested `range`s) is
/// stopped here with an error instead of holding the directory lock forever.
pub const RENDER_TIME_LIMIT: Duration = Duration::from_secs(10);

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
    /// A template produced more than a rendered file may hold.
    #[error(
        "template {template}: its output exceeds {limit} bytes (the limit keeps every run bounded; a rendered file holds at most {max_rules} rules)",
        limit = OUTPUT_LIMIT,
        max_rules = shape::MAX_RULES
    )]
    TooLarge {
        /// The template's path, or `built-in rules.tera`.
        template: String,
    },
    /// Rendering did not finish in time.
    #[error(
        "template {template}: rendering did not finish within {} s; the template loops too long (nested `for` or `range`?) and was stopped; nothing was written",
        RENDER_TIME_LIMIT.as_secs()
    )]
    TooSlow {
        /// The template being rendered when time ran out.
        template: String,
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
    /// Shared with the thread that renders, which may outlive a render that ran out of
    /// time.
    tera: Arc<Tera>,
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
        Ok(Templates {
            tera: Arc::new(tera),
            origins,
        })
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
    /// Rules, pass-through or sets.
    pub kind: FileKind,
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

/// Renders all six files of an instance: IPv4 rules, empty and sets, then IPv6's.
/// Every template's output is bounded by [`OUTPUT_LIMIT`] and the whole rendering by
/// [`RENDER_TIME_LIMIT`].
pub fn render(
    templates: &Templates,
    request: &RenderRequest,
) -> Result<Vec<RenderedFile>, RenderError> {
    // What each file is, and what the rendering thread renders for it (it owns its
    // contexts: it may outlive a render that ran out of time).
    let mut outputs = Vec::with_capacity(4);
    let mut jobs = Vec::with_capacity(4);
    let mut set_files = Vec::with_capacity(2);
    for family in Family::ALL {
        let plan = FamilyPlan::build(request.policy, BackendKind::Iptables, family);
        set_files.push((family, sets::render(request.instance, &plan)));
        let ctx = context::build(request.instance, &plan);
        let tera_ctx = tera::Context::from_serialize(&ctx).map_err(|e| RenderError::Template {
            template: "context".to_owned(),
            report: e.to_string(),
        })?;
        for (kind, ctx) in [
            (TemplateKind::Rules, tera_ctx.clone()),
            (TemplateKind::Empty, tera_ctx),
        ] {
            let name = template_name(kind, templates.origin(kind));
            outputs.push((family, kind, name.clone()));
            jobs.push((name, ctx));
        }
    }
    let bodies = render_bounded(&templates.tera, jobs)?;
    let mut files = Vec::with_capacity(6);
    for ((family, kind, name), body) in outputs.into_iter().zip(bodies) {
        let origin = templates.origin(kind);
        let kind = FileKind::from(kind);
        let file_name = OutputFiles::name(request.instance, family, kind);
        let text = format!("{}{}", header(request, family, kind, origin), tidy(&body));
        // The header adds to the template's output: what is written must still be
        // readable back (the set refuses files over the limit).
        if text.len() as u64 > OUTPUT_LIMIT {
            return Err(RenderError::TooLarge { template: name });
        }
        shape::check_shape(&text).map_err(|error| RenderError::Shape {
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
    for (family, body) in set_files {
        let file_name = OutputFiles::name(request.instance, family, FileKind::Sets);
        let text = format!(
            "{}{body}",
            header(request, family, FileKind::Sets, &TemplateOrigin::BuiltIn)
        );
        let name = format!("the {family} sets");
        if text.len() as u64 > OUTPUT_LIMIT {
            return Err(RenderError::TooLarge { template: name });
        }
        // What loads it reads it back as strictly: a file that would not read back is
        // this program's error, found before anything is written.
        sets::parse(&text, family).map_err(|message| RenderError::Template {
            template: name,
            report: message,
        })?;
        files.push(RenderedFile {
            family,
            kind: FileKind::Sets,
            file_name,
            text,
        });
    }
    // In the order an instance's files are named: each family's rules, pass-through
    // and sets.
    files.sort_by_key(|f| {
        (
            Family::ALL.iter().position(|x| *x == f.family),
            f.kind as u8,
        )
    });
    Ok(files)
}

/// Renders each `(template name, context)` on a thread of its own, each output bounded
/// by [`OUTPUT_LIMIT`], and waits at most [`RENDER_TIME_LIMIT`] for all of them. A
/// template that has not finished by then is left to the thread, which stops at its
/// next write (the deadline is checked there) or ends with the process: Tera cannot be
/// interrupted, and the command fails at once with [`RenderError::TooSlow`].
fn render_bounded(
    tera: &Arc<Tera>,
    jobs: Vec<(String, tera::Context)>,
) -> Result<Vec<String>, RenderError> {
    let deadline = Instant::now() + RENDER_TIME_LIMIT;
    let (sender, receiver) = mpsc::channel();
    let tera = Arc::clone(tera);
    // The template being rendered, to name the one that ran out of time.
    let rendering = Arc::new(Mutex::new(String::new()));
    let in_thread = Arc::clone(&rendering);
    let spawned = std::thread::Builder::new()
        .name("render".to_owned())
        .spawn(move || {
            let mut bodies = Vec::with_capacity(jobs.len());
            for (name, ctx) in jobs {
                if let Ok(mut current) = in_thread.lock() {
                    current.clone_from(&name);
                }
                let mut output = BoundedOutput::new(deadline);
                let rendered = tera.render_to(&name, &ctx, &mut output);
                let result = match (rendered, output.exceeded) {
                    (_, Some(Exceeded::Size)) => Err(RenderError::TooLarge { template: name }),
                    (_, Some(Exceeded::Time)) => Err(RenderError::TooSlow { template: name }),
                    (Err(e), None) => Err(RenderError::Template {
                        template: name,
                        report: e.to_string(),
                    }),
                    (Ok(()), None) => {
                        String::from_utf8(output.bytes).map_err(|e| RenderError::Template {
                            template: name,
                            report: e.to_string(),
                        })
                    }
                };
                let failed = result.is_err();
                bodies.push(result);
                if failed {
                    break;
                }
            }
            // The receiver is gone when the render ran out of time: nobody to tell.
            let _ = sender.send(bodies);
        });
    if let Err(e) = spawned {
        return Err(RenderError::Template {
            template: "(rendering)".to_owned(),
            report: format!("cannot start the rendering thread: {e}"),
        });
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let bodies = receiver.recv_timeout(left).map_err(|e| {
        let template = rendering.lock().map(|n| n.clone()).unwrap_or_default();
        match e {
            mpsc::RecvTimeoutError::Timeout => RenderError::TooSlow { template },
            mpsc::RecvTimeoutError::Disconnected => RenderError::Template {
                template,
                report: "the rendering thread failed".to_owned(),
            },
        }
    })?;
    bodies.into_iter().collect()
}

/// Why a [`BoundedOutput`] refused a write.
#[derive(Debug, Clone, Copy)]
enum Exceeded {
    Size,
    Time,
}

/// A template's output, refusing writes past [`OUTPUT_LIMIT`] bytes or past the
/// deadline (which ends Tera's rendering with an error).
struct BoundedOutput {
    bytes: Vec<u8>,
    deadline: Instant,
    exceeded: Option<Exceeded>,
}

impl BoundedOutput {
    fn new(deadline: Instant) -> BoundedOutput {
        BoundedOutput {
            bytes: Vec::new(),
            deadline,
            exceeded: None,
        }
    }
}

impl Write for BoundedOutput {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let exceeded = if self.bytes.len().saturating_add(data.len()) as u64 > OUTPUT_LIMIT {
            Some(Exceeded::Size)
        } else if Instant::now() > self.deadline {
            Some(Exceeded::Time)
        } else {
            None
        };
        if let Some(why) = exceeded {
            self.exceeded = Some(why);
            return Err(io::Error::other("the rendered output is out of bounds"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The comment block every file starts with, opened by the version stamp that `status`
/// reads back. Paths are shown with control characters replaced, so an odd file name
/// cannot break out of the comment.
fn header(
    request: &RenderRequest,
    family: Family,
    kind: FileKind,
    origin: &TemplateOrigin,
) -> String {
    let template = match (kind, origin) {
        (FileKind::Sets, _) => "iptables-ctl itself (no template)".to_owned(),
        (FileKind::Rules, TemplateOrigin::BuiltIn) => "the built-in template rules.tera".to_owned(),
        (FileKind::Empty, TemplateOrigin::BuiltIn) => "the built-in template empty.tera".to_owned(),
        (_, TemplateOrigin::File(path)) => format!("the template {}", printable_path(path)),
    };
    let restore = match family {
        Family::Ipv4 => "iptables-restore",
        Family::Ipv6 => "ip6tables-restore",
    };
    let (what, load) = match kind {
        FileKind::Rules => (
            format!("{family} rules"),
            format!("Load with `{restore} -w -n`; it never flushes Docker's chains."),
        ),
        FileKind::Empty => (
            format!("{family} pass-through rules (loaded on stop)"),
            format!("Load with `{restore} -w -n`; it never flushes Docker's chains."),
        ),
        FileKind::Sets => (
            format!("{family} ipsets (the long lists the rules match)"),
            format!(
                "Loaded before the rules by `iptables-ctl load-sets {}` (`ipset restore`):\n# each set is filled aside and swapped in whole.",
                request.instance
            ),
        ),
    };
    format!(
        "{stamp}\
         # Source: {policy}, rendered with {template}.\n\
         # Do not edit: change the policy, then run `iptables-ctl reload {instance}`.\n\
         # {load}\n",
        stamp = stamp::first_line(&format!("{what} of instance {}.", request.instance)),
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
