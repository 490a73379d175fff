//! The one printer of what the flows report: each [`Event`] as its line on standard
//! output (warnings as `iptables-ctl: warning: ...` on standard error), the
//! [`Verdict`] at the end, or (`--json`) the whole outcome as one JSON document; and
//! the exit code each verdict, and each `status` report, deserves. Reports of `status`,
//! `audit` and `explain` are printed here too, as their text or as JSON.

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::exit;
use crate::cli::output::Output;
use crate::control::status::StatusReport;
use crate::control::{Event, NextStep, Outcome, Verdict};
use crate::lints::{LintInfo, Scope};

/// Shows one event: its line on standard output, or a warning.
pub(super) fn print_event(event: &Event, out: &mut Output) {
    match event {
        Event::StarterPolicy { path, summary } => {
            writeln!(
                out,
                "no policy at {} yet: installing the starter policy",
                path.display()
            );
            for line in summary {
                writeln!(out, "  {line}");
            }
        }
        Event::PolicyProven { path } => writeln!(
            out,
            "policy {} is valid and its rules load in a throwaway namespace",
            path.display()
        ),
        Event::FileWritten { path } => writeln!(out, "wrote {}", path.display()),
        Event::FileUnchanged { path } => writeln!(out, "unchanged {}", path.display()),
        Event::FileRemoved { path } | Event::LinkRemoved { path } => {
            writeln!(out, "removed {}", path.display());
        }
        Event::UnitsPackaged { dir } => {
            writeln!(out, "units are shipped by the package in {}", dir.display())
        }
        Event::LinkCreated { path, target } => writeln!(
            out,
            "created symlink {} -> {}",
            path.display(),
            target.display()
        ),
        Event::UnitFileChanged {
            kind,
            path,
            destination,
        } => writeln!(out, "{kind} {} {destination}", path.display()),
        Event::Staged { root } => writeln!(
            out,
            "staged under {}: the units start at its first boot",
            root.display()
        ),
        Event::EnabledNotStarted { unit } => writeln!(
            out,
            "{unit} is enabled; it loads the rules at the next boot (--no-start)"
        ),
        Event::JobFailedUndoing { unit, job } => writeln!(
            out,
            "{unit} did not {job}; putting the previous files and unit state back"
        ),
        Event::ReloadFailedUndoing { .. } => writeln!(
            out,
            "reload failed; putting the previous files back and loading them again"
        ),
        Event::PreviousFilesLoaded { unit } => {
            writeln!(out, "{unit}: the previous files are loaded again");
        }
        Event::UnitActive { unit, .. } => writeln!(out, "{unit} is active"),
        Event::Started { unit, .. } => writeln!(out, "{unit}: active"),
        Event::RestartIsReload { unit } => writeln!(
            out,
            "{unit}: restart loads the rules again with no gap (a reload): stopping first would open the host until the start succeeded"
        ),
        Event::ReassertionActive { unit, .. } => writeln!(
            out,
            "{unit} is active: the rules are re-asserted after every start of Docker"
        ),
        Event::ReassertionWaitsForDocker { unit } => {
            writeln!(out, "{unit} starts with Docker (Docker is not running now)")
        }
        Event::Reloaded {
            unit,
            files_changed: false,
            live_changed: false,
        } => writeln!(
            out,
            "{unit}: reloaded; the files were unchanged, so the same rules were loaded again"
        ),
        Event::Reloaded {
            unit,
            files_changed: false,
            live_changed: true,
        } => writeln!(
            out,
            "{unit}: reloaded; the files were unchanged, and the live rules, which were not the rendered ones, are again"
        ),
        Event::Reloaded {
            unit,
            files_changed: true,
            ..
        } => writeln!(out, "{unit}: reloaded with the new files"),
        Event::Stopped { unit, instance, .. } => writeln!(
            out,
            "{unit}: stopped: the pass-through (.empty) files are loaded; Docker starts do not load the rules until `iptables-ctl start {instance}` (the unit stays enabled: the next boot loads them)"
        ),
        Event::StoppedForUninstall { unit } => writeln!(
            out,
            "stopped {unit}: INPUT, OUTPUT and DOCKER-USER now pass traffic through"
        ),
        Event::PassThroughLoaded => writeln!(
            out,
            "the unit had failed: loaded its pass-through files, so INPUT, OUTPUT and DOCKER-USER pass traffic through"
        ),
        Event::NotInstalled { unit } => {
            writeln!(out, "{unit} is not installed; nothing was changed");
        }
        Event::SharedUnitsKept { instances } => writeln!(
            out,
            "kept iptables.service and the unit templates: instance {} still uses them",
            instances.join(", ")
        ),
        Event::FilesKept { dir } => writeln!(
            out,
            "policy and rendered files under {} are kept",
            dir.display()
        ),
        Event::SetDestroyed { name } => {
            writeln!(
                out,
                "destroyed the ipset {name}: no rule matches it any more"
            );
        }
        Event::SetsLoaded {
            family,
            sets,
            members,
        } => writeln!(out, "{family}: {sets} set(s) loaded ({members} members)"),
        Event::ForwardJumpAdded { family } => {
            writeln!(out, "{family}: FORWARD jumps to DOCKER-USER (added)");
        }
        Event::ForwardJumpRepaired {
            family,
            first_rule,
            jumps,
        } => writeln!(
            out,
            "{family}: FORWARD did not jump to DOCKER-USER first (its first rule was `{first_rule}`; {jumps} jump(s)); it does now"
        ),
        Event::NotReloaded { unit } => writeln!(out, "{unit} is not active: not reloaded"),
        Event::JobDone { unit, job } => writeln!(out, "{unit}: {job} done"),
        Event::StarterWritten { path, summary } => {
            writeln!(out, "wrote {}", path.display());
            for line in summary {
                writeln!(out, "  {line}");
            }
        }
        Event::Next { instance, step } => match step {
            NextStep::CheckAndReload => writeln!(
                out,
                "next: review it, then `iptables-ctl check {instance}` and `iptables-ctl reload {instance}`"
            ),
            NextStep::OtherInstanceInstalled { other } => writeln!(
                out,
                "note: instance {other} is installed, and only one instance can be; edit its policy and `iptables-ctl reload {other}`, or `iptables-ctl uninstall {other}` first"
            ),
            NextStep::CheckAndInstall => writeln!(
                out,
                "next: review it, then `iptables-ctl check {instance}` and `iptables-ctl install {instance}`"
            ),
        },
        Event::PolicyValid { path } => writeln!(out, "policy {} is valid", path.display()),
        Event::FamilyProven {
            rules,
            empty,
            restore_program,
            rule_count,
            sets,
        } => {
            let sets: String = sets
                .iter()
                .map(|(name, members)| {
                    format!(", after the set {name} ({members} members, loaded by ipset restore)")
                })
                .collect();
            writeln!(
                out,
                "{rules}: {rule_count} rules loaded by {restore_program} in a throwaway network namespace{sets}; a second load changed nothing; {empty} loads too"
            )
        }
        Event::RenderedNotLoaded { instance } => writeln!(
            out,
            "iptables@{instance}.service is installed: these files are loaded at the next boot or Docker start; `iptables-ctl reload {instance}` loads them now (render does not)"
        ),
        Event::RollingBack { from, to, policy } => writeln!(
            out,
            "rolling back from generation {from} to {to}: its policy is written back to {} and loaded",
            policy.display()
        ),
        Event::GenerationKept { number } => writeln!(
            out,
            "kept as generation {number} (`iptables-ctl rollback` returns to the one before)"
        ),
        Event::ApplySuperseded {
            instance,
            deadline_unix,
        } => writeln!(
            out,
            "the pending apply of {instance} (due at {}) is superseded: its rollback is disarmed, and this apply's takes its place",
            utc_time(*deadline_unix)
        ),
        Event::Applied {
            instance,
            timer,
            within_secs,
            deadline_unix,
        } => writeln!(
            out,
            "applied: the new rules are live for {within_secs} s, until {}. From a NEW connection (that is the proof you can still get in), run `iptables-ctl confirm {instance}` to keep them; otherwise {timer}, armed in systemd before they loaded, brings the previous rules back, even if this session or this process dies, and so does a reboot",
            utc_time(*deadline_unix)
        ),
        Event::Confirmed { instance } => writeln!(
            out,
            "confirmed: the rollback is disarmed and the applied files are {instance}'s own (loaded at every boot)"
        ),
        Event::NothingPending { instance } => writeln!(
            out,
            "{instance}: no apply is pending (confirmed or superseded): nothing to roll back"
        ),
        Event::RolledBack {
            instance,
            loaded: true,
        } => writeln!(
            out,
            "{instance}: the apply was not confirmed in time: the previous rules are live again"
        ),
        Event::RolledBack {
            instance,
            loaded: false,
        } => writeln!(
            out,
            "{instance}: the apply was not confirmed in time and is forgotten; iptables@{instance}.service is not active, so no rules were loaded (stopped means stopped)"
        ),
        Event::PolicyRestored {
            path,
            rejected,
            generation,
        } => writeln!(
            out,
            "{} holds the previous policy again (generation {generation}); the one rolled back is kept as {}",
            path.display(),
            rejected.display()
        ),
        Event::Document { text } => out.print(text),
        Event::Lint { finding } => out.warn(finding),
        Event::Warning { message } => out.warn(message),
    }
}

