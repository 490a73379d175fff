//! Writing an instance's files so that a reader (systemd at boot, an admin, a second
//! run) never sees a half-written or half-updated set: every file is staged as a temp
//! file in the same directory and synced before any is renamed into place, unchanged
//! files are left alone, and concurrent runs are serialized by a lock on the directory
//! ([`DirLock`], released explicitly when dropped). A [`Snapshot`] records what files
//! were (contents, links, modes, owners) so a failed command puts them back; it
//! serializes, so another process can put them back too.
//!
//! `set.rs` writes files that must change together as one set (the instance's rules),
//! `source.rs` reads what the rules come from with bounds, `stamp.rs` writes and reads
//! back the first line naming the version that rendered a file, `generations.rs` keeps
//! the last rule sets that became an instance's own, and `layout.rs` says where every
//! file lives, under `/` or a staged `--root`.

pub mod generations;
pub mod layout;
pub mod set;
pub mod source;
pub mod stamp;

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::files::set::{FileSet, OUTPUT_LIMIT, SetState};

/// Mode of the written files: readable by all, like other files under /etc.
pub(crate) const FILE_MODE: u32 = 0o644;

/// Mode of the directories this tool creates, whatever the caller's umask.
pub(crate) const DIR_MODE: u32 = 0o755;

/// Creates `dir` and its missing parents with mode 0755 each (not what the umask would
/// make of it: under umask 000 a 0777 `/etc/iptables` would let anyone swap the rules,
/// under 077 a staged `/etc` would come out 0700). Directories that exist are left as
/// they are. Returns the directories it created, deepest first (the order to remove
/// them in).
pub fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && fs::symlink_metadata(d).is_err())
        .collect();
    let mut created = Vec::new();
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => {
                fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
                    .map_err(io_error("cannot set permissions of", path))?;
                created.push(path.to_owned());
            }
            // Created meanwhile by another process: theirs to set.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("cannot create", path)(e)),
        }
    }
    created.reverse();
    Ok(created)
}

/// The mode to write `target` with: its own when it is a regular file (through any
/// link) that only its owner can write (an admin's 0600 stays 0600), 0644 otherwise.
pub(crate) fn mode_for(target: &Path) -> u32 {
    match fs::metadata(target) {
        Ok(meta) if meta.is_file() && meta.mode() & 0o022 == 0 => meta.mode() & 0o7777,
        _ => FILE_MODE,
    }
}

/// An exclusive lock on a directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    dir: File,
}

