//! [`ServiceManager`] over systemd's D-Bus API, with zbus. Each call is one
//! `zbus::block_on`; the connection is kept between calls.
//!
//! Waiting for a job is race-free by construction: the JobRemoved match is registered
//! with the bus (and the stream exists) before `Subscribe` and before the job is queued,
//! so a job that ends before its path is even returned to us is still seen. The stream
//! is filtered by unit name on the bus side and matched on the job path here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_lite::StreamExt as _;
use zbus::connection::Builder;
use zbus::proxy::CacheProperties;

use super::proxy::{ManagerProxy, ServiceProxy, UnitFileChangeTuple, UnitProxy};
use super::{
    JobKind, JobResult, ServiceManager, SystemdError, UnitFileChange, UnitFileState, UnitStatus,
};

/// Where the system bus is when `DBUS_SYSTEM_BUS_ADDRESS` does not say.
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// How long a method call may take; systemctl allows daemon-reload the same.
const METHOD_TIMEOUT: Duration = Duration::from_secs(180);

/// A connection to systemd.
#[derive(Debug)]
pub struct SystemdBus {
    connection: zbus::Connection,
    address: String,
    subscribed: AtomicBool,
}

impl SystemdBus {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket).
    pub fn system() -> Result<SystemdBus, SystemdError> {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_owned());
        SystemdBus::at_address(&address)
    }

    /// Connects to the bus at `address` (a D-Bus address such as `unix:path=/run/x`).
    pub fn at_address(address: &str) -> Result<SystemdBus, SystemdError> {
        let unreachable = |e: zbus::Error| SystemdError::Unreachable {
            address: address.to_owned(),
            detail: e.to_string(),
        };
        let builder = Builder::address(address).method_timeout(METHOD_TIMEOUT);
        let connection = zbus::block_on(builder.build()).map_err(unreachable)?;
        Ok(SystemdBus {
            connection,
            address: address.to_owned(),
            subscribed: AtomicBool::new(false),
        })
    }

    fn error(&self, action: &str, unit: Option<&str>, error: zbus::Error) -> SystemdError {
        classify(&self.address, action, unit, error)
    }

    async fn manager(&self) -> zbus::Result<ManagerProxy<'_>> {
        ManagerProxy::new(&self.connection).await
    }

    /// `Subscribe` once per connection (systemd answers a second one with an error).
    async fn subscribe(&self, manager: &ManagerProxy<'_>) -> zbus::Result<()> {
        if !self.subscribed.load(Ordering::Acquire) {
            match manager.subscribe().await {
                Ok(()) => {}
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
                Err(e) => return Err(e),
            }
            self.subscribed.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Runs the job; None when the signal stream ended (the bus went away) first.
    async fn job(&self, kind: JobKind, unit: &str) -> zbus::Result<Option<JobResult>> {
        self.queued_job(unit, |manager| async move {
            match kind {
                JobKind::Start => manager.start_unit(unit, "replace").await,
                JobKind::Stop => manager.stop_unit(unit, "replace").await,
                JobKind::Reload => manager.reload_unit(unit, "replace").await,
                JobKind::Restart => manager.restart_unit(unit, "replace").await,
            }
        })
        .await
    }

    /// Queues a job on `unit` with `queue` and waits for its result; None when the
    /// signal stream ended (the bus went away) first.
    async fn queued_job<'m, F>(
        &'m self,
        unit: &str,
        queue: impl FnOnce(ManagerProxy<'m>) -> F,
    ) -> zbus::Result<Option<JobResult>>
    where
        F: std::future::Future<Output = zbus::Result<zbus::OwnedObjectPath>>,
    {
        let manager = self.manager().await?;
        // Order matters: stream (AddMatch), then Subscribe, then the job.
        let mut removed = manager.receive_job_removed_with_args(&[(2, unit)]).await?;
        self.subscribe(&manager).await?;
        let job = queue(manager).await?;
        while let Some(signal) = removed.next().await {
            let args = signal.args()?;
            if *args.job() == job {
                return Ok(Some(JobResult::from_signal(args.result())));
            }
        }
        Ok(None)
    }

    async fn status(&self, unit: &str) -> zbus::Result<UnitStatus> {
        let manager = self.manager().await?;
        let path = manager.load_unit(unit).await?;
        let props = UnitProxy::builder(&self.connection)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let result = if unit.ends_with(".service") {
            let service = ServiceProxy::builder(&self.connection)
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            Some(service.result().await?)
        } else {
            None
        };
        Ok(UnitStatus {
            name: unit.to_owned(),
            load_state: props.load_state().await?.into(),
            active_state: props.active_state().await?.into(),
            sub_state: props.sub_state().await?,
            unit_file_state: props.unit_file_state().await?.into(),
            fragment_path: props.fragment_path().await?,
            result,
            active_enter_monotonic_us: props.active_enter_timestamp_monotonic().await?,
            inactive_exit_monotonic_us: props.inactive_exit_timestamp_monotonic().await?,
            wants: props.wants().await?,
        })
    }
}

fn changes(list: Vec<UnitFileChangeTuple>) -> Vec<UnitFileChange> {
    list.into_iter()
        .map(|(kind, path, destination)| UnitFileChange {
            kind,
            path,
            destination,
        })
        .collect()
}

impl ServiceManager for SystemdBus {
    fn daemon_reload(&self) -> Result<(), SystemdError> {
        zbus::block_on(async { self.manager().await?.reload().await })
            .map_err(|e| self.error("daemon-reload", None, e))
    }

    fn enable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        zbus::block_on(async {
            let manager = self.manager().await?;
            manager.enable_unit_files(units, false, false).await
        })
        .map(|(_, list)| changes(list))
        .map_err(|e| self.error(&format!("enable {}", units.join(" ")), None, e))
    }

    fn add_wants(&self, target: &str, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        zbus::block_on(async {
            let manager = self.manager().await?;
            manager
                .add_dependency_unit_files(units, target, "Wants", false, false)
                .await
        })
        .map(changes)
        .map_err(|e| self.error(&format!("add-wants {target} {}", units.join(" ")), None, e))
    }

    fn disable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        zbus::block_on(async {
            let manager = self.manager().await?;
            manager.disable_unit_files(units, false).await
        })
        .map(changes)
        .map_err(|e| self.error(&format!("disable {}", units.join(" ")), None, e))
    }

    fn arm_timer(&self, timer: &str, after: Duration) -> Result<JobResult, SystemdError> {
        let after_us = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
        let properties = [
            (
                "Description",
                zbus::Variant::from(format!("iptables-ctl: {timer} fires once")),
            ),
            (
                "TimersMonotonic",
                zbus::Variant::from(vec![("OnActiveSec".to_owned(), after_us)]),
            ),
            // The default accuracy is a minute; a rollback is promised to the second.
            ("AccuracyUSec", zbus::Variant::from(1_000u64)),
            ("RemainAfterElapse", zbus::Variant::from(false)),
            // Unloaded once done, failed or not, so the name is free for the next one.
            ("CollectMode", zbus::Variant::from("inactive-or-failed")),
        ];
        match zbus::block_on(self.queued_job(timer, |manager| async move {
            manager
                .start_transient_unit(timer, "fail", &properties, &[])
                .await
        })) {
            Ok(Some(result)) => Ok(result),
            Ok(None) => Err(SystemdError::Disconnected {
                unit: timer.to_owned(),
                kind: JobKind::Start,
            }),
            Err(e) => Err(self.error("arm the timer", Some(timer), e)),
        }
    }

    fn run_job(&self, kind: JobKind, unit: &str) -> Result<JobResult, SystemdError> {
        match zbus::block_on(self.job(kind, unit)) {
            Ok(Some(result)) => Ok(result),
            Ok(None) => Err(SystemdError::Disconnected {
                unit: unit.to_owned(),
                kind,
            }),
            Err(e) => Err(self.error(&format!("{kind} {unit}"), Some(unit), e)),
        }
    }

    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        zbus::block_on(self.status(unit))
            .map_err(|e| self.error(&format!("status of {unit}"), Some(unit), e))
    }

    fn unit_file_state(&self, unit: &str) -> Result<Option<UnitFileState>, SystemdError> {
        match zbus::block_on(async { self.manager().await?.get_unit_file_state(unit).await }) {
            Ok(state) => Ok(Some(state.into())),
            Err(e) => match self.error(&format!("state of {unit}"), Some(unit), e) {
                SystemdError::NoSuchUnit { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        zbus::block_on(async { self.manager().await?.reset_failed_unit(unit).await })
            .map_err(|e| self.error(&format!("reset-failed {unit}"), Some(unit), e))
    }
}

/// Sorts a zbus error into what callers branch on.
fn classify(address: &str, action: &str, unit: Option<&str>, error: zbus::Error) -> SystemdError {
    let action = action.to_owned();
    match error {
        zbus::Error::MethodError(name, message, _) => {
            let detail = format!("{name}: {}", message.unwrap_or_default());
            match name.as_str() {
                "org.freedesktop.systemd1.NoSuchUnit" => SystemdError::NoSuchUnit {
                    action,
                    unit: unit.unwrap_or_default().to_owned(),
                },
                "org.freedesktop.systemd1.AccessDenied" => SystemdError::AccessDenied { action },
                _ => SystemdError::Call { action, detail },
            }
        }
        zbus::Error::FDO(fdo) => match *fdo {
            zbus::fdo::Error::AccessDenied(_)
            | zbus::fdo::Error::InteractiveAuthorizationRequired(_) => {
                SystemdError::AccessDenied { action }
            }
            zbus::fdo::Error::FileNotFound(_) => SystemdError::NoSuchUnit {
                action,
                unit: unit.unwrap_or_default().to_owned(),
            },
            zbus::fdo::Error::ServiceUnknown(message)
            | zbus::fdo::Error::NameHasNoOwner(message) => SystemdError::Unreachable {
                address: address.to_owned(),
                detail: message,
            },
            other => SystemdError::Call {
                action,
                detail: other.to_string(),
            },
        },
        zbus::Error::Connection(source, _) => SystemdError::Unreachable {
            address: address.to_owned(),
            detail: source.to_string(),
        },
        zbus::Error::InputOutput(source) => SystemdError::Unreachable {
            address: address.to_owned(),
            detail: source.to_string(),
        },
        other => SystemdError::Call {
            action,
            detail: other.to_string(),
        },
    }
}
