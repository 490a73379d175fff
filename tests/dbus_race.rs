//! A private dbus-daemon test shows the JobRemoved wait has no race.
//!
//! A fake `org.freedesktop.systemd1.Manager` is served on a private bus (a dbus-daemon
//! started by the test). Its StartUnit emits JobRemoved for the new job *before* it sends
//! the method reply, so the signal reaches the client before the job path does: the worst
//! case. Before the real signal it also emits JobRemoved for another unit's job (`failed`)
//! and for another job of the same unit (`canceled`), so a client that does not filter by
//! unit and job path gets a wrong result. It answers a second Subscribe on one connection
//! with `org.freedesktop.systemd1.AlreadySubscribed`, as systemd does.
//!
//! Proven here: `SystemdBus::run_job` sees every such job end (200 in a row on one
//! connection, subscribing once); a naive client that creates its JobRemoved stream after
//! StartUnit returns never does (so the race is real and the ordering in `run_job` is what
//! avoids it); and a bus that dies while `run_job` waits ends the wait with an error.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::pin::Pin;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures_lite::StreamExt as _;
use iptables_ctl::systemd::bus::SystemdBus;
use iptables_ctl::systemd::{JobKind, JobResult, ServiceManager, SystemdError};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{DBusError, OwnedObjectPath, interface};

const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";

/// How long the client side of a test may take before it counts as hung (a `run_job` that
/// missed its signal waits forever; 200 jobs take well under a second).
const WATCHDOG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The private bus
// ---------------------------------------------------------------------------------------

/// Whether dbus-daemon is installed (see [`common::tools_available`]).
fn dbus_daemon_available(test: &str) -> bool {
    common::tools_available(test, &["dbus-daemon"], false)
}