impl Drop for DirLock {
    /// Unlocks explicitly: closing the descriptor is not enough while a child forked
    /// by this process (to run a tool) still holds a copy of it before its exec, and
    /// the next command in the same process would find the directory busy.
    fn drop(&mut self) {
        // An unlock that fails leaves the lock to the close, as before.
        let _ = self.dir.unlock();
    }
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Another iptables-ctl holds the lock.
    #[error("{} is locked by another iptables-ctl run; try again when it has finished", path.display())]
    Busy {
        /// The directory.
        path: PathBuf,
    },
    /// A path that names no file (`/`, `..`, or not UTF-8).
    #[error("{} is not a usable file name", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A directory or link in the way is not this tool's, or others could change it.
    #[error("refusing to write the rules: {}: {why}", path.display())]
    Untrusted {
        /// The directory or link.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file system operation failed.
    #[error("{} {}", action, path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// A [`WriteError::Io`] maker for `map_err` of a bounded read ([`source::read_output`]):
/// the system's own error as it is, a refusal (too large, not a regular file) as the
/// reason the file could not be read.
pub(crate) fn read_error(path: &Path) -> impl FnOnce(source::SourceError) -> WriteError {
    let path = path.to_owned();
    move |error| {
        let source = match error {
            source::SourceError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        };
        WriteError::Io {
            action: "cannot read",
            path,
            source,
        }
    }
}

/// An [`WriteError::Io`] maker for `map_err`: what was being done, on what.
pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}

impl DirLock {
    /// Locks `dir` (which must exist) without waiting, and removes the temporary files
    /// a killed run left there: every writer in `dir` holds this lock, so none of them
    /// is anyone's work in progress.
    pub fn acquire(dir: &Path) -> Result<DirLock, WriteError> {
        let handle = File::open(dir).map_err(io_error("cannot open", dir))?;
        match handle.try_lock() {
            Ok(()) => {
                remove_stale_temps(dir)?;
                Ok(DirLock { dir: handle })
            }
            Err(fs::TryLockError::WouldBlock) => Err(WriteError::Busy {
                path: dir.to_owned(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(io_error("cannot lock", dir)(e)),
        }
    }

    /// Locks `dir`, waiting up to `limit` for another run that holds it (`on_wait` is
    /// called once, when the wait begins, so the caller can say it waits). Runs that
    /// change the same rules serialize instead of failing; a holder that never lets go
    /// still ends the wait with [`WriteError::Busy`].
    pub fn acquire_within(
        dir: &Path,
        limit: std::time::Duration,
        on_wait: &mut dyn FnMut(),
    ) -> Result<DirLock, WriteError> {
        let deadline = std::time::Instant::now() + limit;
        let mut waiting = false;
        loop {
            match DirLock::acquire(dir) {
                Err(WriteError::Busy { .. }) if std::time::Instant::now() < deadline => {
                    if !waiting {
                        waiting = true;
                        on_wait();
                    }
                    // flock(2) has no timed wait; a short poll bounds the wait instead.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Locks `dir`, waiting for another run that holds it: for what must happen after
    /// that run rather than not at all (the rollback of an unconfirmed apply, which its
    /// unit's timeout bounds).
    pub fn acquire_waiting(dir: &Path) -> Result<DirLock, WriteError> {
        let handle = File::open(dir).map_err(io_error("cannot open", dir))?;
        handle.lock().map_err(io_error("cannot lock", dir))?;
        remove_stale_temps(dir)?;
        Ok(DirLock { dir: handle })
    }
}

/// What [`write_files`] did to each file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// Files replaced or created.
    pub written: Vec<PathBuf>,
    /// Files that already had this content.
    pub unchanged: Vec<PathBuf>,
}

impl WriteSummary {
    /// One line per file: `wrote PATH` or `unchanged PATH`.
    pub fn lines(&self) -> Vec<String> {
        let written = self
            .written
            .iter()
            .map(|p| format!("wrote {}", p.display()));
        let unchanged = self
            .unchanged
            .iter()
            .map(|p| format!("unchanged {}", p.display()));
        written.chain(unchanged).collect()
    }
}

/// The directory a file path lies in (`.` for a bare name) and its file name, as
/// [`write_files`] takes them.
pub fn dir_and_name(path: &Path) -> Result<(&Path, String), WriteError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| WriteError::NotAFile {
            path: path.to_owned(),
        })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, name.to_owned()))
}

/// Writes `(file name, content)` pairs into `dir` as one step as far as the file system
/// allows: if staging any of them fails, none is changed.
pub fn write_files(dir: &Path, files: &[(String, String)]) -> Result<WriteSummary, WriteError> {
    let mut summary = WriteSummary::default();
    let mut staged: Vec<(NamedTempFile, PathBuf)> = Vec::new();
    for (name, content) in files {
        let target = dir.join(name);
        let old = source::read_output(&target, OUTPUT_LIMIT).ok().flatten();
        if old.is_some_and(|(old, _)| old == content.as_bytes()) {
            summary.unchanged.push(target);
            continue;
        }
        staged.push((
            stage_file(dir, content.as_bytes(), mode_for(&target), None)?,
            target,
        ));
    }
    for (temp, target) in staged {
        persist(temp, &target)?;
        summary.written.push(target);
    }
    if !summary.written.is_empty() {
        sync_dir(dir)?;
    }
    Ok(summary)
}

/// A synced temporary file in `dir` holding `bytes`, with `mode` and, when given, the
/// owner `(uid, gid)`; removed again if it is dropped before being persisted.
pub(crate) fn stage_file(
    dir: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<NamedTempFile, WriteError> {
    let mut temp = temp_builder()
        .tempfile_in(dir)
        .map_err(io_error("cannot create a temporary file in", dir))?;
    temp.write_all(bytes)
        .map_err(io_error("cannot write", temp.path()))?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(io_error("cannot set permissions of", temp.path()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(temp.as_file(), Some(uid), Some(gid))
            .map_err(io_error("cannot set the owner of", temp.path()))?;
    }
    temp.as_file()
        .sync_all()
        .map_err(io_error("cannot sync", temp.path()))?;
    Ok(temp)
}

/// Removes the files and links in `dir` named like this tool's temporary ones. Only for
/// a directory every writer of this tool writes in while holding the lock the caller
/// holds (the config directory's [`DirLock`]).
pub fn remove_stale_temps(dir: &Path) -> Result<(), WriteError> {
    let entries = fs::read_dir(dir).map_err(io_error("cannot list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("cannot list", dir))?;
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMP_PREFIX));
        if is_temp
            && entry
                .file_type()
                .is_ok_and(|kind| kind.is_file() || kind.is_symlink())
        {
            let path = entry.path();
            fs::remove_file(&path)
                .map_err(io_error("cannot remove the stale temporary file", &path))?;
        }
    }
    Ok(())
}

/// How this tool's temporary files are named.
const TEMP_PREFIX: &str = ".iptables-ctl-";

fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    builder
}

fn persist<F>(temp: NamedTempFile<F>, target: &Path) -> Result<(), WriteError> {
    temp.persist(target)
        .map(drop)
        .map_err(|e| io_error("cannot rename into", target)(e.error))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("cannot sync directory", dir))
}

/// What a path was before a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Previous {
    Absent,
    /// A regular file: its bytes, permission bits and owner.
    File {
        #[serde(with = "bytes")]
        bytes: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A symbolic link (an alias such as netfilter-persistent's `iptables.service`):
    /// put back as the same link, not as a copy of what it pointed to.
    Symlink(PathBuf),
}

/// What some paths and file sets were before a change, to put back if the change
/// fails later (a unit that will not start after its files were replaced). It can be
/// written down (serde) and put back by another process: it holds the paths, and for
/// each its bytes, mode and owner, or the target of its link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    entries: Vec<(PathBuf, Previous)>,
    sets: Vec<(FileSet, SetState)>,
}

impl Snapshot {
    /// Records what `dir/name` is now (a file, a symlink, or nothing) for every name.
    pub fn take<'a>(
        dir: &Path,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Snapshot, WriteError> {
        let mut entries = Vec::new();
        for name in names {
            let path = dir.join(name);
            let previous = previous_of(&path)?;
            entries.push((path, previous));
        }
        Ok(Snapshot {
            entries,
            sets: Vec::new(),
        })
    }