/// Shows how a flow ended: the in-force line, or a warning saying why not.
pub(super) fn print_verdict(verdict: &Verdict, out: &mut Output) {
    match verdict {
        Verdict::Done => {}
        Verdict::InForce { summary } => writeln!(out, "{summary}"),
        Verdict::NotInForce { problems } => {
            let mut text = "the rules are loaded but NOT IN FORCE:".to_owned();
            for problem in problems {
                text.push_str(&format!("\n  - {problem}"));
            }
            out.warn(text);
        }
        Verdict::CheckFailed { error } => out.warn(format!(
            "the rules are loaded, but whether they are in force could not be checked: {error}"
        )),
    }
}

/// The exit code a flow that ended with `verdict` returns.
pub(super) fn exit_code(verdict: &Verdict) -> u8 {
    match verdict {
        Verdict::Done | Verdict::InForce { .. } => exit::SUCCESS,
        Verdict::NotInForce { .. } | Verdict::CheckFailed { .. } => exit::NOT_IN_FORCE,
    }
}

/// The exit code `status` returns for `report`, following systemctl.
pub(super) fn status_exit_code(report: &StatusReport) -> u8 {
    if !report.installed {
        exit::NOT_INSTALLED
    } else if !report.unit.is_active() {
        exit::NOT_RUNNING
    } else if report.in_force {
        exit::SUCCESS
    } else {
        exit::NOT_IN_FORCE
    }
}