/// A dbus-daemon started by the test on a socket in its own temporary directory; killed
/// (by its PID, through the kept `Child`) when dropped or when [`PrivateBus::kill`] is called.
struct PrivateBus {
    child: Child,
    address: String,
    _stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    fn start() -> PrivateBus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let listen = format!("unix:path={}", dir.path().join("bus").display());
        let mut child = Command::new("dbus-daemon")
            .args([
                "--session",
                "--nofork",
                "--nopidfile",
                &format!("--address={listen}"),
                "--print-address=1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let stdout = child.stdout.take().expect("dbus-daemon stdout");
        // From here on the guard owns the child, so a failure below still kills it.
        let mut bus = PrivateBus {
            child,
            address: String::new(),
            _stdout: BufReader::new(stdout),
            _dir: dir,
        };
        // dbus-daemon prints its address once it listens: that is the readiness signal.
        let mut line = String::new();
        bus._stdout
            .read_line(&mut line)
            .expect("read dbus-daemon's address");
        bus.address = line.trim().to_owned();
        assert!(
            bus.address.starts_with("unix:path="),
            "dbus-daemon printed no address: {line:?}"
        );
        bus
    }

    /// Kills the daemon (every connection to it closes) and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// The fake systemd
// ---------------------------------------------------------------------------------------

/// What the fake saw, for the tests to check.
#[derive(Default)]
struct Seen {
    /// Subscribe calls per client (unique bus name).
    subscribe_calls: HashMap<String, u32>,
    /// Every job queued: (method, unit, mode).
    jobs: Vec<(String, String, String)>,
    /// Told when a job of `hang.service` was queued (that job never ends).
    hang_queued: Option<mpsc::Sender<()>>,
}

/// systemd's errors, as far as the fake needs them.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum FakeError {
    /// A second Subscribe on one connection.
    AlreadySubscribed(String),
    /// A job mode other than `replace` (iptables-ctl only ever asks for that one).
    InvalidJobMode(String),
    /// Emitting a signal failed.
    #[zbus(error)]
    ZBus(zbus::Error),
}

/// A fake `org.freedesktop.systemd1.Manager`: jobs end at once, reported before the reply.
struct FakeManager {
    next_job: u32,
    seen: Arc<Mutex<Seen>>,
}

impl FakeManager {
    /// Queues a job: emits the decoy JobRemoved signals and the job's own one (unless the
    /// unit is `hang.service`), all before the caller gets the job path.
    async fn queue_job(
        &mut self,
        method: &str,
        unit: &str,
        mode: &str,
        emitter: &SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, FakeError> {
        if mode != "replace" {
            return Err(FakeError::InvalidJobMode(format!(
                "iptables-ctl asked for mode {mode}"
            )));
        }
        let mut new_job = || {
            self.next_job += 1;
            let id = self.next_job;
            let path =
                OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{id}")).expect("job path");
            (id, path)
        };
        let (other_id, other_job) = new_job();
        let (stale_id, stale_job) = new_job();
        let (id, job) = new_job();
        let hang = {
            let mut seen = self.seen.lock().unwrap();
            seen.jobs
                .push((method.to_owned(), unit.to_owned(), mode.to_owned()));
            (unit == "hang.service").then(|| seen.hang_queued.clone())
        };
        if let Some(notify) = hang {
            if let Some(notify) = notify {
                let _ = notify.send(());
            }
            return Ok(job);
        }
        let result = match unit {
            "ok.service" => "done",
            "bad.service" => "failed",
            other => panic!("the fake systemd has no unit {other}"),
        };
        // (a) another unit's job, `failed`: the bus-side arg2 filter keeps it from the
        // client (the job-path check would too).
        Self::job_removed(emitter, other_id, other_job, "other.service", "failed").await?;
        // (b) another job of the same unit: only the job path tells it apart.
        Self::job_removed(emitter, stale_id, stale_job, unit, "canceled").await?;
        // The job itself, before its path is returned: the worst case for the client.
        Self::job_removed(emitter, id, job.clone(), unit, result).await?;
        Ok(job)
    }
}

#[interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeManager {
    /// Like systemd: once per client; a second call is an error.
    fn subscribe(&self, #[zbus(header)] header: Header<'_>) -> Result<(), FakeError> {
        let client = header.sender().map(ToString::to_string).unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        let calls = seen.subscribe_calls.entry(client).or_insert(0);
        *calls += 1;
        if *calls > 1 {
            return Err(FakeError::AlreadySubscribed(
                "Client is already subscribed.".to_owned(),
            ));
        }
        Ok(())
    }

