//! The slice of systemd's D-Bus API that iptables-ctl calls, as zbus proxies. Signatures
//! follow org.freedesktop.systemd1(5); only what is used is declared.

use zbus::OwnedObjectPath;
use zbus::proxy;

/// One change reported by EnableUnitFiles/DisableUnitFiles: (type, symlink, destination).
pub type UnitFileChangeTuple = (String, String, String);

/// `org.freedesktop.systemd1.Manager` on `/org/freedesktop/systemd1`.
#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    /// Asks systemd to send job and unit signals to this client.
    fn subscribe(&self) -> zbus::Result<()>;

    /// daemon-reload; the reply comes when it has finished.
    fn reload(&self) -> zbus::Result<()>;

    /// `systemctl enable`.
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<UnitFileChangeTuple>)>;

    /// `systemctl add-wants TARGET FILES` (`dep_type` "Wants"): links each unit into
    /// the target's `.wants/` directory under /etc/systemd/system.
    fn add_dependency_unit_files(
        &self,
        files: &[&str],
        target: &str,
        dep_type: &str,
        runtime: bool,
        force: bool,
    ) -> zbus::Result<Vec<UnitFileChangeTuple>>;

    /// `systemctl disable`.
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<UnitFileChangeTuple>>;

    /// Creates and starts a transient unit (with `aux`, more transient units created
    /// alongside); returns the start job's path.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, zbus::Variant<'_>)],
        aux: &[(&str, &[(&str, zbus::Variant<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    /// Queues a start job and returns its path.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a stop job and returns its path.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a reload job and returns its path.
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a restart job and returns its path.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// `systemctl reset-failed`: forgets a unit's failed state.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// Loads a unit (if it is not loaded) and returns its object path.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// The enablement state of a unit file (`enabled`, `disabled`, `masked`, `static`,
    /// `alias`, ...). Fails with NoSuchUnit when there is no such file.
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;

    /// A job finished; `result` is `done` on success.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit`: the properties every unit has.
#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    /// `loaded`, `not-found`, `bad-setting`, `error`, `masked`.
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;

    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;

    /// Finer state, such as `exited` or `dead`.
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;

    /// Enablement of the unit's file.
    #[zbus(property)]
    fn unit_file_state(&self) -> zbus::Result<String>;

    /// Where the unit was loaded from.
    #[zbus(property)]
    fn fragment_path(&self) -> zbus::Result<String>;

    /// When the unit last became active (CLOCK_MONOTONIC, µs; 0 if never).
    #[zbus(property)]
    fn active_enter_timestamp_monotonic(&self) -> zbus::Result<u64>;

    /// When the unit last left the inactive state (CLOCK_MONOTONIC, µs; 0 if never).
    #[zbus(property)]
    fn inactive_exit_timestamp_monotonic(&self) -> zbus::Result<u64>;

    /// The units this one wants (its `Wants=` and `.wants/` links).
    #[zbus(property)]
    fn wants(&self) -> zbus::Result<Vec<String>>;
}

/// `org.freedesktop.systemd1.Service`: properties of service units.
#[proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    /// Why the service last failed (`success`, `exit-code`, `timeout`, ...).
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
}