/// The version of the `--json` documents of the changing commands: a field that goes
/// or changes meaning raises it; a new field does not.
pub const JSON_SCHEMA: u32 = 1;

/// A flow's outcome as one JSON document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    /// [`JSON_SCHEMA`].
    schema: u32,
    /// Whether the run changed the host (a file, a link, a unit's state, the live
    /// rules): what configuration management reports as `changed`.
    changed: bool,
    /// What the flow did, in order.
    events: &'a [Event],
    /// The warnings among them (and the lints' warnings), one line each.
    warnings: Vec<String>,
    /// How it ended (`verdict` and what goes with it).
    #[serde(flatten)]
    ending: Ending<'a>,
    /// The process's exit code.
    exit_code: u8,
}

/// How a flow ended: a verdict, or an error.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Ending<'a> {
    Verdict(&'a Verdict),
    Failed {
        /// Always `failed`.
        verdict: &'static str,
        /// The error, with its context.
        error: String,
    },
}

/// The JSON document of a flow that recorded `events` and ended with `result`.
fn document(events: &[Event], result: &anyhow::Result<Verdict>) -> anyhow::Result<String> {
    let (ending, exit_code) = match result {
        Ok(verdict) => (Ending::Verdict(verdict), exit_code(verdict)),
        Err(error) => (
            Ending::Failed {
                verdict: "failed",
                error: format!("{error:#}"),
            },
            exit::FAILURE,
        ),
    };
    let document = Document {
        schema: JSON_SCHEMA,
        changed: events.iter().any(Event::changes_host),
        events,
        warnings: Outcome::warning_lines(events),
        ending,
        exit_code,
    };
    serde_json::to_string_pretty(&document).context("cannot encode the outcome")
}

/// Prints a flow's outcome as one JSON document on standard output.
pub(super) fn print_json(
    events: &[Event],
    result: &anyhow::Result<Verdict>,
    out: &mut Output,
) -> anyhow::Result<()> {
    out.print(&format!("{}\n", document(events, result)?));
    Ok(())
}

/// `seconds` since the epoch as a date and time in UTC (`YYYY-MM-DD HH:MM:SS UTC`): a
/// deadline may be up to a day away, so the time of day alone could name two moments,
/// and UTC reads the same on every host of a fleet.
fn utc_time(seconds: u64) -> String {
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(seconds / 86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A report's JSON: the same `schema` and `changed` as the changing commands'
/// documents, then the report's own fields.
#[derive(Serialize)]
struct ReportDocument<'a, T: Serialize> {
    /// [`JSON_SCHEMA`].
    schema: u32,
    /// False for a report that only reads; absent when the report says it itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
    #[serde(flatten)]
    report: &'a T,
}

/// What a report says of `changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Changes {
    /// It only reads: `changed` is false.
    None,
    /// The report has its own `changed` (`diff`: whether applying would change the
    /// rules, which is what configuration management's check mode reports).
    Reported,
}