    /// Records what a file set shows now, to be put back as one set.
    pub fn take_set(set: &FileSet) -> Result<Snapshot, WriteError> {
        Ok(Snapshot {
            entries: Vec::new(),
            sets: vec![(set.clone(), set.read()?)],
        })
    }

    /// Adds another snapshot's paths and sets to this one.
    pub fn extend(&mut self, other: Snapshot) {
        self.entries.extend(other.entries);
        self.sets.extend(other.sets);
    }

    /// Puts every path back as it was, each atomically: a file with its bytes, mode and
    /// owner, a symlink as the same link, an absent one removed; and every set as one
    /// set. What is still as it was is not touched (so nothing is written when the
    /// change had not got that far, on a read-only file system too). Every path is
    /// attempted; the first error is returned.
    pub fn restore(&self) -> Result<(), WriteError> {
        let mut first_error = None;
        for (set, state) in &self.sets {
            if let Err(e) = set.put_back(state) {
                first_error.get_or_insert(e);
            }
        }
        for (path, previous) in &self.entries {
            if previous_of(path).is_ok_and(|now| now == *previous) {
                continue;
            }
            if let Err(e) = restore_one(path, previous) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What `path` is now: a file (bytes, mode, owner), a symlink, or nothing.
fn previous_of(path: &Path) -> Result<Previous, WriteError> {
    Ok(match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Previous::Absent,
        Err(e) => return Err(io_error("cannot inspect", path)(e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            Previous::Symlink(fs::read_link(path).map_err(io_error("cannot read the link", path))?)
        }
        Ok(meta) if meta.is_file() => {
            match source::read_output(path, OUTPUT_LIMIT).map_err(read_error(path))? {
                Some((bytes, _)) => Previous::File {
                    bytes,
                    mode: meta.permissions().mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                },
                // Removed since it was looked at.
                None => Previous::Absent,
            }
        }
        Ok(_) => {
            return Err(WriteError::NotAFile {
                path: path.to_owned(),
            });
        }
    })
}

/// Removes the link (or file) at `path` and then its directory if that is left empty:
/// a `.wants` directory made for an enable link goes with the link, one holding
/// anything else stays. Returns whether there was anything to remove.
pub fn remove_link(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = fs::remove_dir(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn restore_one(path: &Path, previous: &Previous) -> Result<(), WriteError> {
    let (dir, _) = dir_and_name(path)?;
    match previous {
        Previous::Absent => match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("cannot remove", path)(e)),
        },
        Previous::File {
            bytes,
            mode,
            uid,
            gid,
        } => persist(stage_file(dir, bytes, *mode, Some((*uid, *gid)))?, path)?,
        Previous::Symlink(destination) => {
            let (dir, name) = dir_and_name(path)?;
            replace_with_link(dir, &name, destination)?;
        }
    }
    sync_dir(dir)
}

/// Makes `dir/name` a symbolic link to `destination` in one rename, whatever it was.
pub(crate) fn replace_with_link(
    dir: &Path,
    name: &str,
    destination: &Path,
) -> Result<(), WriteError> {
    let link = temp_builder()
        .make_in(dir, |temp| std::os::unix::fs::symlink(destination, temp))
        .map_err(io_error("cannot create a temporary link in", dir))?;
    persist(link, &dir.join(name))
}

/// File contents in a written-down snapshot: a string when they are UTF-8 (rules,
/// policies and unit files are), a list of byte values otherwise.
pub(crate) mod bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Bytes {
        Text(String),
        Raw(Vec<u8>),
    }

    /// Serializes `bytes` as a string if they are UTF-8, as a list of bytes if not.
    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => serializer.collect_seq(bytes),
        }
    }

