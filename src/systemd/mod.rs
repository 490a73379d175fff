//! systemd, the service manager that loads the rules at boot: the few actions
//! iptables-ctl needs from it ([`ServiceManager`]), their results, and the D-Bus
//! implementation ([`bus::SystemdBus`]). Commands are written against the trait, so their
//! logic can be exercised without a bus; the real thing is proven against a booted
//! systemd in systemd-nspawn.
//!
//! `bus.rs` and `proxy.rs` speak D-Bus, `state.rs` holds unit states as enums,
//! `journal.rs` reads a unit's last log lines for failure reports, and `units.rs` the
//! units iptables-ctl ships and their enabling in a staged tree.

pub mod bus;
pub mod journal;
pub mod proxy;
pub mod state;
pub mod units;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use state::{ActiveState, LoadState, UnitFileState};

/// What to do to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// StartUnit.
    Start,
    /// StopUnit.
    Stop,
    /// ReloadUnit.
    Reload,
    /// RestartUnit.
    Restart,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Reload => "reload",
            JobKind::Restart => "restart",
        })
    }
}

/// How a job ended, as systemd's JobRemoved reported it. systemd may add results, so
/// anything but `done` is kept as the word it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// The job finished successfully.
    Done,
    /// Anything else: `failed`, `canceled`, `timeout`, `dependency`, `skipped`, ...
    Other(String),
}

impl JobResult {
    /// Parses JobRemoved's `result` argument.
    pub fn from_signal(result: &str) -> JobResult {
        match result {
            "done" => JobResult::Done,
            other => JobResult::Other(other.to_owned()),
        }
    }

    /// A sentence on what a non-`done` result means, as systemctl explains them.
    pub fn explanation(&self) -> &'static str {
        match self {
            JobResult::Done => "the job finished",
            JobResult::Other(word) => match word.as_str() {
                "failed" => "the unit's command failed",
                "canceled" => "the job was canceled before it finished",
                "timeout" => "the job timed out",
                "dependency" => "a unit it depends on failed",
                "skipped" => "the job was skipped (the unit could not do it in its state)",
                "invalid" => "the job cannot be done for this unit",
                "assert" => "an Assert= of the unit failed",
                "unsupported" => "the unit type does not support this job",
                "collected" => "the unit was garbage-collected before the job ran",
                "once" => "the unit may only be started once",
                _ => "systemd reported an unexpected result",
            },
        }
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobResult::Done => f.write_str("done"),
            JobResult::Other(word) => f.write_str(word),
        }
    }
}

/// A unit's state as systemd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    /// The unit's name.
    pub name: String,
    /// `loaded`, `not-found`, `masked`, ...
    pub load_state: LoadState,
    /// `active`, `inactive`, `failed`, ...
    pub active_state: ActiveState,
    /// `exited`, `dead`, ...
    pub sub_state: String,
    /// `enabled`, `disabled`, ... (empty when there is no unit file).
    pub unit_file_state: UnitFileState,
    /// The file it was loaded from (empty when none).
    pub fragment_path: String,
    /// For services: why it last failed (`success` when it did not).
    pub result: Option<String>,
    /// When it last became active (CLOCK_MONOTONIC, µs; 0 if never).
    pub active_enter_monotonic_us: u64,
    /// When it last left the inactive state (CLOCK_MONOTONIC, µs; 0 if never).
    pub inactive_exit_monotonic_us: u64,
    /// The units it wants (`Wants=` and its `.wants/` links).
    #[serde(skip)]
    pub wants: Vec<String>,
}

impl UnitStatus {
    /// systemd knows no unit of this name.
    pub fn is_not_found(&self) -> bool {
        self.load_state == LoadState::NotFound
    }

    /// The unit is active (for our oneshot units: its rules were loaded).
    pub fn is_active(&self) -> bool {
        // A unit that is reloading is active, with its rules loaded.
        self.active_state.is_active()
    }

    /// The unit is installed: enabled, or in any state but inactive (a unit stopped
    /// or started by hand after `systemctl disable` still counts). An instance of an
    /// installed template that was never enabled is not.
    pub fn is_installed(&self) -> bool {
        !self.is_not_found()
            && (self.unit_file_state.is_enabled() || self.active_state != ActiveState::Inactive)
    }
}

/// A symlink that enabling or disabling created or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFileChange {
    /// `symlink` or `unlink`.
    pub kind: String,
    /// The link.
    pub path: String,
    /// Where it points (empty for unlink).
    pub destination: String,
}

impl fmt::Display for UnitFileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.as_str() {
            "symlink" => write!(f, "created symlink {} -> {}", self.path, self.destination),
            "unlink" => write!(f, "removed {}", self.path),
            other => write!(f, "{other} {} {}", self.path, self.destination),
        }
    }
}

/// Why talking to systemd failed. Callers branch on these: no systemd means "use
/// --root", access denied means "run as root", no such unit is a status exit code.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// No system bus, or nothing answering as systemd on it.
    #[error(
        "cannot reach systemd over D-Bus at {address}: {detail} (is this host booted with systemd? \
         To prepare a tree offline use --root DIR)"
    )]
    Unreachable {
        /// The bus address tried.
        address: String,
        /// What went wrong.
        detail: String,
    },
    /// The caller may not do this (not root, or polkit said no).
    #[error("systemd refused {action}: access denied (run iptables-ctl as root)")]
    AccessDenied {
        /// What was attempted.
        action: String,
    },
    /// No such unit (or unit file).
    #[error("{action}: systemd has no unit {unit}")]
    NoSuchUnit {
        /// What was attempted.
        action: String,
        /// The unit.
        unit: String,
    },
    /// Any other error from systemd or the bus.
    #[error("{action} failed: {detail}")]
    Call {
        /// What was attempted.
        action: String,
        /// systemd's error name and message.
        detail: String,
    },
    /// The bus went away while waiting for a job.
    #[error("the D-Bus connection closed while waiting for {unit}'s {kind} job to finish")]
    Disconnected {
        /// The unit.
        unit: String,
        /// The job.
        kind: JobKind,
    },
}

/// The actions iptables-ctl needs from the service manager.
pub trait ServiceManager {
    /// `systemctl daemon-reload`, returning when systemd has finished.
    fn daemon_reload(&self) -> Result<(), SystemdError>;

    /// `systemctl enable UNITS`.
    fn enable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError>;

    /// `systemctl add-wants TARGET UNITS`: `target` wants each unit (a link in its
    /// `.wants/` directory). `disable` removes these links too.
    fn add_wants(&self, target: &str, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError>;

    /// `systemctl disable UNITS`: removes every enable link of the units.
    fn disable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError>;

    /// Queues a job of `kind` on `unit` (mode `replace`) and waits until systemd reports
    /// that it finished.
    fn run_job(&self, kind: JobKind, unit: &str) -> Result<JobResult, SystemdError>;

    /// The unit's current state (loading it if needed; a missing unit is `not-found`).
    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError>;

    /// The enablement state of a unit file, or None when there is no such file.
    fn unit_file_state(&self, unit: &str) -> Result<Option<UnitFileState>, SystemdError>;

    /// Creates the transient timer `timer` (`NAME.timer`), which starts `NAME.service`
    /// once, `after` from now, and waits for systemd to arm it. The timer belongs to
    /// systemd: it fires whatever becomes of the caller. Stopping it disarms it.
    fn arm_timer(&self, timer: &str, after: Duration) -> Result<JobResult, SystemdError>;

    /// `systemctl reset-failed UNIT`: systemd forgets that the unit failed.
    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError>;
}