/// Prints a report as pretty JSON (with `schema` and `changed`) or as its text for a
/// person.
pub(super) fn print_report(
    json: bool,
    report: &impl Serialize,
    changes: Changes,
    human: String,
    out: &mut Output,
) -> anyhow::Result<()> {
    if json {
        let document = ReportDocument {
            schema: JSON_SCHEMA,
            changed: (changes == Changes::None).then_some(false),
            report,
        };
        let text = serde_json::to_string_pretty(&document).context("cannot encode the report")?;
        out.print(&format!("{text}\n"));
    } else {
        out.print(&human);
    }
    Ok(())
}

/// `iptables-ctl lints --json`: the registry.
#[derive(Serialize)]
pub(super) struct Listing<'a> {
    /// Every lint.
    pub lints: &'a [LintInfo],
}

/// `iptables-ctl lints` for a person: one paragraph per lint.
pub(super) fn lints_text(registry: &[LintInfo]) -> String {
    let mut text = String::new();
    for info in registry {
        text.push_str(&format!(
            "{} ({}{}; {})
  finds: {}
  why:   {}
  fix:   {}
",
            info.name,
            info.severity,
            if info.skippable { ", skippable" } else { "" },
            match info.scope {
                Scope::CheckAndStatus => "check and status",
                Scope::Status => "status",
            },
            info.finds,
            info.why,
            info.fix
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LiveState;
    use crate::control::fakes::{FakeManager, POLICY, staged};
    use crate::control::{InstallOptions, Outcome, Systemd, install};
    use crate::systemd::{ActiveState, JobKind, JobResult, ServiceManager};

    /// The text of `events` and `verdict`: (standard output, standard error).
    fn text(events: &[Event], verdict: &Verdict) -> (String, String) {
        let mut out = Output::capture();
        for event in events {
            print_event(event, &mut out);
        }
        print_verdict(verdict, &mut out);
        (out.stdout_text(), out.stderr_text())
    }

    #[test]
    fn deadlines_are_said_with_their_date_in_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_796_514_599), "2026-12-05 23:49:59 UTC");
        assert_eq!(utc_time(1_796_515_200), "2026-12-06 00:00:00 UTC");
    }

    #[test]
    fn the_json_of_an_install_carries_its_events_and_verdict() {
        let staged = staged(Some(POLICY));
        let manager = FakeManager::new("inactive", JobResult::Done);
        let mut outcome = Outcome::new();
        let result = install(
            &staged.target(),
            Systemd::Live(&manager),
            InstallOptions::default(),
            &mut outcome,
        );
        let json = document(outcome.events(), &result).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let events = value["events"].as_array().unwrap();
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(kinds.len(), events.len(), "{json}");
        assert_eq!(kinds.first(), Some(&"policy_proven"), "{json}");
        assert!(kinds.contains(&"file_written"), "{json}");
        assert!(
            events.contains(&serde_json::json!({
                "event": "unit_active",
                "unit": "iptables@base.service",
                "job": "start",
                // The fake firewall holds no rules: loading changes them.
                "live_changed": true,
            })),
            "{json}"
        );
        assert_eq!(
            events[0]["path"].as_str(),
            staged.policy_path.to_str(),
            "{json}"
        );
        // The fake manager never reports the rules unit active: the closing check finds
        // the rules not in force.
        assert_eq!(value["verdict"], "not_in_force", "{json}");
        assert!(value["problems"].is_array(), "{json}");
        assert_eq!(value["exit_code"], exit::NOT_IN_FORCE, "{json}");
        assert_eq!(value["schema"], JSON_SCHEMA, "{json}");
        assert_eq!(value["changed"], true, "{json}");
    }

    #[test]
    fn the_json_of_a_failed_flow_keeps_what_it_did_and_says_why() {
        let events = [Event::JobFailedUndoing {
            unit: "iptables@base.service".to_owned(),
            job: JobKind::Start,
        }];
        let json = document(&events, &Err(anyhow::anyhow!("start failed"))).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "schema": JSON_SCHEMA,
                "changed": true,
                "events": [{
                    "event": "job_failed_undoing",
                    "unit": "iptables@base.service",
                    "job": "start",
                }],
                "warnings": [],
                "verdict": "failed",
                "error": "start failed",
                "exit_code": exit::FAILURE,
            })
        );
    }

    #[test]
    fn events_read_as_the_commands_always_said_them() {
        let unit = || "iptables@base.service".to_owned();
        let (stdout, stderr) = text(
            &[
                Event::JobFailedUndoing {
                    unit: unit(),
                    job: JobKind::Reload,
                },
                Event::RestartIsReload { unit: unit() },
                Event::Warning {
                    message: "eth9 does not exist".to_owned(),
                },
                Event::Reloaded {
                    unit: unit(),
                    files_changed: false,
                    live_changed: false,
                },
            ],
            &Verdict::NotInForce {
                problems: vec!["one".to_owned(), "two".to_owned()],
            },
        );
        assert_eq!(
            stdout,
            "iptables@base.service did not reload; putting the previous files and unit state back\n\
             iptables@base.service: restart loads the rules again with no gap (a reload): stopping first would open the host until the start succeeded\n\
             iptables@base.service: reloaded; the files were unchanged, so the same rules were loaded again\n"
        );
        assert_eq!(
            stderr,
            "iptables-ctl: warning: eth9 does not exist\n\
             iptables-ctl: warning: the rules are loaded but NOT IN FORCE:\n  - one\n  - two\n"
        );
        let (stdout, stderr) = text(
            &[],
            &Verdict::InForce {
                summary: "in force: all".to_owned(),
            },
        );
        assert_eq!((stdout.as_str(), stderr.as_str()), ("in force: all\n", ""));
    }

    #[test]
    fn status_exit_codes_follow_systemctl() {
        let unit = |active: &str| {
            let mut status = FakeManager::new("active", JobResult::Done)
                .unit_status("iptables@base.service")
                .unwrap();
            status.active_state = ActiveState::from_word(active);
            status
        };
        let mut report = StatusReport {
            instance: "base".to_owned(),
            installed: true,
            in_force: true,
            problems: Vec::new(),
            unit: unit("active"),
            docker_unit: unit("inactive"),
            docker: unit("inactive"),
            rendered_by: None,
            files_on_disk: None,
            live: Some(LiveState {
                variant: None,
                families: Vec::new(),
            }),
            live_error: None,
            pending: None,
            generation: None,
            previous_generation: None,
            exposure: None,
            lints: Vec::new(),
            skipped_lints: Vec::new(),
        };
        assert_eq!(status_exit_code(&report), exit::SUCCESS);
        report.in_force = false;
        assert_eq!(
            status_exit_code(&report),
            exit::NOT_IN_FORCE,
            "active but not in force is its own code"
        );
        report.unit.active_state = ActiveState::Failed;
        assert_eq!(status_exit_code(&report), exit::NOT_RUNNING);
        report.installed = false;
        assert_eq!(status_exit_code(&report), exit::NOT_INSTALLED);
        let codes = [
            exit::SUCCESS,
            exit::FAILURE,
            exit::USAGE,
            exit::NOT_RUNNING,
            exit::NOT_INSTALLED,
            exit::NOT_IN_FORCE,
            exit::EXPOSED,
        ];
        let distinct: std::collections::BTreeSet<u8> = codes.into_iter().collect();
        assert_eq!(
            distinct.len(),
            codes.len(),
            "every outcome has its own code"
        );
    }

    /// Every `--json` document carries the schema; a report that only reads says it
    /// changed nothing, one with its own `changed` keeps it.
    #[test]
    fn reports_carry_the_schema_and_changed() {
        #[derive(Serialize)]
        struct Read {
            answer: u8,
        }
        #[derive(Serialize)]
        struct Diffish {
            changed: bool,
        }
        let print = |value: &dyn Fn(&mut Output)| {
            let mut out = Output::capture();
            value(&mut out);
            serde_json::from_str::<serde_json::Value>(&out.stdout_text()).unwrap()
        };
        let read = print(&|out| {
            print_report(
                true,
                &Read { answer: 42 },
                Changes::None,
                String::new(),
                out,
            )
            .unwrap()
        });
        assert_eq!(
            read,
            serde_json::json!({"schema": JSON_SCHEMA, "changed": false, "answer": 42})
        );
        let diff = print(&|out| {
            print_report(
                true,
                &Diffish { changed: true },
                Changes::Reported,
                String::new(),
                out,
            )
            .unwrap()
        });
        assert_eq!(
            diff,
            serde_json::json!({"schema": JSON_SCHEMA, "changed": true})
        );
    }
}