    /// Reads what [`serialize`] wrote.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        Ok(match Bytes::deserialize(deserializer)? {
            Bytes::Text(text) => text.into_bytes(),
            Bytes::Raw(bytes) => bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that forks (to run journalctl, iptables-restore, ...) gives the child
    /// a copy of the lock's descriptor until it execs. The lock is the descriptor's, so
    /// a lock dropped in that window must still be released, or the next command in the
    /// same process finds the directory busy.
    #[test]
    fn a_dropped_lock_is_released_while_a_forked_child_holds_its_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let childs_copy = lock.dir.try_clone().unwrap();
        drop(lock);
        DirLock::acquire(dir.path()).expect("released");
        drop(childs_copy);
    }

    #[test]
    fn writes_changed_files_and_leaves_same_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), "same").expect("seed");
        let summary = write_files(
            dir.path(),
            &[("a".into(), "same".into()), ("b".into(), "new".into())],
        )
        .expect("write");
        assert_eq!(summary.unchanged, [dir.path().join("a")]);
        assert_eq!(summary.written, [dir.path().join("b")]);
        let mode = fs::metadata(dir.path().join("b"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, FILE_MODE);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".iptables-ctl-")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn the_lock_holder_removes_stale_temps_and_a_second_lock_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(".iptables-ctl-killed");
        fs::write(&stale, "half a file").expect("stale temp");
        let stale_link = dir.path().join(".iptables-ctl-link");
        std::os::unix::fs::symlink(".base.set/current/base.rules", &stale_link).expect("link");
        let _held = DirLock::acquire(dir.path()).expect("first lock");
        assert!(
            !stale.exists() && stale_link.symlink_metadata().is_err(),
            "the lock holder removes what a killed run left, temporary links too"
        );
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(WriteError::Busy { .. })
        ));
    }

    #[test]
    fn snapshot_restores_changed_and_removes_created_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), "old").expect("seed");
        let snapshot = Snapshot::take(dir.path(), ["a", "b"]).expect("snapshot");
        write_files(
            dir.path(),
            &[("a".into(), "new".into()), ("b".into(), "new".into())],
        )
        .expect("write");
        snapshot.restore().expect("restore");
        assert_eq!(fs::read_to_string(dir.path().join("a")).expect("a"), "old");
        assert!(!dir.path().join("b").exists());
    }

    #[test]
    fn snapshot_puts_back_symlinks_as_links_and_files_with_their_mode_and_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alias = dir.path().join("iptables.service");
        std::os::unix::fs::symlink("/lib/systemd/system/netfilter-persistent.service", &alias)
            .expect("link");
        let private = dir.path().join("base.toml");
        let not_utf8 = [b'#', 0xff, 0xfe, b'\n'];
        fs::write(&private, not_utf8).expect("seed");
        fs::set_permissions(&private, Permissions::from_mode(0o600)).expect("chmod");
        let snapshot =
            Snapshot::take(dir.path(), ["iptables.service", "base.toml"]).expect("snapshot");
        write_files(
            dir.path(),
            &[
                ("iptables.service".into(), "[Unit]\n".into()),
                ("base.toml".into(), "new\n".into()),
            ],
        )
        .expect("write");
        assert!(!alias.symlink_metadata().expect("meta").is_symlink());
        snapshot.restore().expect("restore");
        assert_eq!(
            fs::read_link(&alias).expect("still a link"),
            Path::new("/lib/systemd/system/netfilter-persistent.service")
        );
        assert_eq!(fs::read(&private).expect("read"), not_utf8);
        let meta = fs::metadata(&private).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn a_snapshot_written_down_and_read_back_puts_the_same_things_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alias = dir.path().join("iptables.service");
        std::os::unix::fs::symlink("/lib/systemd/system/netfilter-persistent.service", &alias)
            .expect("link");
        let binary = [b'#', 0xff, 0xfe, b'\n'];
        fs::write(dir.path().join("raw"), binary).expect("seed");
        fs::write(dir.path().join("text"), "old\n").expect("seed");
        fs::set_permissions(dir.path().join("text"), Permissions::from_mode(0o600)).expect("chmod");
        let snapshot = Snapshot::take(dir.path(), ["iptables.service", "raw", "text", "new"])
            .expect("snapshot");
        let json = serde_json::to_string(&snapshot).expect("encode");
        assert!(
            json.contains("\"old\\n\""),
            "UTF-8 contents stay readable: {json}"
        );
        let back: Snapshot = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, snapshot);
        write_files(
            dir.path(),
            &[
                ("iptables.service".into(), "[Unit]\n".into()),
                ("raw".into(), "new\n".into()),
                ("text".into(), "new\n".into()),
                ("new".into(), "new\n".into()),
            ],
        )
        .expect("write");
        back.restore().expect("restore");
        assert_eq!(
            fs::read_link(&alias).expect("still a link"),
            Path::new("/lib/systemd/system/netfilter-persistent.service")
        );
        assert_eq!(fs::read(dir.path().join("raw")).expect("raw"), binary);
        assert_eq!(fs::read(dir.path().join("text")).expect("text"), b"old\n");
        let mode = fs::metadata(dir.path().join("text"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("new").exists());
    }
}