    async fn start_unit(
        &mut self,
        name: &str,
        mode: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, FakeError> {
        self.queue_job("StartUnit", name, mode, &emitter).await
    }

    async fn stop_unit(
        &mut self,
        name: &str,
        mode: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, FakeError> {
        self.queue_job("StopUnit", name, mode, &emitter).await
    }

    async fn reload_unit(
        &mut self,
        name: &str,
        mode: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, FakeError> {
        self.queue_job("ReloadUnit", name, mode, &emitter).await
    }

    async fn restart_unit(
        &mut self,
        name: &str,
        mode: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, FakeError> {
        self.queue_job("RestartUnit", name, mode, &emitter).await
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: OwnedObjectPath,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// A private bus with the fake systemd on it.
struct Fixture {
    bus: PrivateBus,
    seen: Arc<Mutex<Seen>>,
}

impl Fixture {
    fn start() -> Fixture {
        let bus = PrivateBus::start();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let fake = FakeManager {
            next_job: 0,
            seen: Arc::clone(&seen),
        };
        let address = bus.address.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        // The fake runs on a thread of its own, as systemd would in a process of its own:
        // its connection lives until the bus goes away (the fixture kills it).
        thread::spawn(move || {
            zbus::block_on(async move {
                let built = zbus::connection::Builder::address(address.as_str())
                    .name(SYSTEMD_NAME)
                    .serve_at(MANAGER_PATH, fake)
                    .build()
                    .await;
                match built {
                    Ok(connection) => {
                        let _ = ready_tx.send(Ok(()));
                        connection.closed().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the fake systemd did not come up")
            .unwrap_or_else(|e| panic!("the fake systemd could not serve: {e}"));
        Fixture { bus, seen }
    }
}

// ---------------------------------------------------------------------------------------
// Honest timeouts
// ---------------------------------------------------------------------------------------

/// A future that is ready once `duration` has passed, measured by a thread of its own
/// (so it does not depend on the runtime that polls it).
struct Deadline {
    state: Arc<Mutex<(bool, Option<Waker>)>>,
}

impl Deadline {
    fn after(duration: Duration) -> Deadline {
        let state: Arc<Mutex<(bool, Option<Waker>)>> = Arc::new(Mutex::new((false, None)));
        let timer = Arc::clone(&state);
        thread::spawn(move || {
            thread::sleep(duration);
            let mut state = timer.lock().unwrap();
            state.0 = true;
            if let Some(waker) = state.1.take() {
                waker.wake();
            }
        });
        Deadline { state }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock().unwrap();
        if state.0 {
            Poll::Ready(())
        } else {
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Runs `f` on a thread and fails the test if it has not returned within `limit`, so a
/// hang is reported as one instead of stalling the suite.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// The JobRemoved result of `job` on `stream`, or None when `limit` passes first (or the
/// stream ends). Other jobs' signals are skipped.
async fn job_removed_within(
    stream: &mut zbus::proxy::SignalStream<'_>,
    job: &OwnedObjectPath,
    limit: Duration,
) -> Option<String> {
    let wait = async {
        while let Some(signal) = stream.next().await {
            let (_, path, _, result): (u32, OwnedObjectPath, String, String) =
                signal.body().deserialize().expect("JobRemoved arguments");
            if path == *job {
                return Some(result);
            }
        }
        None
    };
    futures_lite::future::or(wait, async {
        Deadline::after(limit).await;
        None
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// 200 jobs in a row on one connection, each reported before its path is returned, are
/// all seen with the right result; the client subscribes once.
#[test]
fn run_job_sees_job_removed_that_arrives_before_the_job_path() {
    if !dbus_daemon_available("run_job_sees_job_removed_that_arrives_before_the_job_path") {
        return;
    }
    let fixture = Fixture::start();
    let address = fixture.bus.address.clone();
    let elapsed = within(WATCHDOG, "200 run_job calls", move || {
        let systemd = SystemdBus::at_address(&address).expect("connect to the private bus");
        let started = Instant::now();
        for n in 0..200 {
            let result = systemd.run_job(JobKind::Start, "ok.service");
            assert!(matches!(result, Ok(JobResult::Done)), "job {n}: {result:?}");
        }
        let elapsed = started.elapsed();
        let result = systemd.run_job(JobKind::Start, "bad.service");
        assert!(
            matches!(&result, Ok(JobResult::Other(word)) if word == "failed"),
            "bad.service: {result:?}"
        );
        for kind in [JobKind::Stop, JobKind::Reload, JobKind::Restart] {
            let result = systemd.run_job(kind, "ok.service");
            assert!(matches!(result, Ok(JobResult::Done)), "{kind}: {result:?}");
        }
        elapsed
    });
    eprintln!("200 start jobs on one connection took {elapsed:?}");

    let seen = fixture.seen.lock().unwrap();
    assert_eq!(
        seen.subscribe_calls.values().copied().collect::<Vec<_>>(),
        [1],
        "one client, subscribed exactly once: {:?}",
        seen.subscribe_calls
    );
    assert_eq!(seen.jobs.len(), 204);
    assert!(seen.jobs.iter().all(|(_, _, mode)| mode == "replace"));
    let methods: Vec<&str> = seen.jobs[200..]
        .iter()
        .map(|(m, _, _)| m.as_str())
        .collect();
    assert_eq!(
        methods,
        ["StartUnit", "StopUnit", "ReloadUnit", "RestartUnit"]
    );
}

/// The control: a client that asks for the JobRemoved stream only after StartUnit has
/// returned never sees its job end, although the same stream does see the next job's.
/// So the fake really reports jobs before their paths, and the test above would catch a
/// `run_job` that subscribed too late. Also checks the fake answers a second Subscribe
/// as systemd does.
#[test]
fn a_stream_created_after_start_unit_misses_the_signal() {
    if !dbus_daemon_available("a_stream_created_after_start_unit_misses_the_signal") {
        return;
    }
    let fixture = Fixture::start();
    let address = fixture.bus.address.clone();
    within(WATCHDOG, "the naive client", move || {
        zbus::block_on(async {
            let connection = zbus::connection::Builder::address(address.as_str())
                .build()
                .await
                .expect("connect to the private bus");
            let manager =
                zbus::Proxy::new(&connection, SYSTEMD_NAME, MANAGER_PATH, MANAGER_INTERFACE)
                    .await
                    .expect("manager proxy");
            manager
                .call::<_, _, ()>("Subscribe", &())
                .await
                .expect("first Subscribe");
            match manager.call::<_, _, ()>("Subscribe", &()).await {
                Err(zbus::Error::MethodError(name, _, _)) => {
                    assert_eq!(name.as_str(), "org.freedesktop.systemd1.AlreadySubscribed");
                }
                other => panic!("a second Subscribe must fail as in systemd: {other:?}"),
            }
            for attempt in 0..20 {
                // Naive order: the job first, then the stream.
                let job: OwnedObjectPath = manager
                    .call("StartUnit", &("ok.service", "replace"))
                    .await
                    .expect("StartUnit");
                let mut stream = manager
                    .receive_signal_with_args("JobRemoved", &[(2, "ok.service")])
                    .await
                    .expect("JobRemoved stream");
                let missed =
                    job_removed_within(&mut stream, &job, Duration::from_millis(500)).await;
                assert_eq!(
                    missed, None,
                    "attempt {attempt}: the naive client saw {job}'s JobRemoved, so the fake did not report it before the reply"
                );
                // The same stream does deliver a job queued while it exists.
                let next: OwnedObjectPath = manager
                    .call("StartUnit", &("ok.service", "replace"))
                    .await
                    .expect("StartUnit");
                let seen = job_removed_within(&mut stream, &next, Duration::from_secs(10)).await;
                assert_eq!(
                    seen.as_deref(),
                    Some("done"),
                    "attempt {attempt}: the stream is not working at all"
                );
            }
        });
    });
}

/// The bus goes away while `run_job` waits for a job that never ends: it returns an
/// error (Disconnected when it was already waiting, Unreachable when the reply to
/// StartUnit was lost too) instead of waiting forever.
#[test]
fn run_job_returns_when_the_bus_dies_during_the_wait() {
    if !dbus_daemon_available("run_job_returns_when_the_bus_dies_during_the_wait") {
        return;
    }
    let mut fixture = Fixture::start();
    let (queued_tx, queued_rx) = mpsc::channel();
    fixture.seen.lock().unwrap().hang_queued = Some(queued_tx);
    let address = fixture.bus.address.clone();
    let (result_tx, result_rx) = mpsc::channel();
    thread::spawn(move || {
        let systemd = SystemdBus::at_address(&address).expect("connect to the private bus");
        let _ = result_tx.send(systemd.run_job(JobKind::Start, "hang.service"));
    });
    queued_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("run_job never queued its job");
    // Not needed for correctness (either outcome below passes): give the reply time to
    // reach the client, so that it is usually waiting on its stream when the bus dies.
    thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    fixture.bus.kill();
    let result = match result_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("run_job still waits 20 s after the bus died")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("run_job panicked"),
    };
    eprintln!(
        "run_job returned {:?} after the bus died: {result:?}",
        killed.elapsed()
    );
    match result {
        Err(SystemdError::Disconnected { unit, kind }) => {
            assert_eq!(unit, "hang.service");
            assert_eq!(kind, JobKind::Start);
        }
        Err(SystemdError::Unreachable { .. }) => {}
        other => panic!("expected Disconnected or Unreachable, got {other:?}"),
    }
}
