//! An instance's output files (`<i>.rules`, `<i>.rules.empty`, `<i>.sets`, and the
//! same for IPv6) written as one set: whoever reads them (systemd at boot or on a
//! reload, `status`), and wherever a writing run is killed, finds the complete old set
//! or the complete new set, never the IPv4 rules of one policy beside the IPv6 rules of
//! another, nor rules beside the sets of another policy.
//!
//! Several renames cannot be one step, so the files live in a version directory and the
//! names the units read are fixed symbolic links through one `current` link, which one
//! rename swaps (the scheme of Kubernetes' AtomicWriter):
//!
//! ```text
//! /etc/iptables/base.rules -> .base.set/current/base.rules
//! /etc/iptables/.base.set/current -> v7
//! /etc/iptables/.base.set/v7/base.rules
//! ```
//!
//! Every step leaves the files on disk showing either the old set or the new one:
//! - a name that is not yet such a link (a file of an older version, or one put there by
//!   hand) is first copied into a version of its own, and only then replaced by a link
//!   that shows the same bytes;
//! - a new version is written and synced in full before `current` moves to it;
//! - a name the new set does not have loses its link only once that link dangles.
//!
//! A run killed at any point leaves at most an unused version or a temporary link; the
//! next write removes them. The version before the current one stays until then, so a
//! reader that had just resolved `current` still finds its files. Writers hold
//! [`DirLock`](crate::files::DirLock) on the directory, and so do the commands that
//! prove the files and then load them; the units' own loads open the two families'
//! files one after the other, so a load under way while a set is replaced may take
//! IPv4 rules of one and IPv6 rules of the other, which `status` then reports as drift
//! (the command that replaced the set reloads it, or says it did not load it).
//!
//! The store must be a real directory that only root can write to (a link there would
//! make the cleanup empty another directory), and `current` a link to a version.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::source;
use crate::files::{self, WriteError, WriteSummary, io_error};

/// The most one file of a set may hold, rendered or read back: far above what
/// [`crate::iptables::shape::MAX_RULES`] rules take, room for a set of
/// [`crate::policy::lists::MAX_LIST_ENTRIES`] of the longest IPv6 networks, and a bound
/// on a file replaced by hand.
pub const OUTPUT_LIMIT: u64 = 48 * 1024 * 1024;

/// The link in the set directory that names the version in force.
const CURRENT: &str = "current";

/// What one name of a set shows a reader: its bytes, and the mode and owner a copy
/// keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// The content.
    #[serde(with = "files::bytes")]
    pub bytes: Vec<u8>,
    mode: u32,
    owner: (u32, u32),
}

/// What every name of a set shows now (`None`: no such file), to put back later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetState {
    entries: Vec<(String, Option<Shown>)>,
}

impl Shown {
    /// Showing the same again: the same bytes, mode and owner.
    fn wanted(&self) -> Wanted<'_> {
        Wanted {
            bytes: &self.bytes,
            mode: self.mode,
            owner: Some(self.owner),
        }
    }
}

impl SetState {
    /// What `name` shows, if it is one of the set's names and shows a file.
    pub fn shown(&self, name: &str) -> Option<&Shown> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, shown)| shown.as_ref())
    }

    /// Every name that shows a file, with its bytes, in the set's order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().filter_map(|(name, shown)| {
            shown
                .as_ref()
                .map(|shown| (name.as_str(), shown.bytes.as_slice()))
        })
    }
}

/// What a name is to show after a change: bytes, mode, and the owner to give the copy
/// (`None`: whoever writes it).
#[derive(Debug, Clone, Copy)]
struct Wanted<'a> {
    bytes: &'a [u8],
    mode: u32,
    owner: Option<(u32, u32)>,
}

/// Every name of a set with what it is to show (`None`: no file).
type Target<'a> = [(String, Option<Wanted<'a>>)];

/// The files of one set in one directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSet {
    dir: PathBuf,
    /// `.<set>.set`: the versions and the `current` link, inside `dir`.
    store: String,
    names: Vec<String>,
}

impl FileSet {
    /// The set named `set` in `dir`, made of the files `names`.
    pub fn new(dir: &Path, set: &str, names: Vec<String>) -> FileSet {
        FileSet {
            dir: dir.to_owned(),
            store: format!(".{set}.set"),
            names,
        }
    }

    /// What each name shows now, following links. A name that is not a regular file of
    /// at most [`OUTPUT_LIMIT`] bytes (a directory, a device) is an error.
    pub fn read(&self) -> Result<SetState, WriteError> {
        let mut entries = Vec::with_capacity(self.names.len());
        for name in &self.names {
            let path = self.dir.join(name);
            let shown = source::read_output(&path, OUTPUT_LIMIT)
                .map_err(files::read_error(&path))?
                .map(|(bytes, meta)| Shown {
                    bytes,
                    mode: meta.mode() & 0o7777,
                    owner: (meta.uid(), meta.gid()),
                });
            entries.push((name.clone(), shown));
        }
        Ok(SetState { entries })
    }

    /// Writes `files` (`(name, content)` for every name of the set) as one step: files
    /// whose content is already there are reported unchanged, and when none changed
    /// nothing is touched. A file's mode is kept when only its owner can write it;
    /// otherwise new files get 0644.
    pub fn write(&self, files: &[(String, String)]) -> Result<WriteSummary, WriteError> {
        let mut target = Vec::with_capacity(self.names.len());
        for name in &self.names {
            let Some((_, content)) = files.iter().find(|(n, _)| n == name) else {
                return Err(WriteError::NotAFile {
                    path: self.dir.join(name),
                });
            };
            let path = self.dir.join(name);
            target.push((
                name.clone(),
                Some(Wanted {
                    bytes: content.as_bytes(),
                    mode: files::mode_for(&path),
                    owner: None,
                }),
            ));
        }
        let changed = self.commit(&target)?;
        let mut summary = WriteSummary::default();
        for name in &self.names {
            let path = self.dir.join(name);
            if changed.contains(name) {
                summary.written.push(path);
            } else {
                summary.unchanged.push(path);
            }
        }
        Ok(summary)
    }

    /// Puts the set back to what `state` recorded (absent names removed), as one step
    /// like [`FileSet::write`]. Returns whether anything had to change: a set that
    /// still shows `state` is not touched (a read-only file system is no error then).
    pub fn put_back(&self, state: &SetState) -> Result<bool, WriteError> {
        let target: Vec<_> = state
            .entries
            .iter()
            .map(|(name, shown)| (name.clone(), shown.as_ref().map(Shown::wanted)))
            .collect();
        Ok(!self.commit(&target)?.is_empty())
    }

    /// Makes the set show `target` (name, content and mode, or `None` for no file);
    /// returns the names whose content changed.
    fn commit(&self, target: &Target<'_>) -> Result<Vec<String>, WriteError> {
        let store = self.dir.join(&self.store);
        let mut current = self.check_store(&store)?;
        let before = self.read()?;
        let changed: Vec<String> = target
            .iter()
            .filter(|(name, wanted)| {
                before.shown(name).map(|s| s.bytes.as_slice()) != wanted.map(|w| w.bytes)
            })
            .map(|(name, _)| name.clone())
            .collect();
        if changed.is_empty() {
            // What killed runs left goes when it can; nothing needs writing, so a
            // read-only file system is no error here.
            let _ = self.remove_stale(&store, current.as_slice());
            return Ok(changed);
        }
        self.remove_stale(&store, current.as_slice())?;
        if fs::symlink_metadata(&store).is_err() {
            files::create_dirs(&store)?;
        }

        // 1. Every name that shows a file now or will show one becomes a link through
        //    `current`, each showing exactly what it showed before.
        let unlinked: Vec<&String> = target
            .iter()
            .filter(|(name, wanted)| before.shown(name).is_some() || wanted.is_some())
            .map(|(name, _)| name)
            .filter(|name| !self.is_linked(name))
            .collect();
        if !unlinked.is_empty() {
            if !self.links_would_show(&store, current, &unlinked, &before) {
                let as_before: Vec<_> = before
                    .entries
                    .iter()
                    .map(|(name, shown)| (name.clone(), shown.as_ref().map(Shown::wanted)))
                    .collect();
                current = Some(self.write_version(&store, current, &as_before)?);
            }
            for name in unlinked {
                self.link(name)?;
            }
            files::sync_dir(&self.dir)?;
        }

        // 2. The new version, complete and synced, then `current` moves to it.
        let previous = current;
        let new = self.write_version(&store, current, target)?;

        // 3. Links that dangle now go; an empty set leaves nothing behind.
        for (name, content) in target {
            if content.is_none() && self.is_linked(name) {
                fs::remove_file(self.dir.join(name))
                    .map_err(io_error("cannot remove", &self.dir.join(name)))?;
            }
        }
        if target.iter().all(|(_, content)| content.is_none()) {
            fs::remove_dir_all(&store).map_err(io_error("cannot remove", &store))?;
        } else {
            let keep: Vec<u64> = previous.into_iter().chain([new]).collect();
            self.remove_stale(&store, &keep)?;
        }
        files::sync_dir(&self.dir)?;
        Ok(changed)
    }

    /// Refuses a store that is not this tool's: anything but a real directory (a link
    /// would make the cleanup empty whatever directory it points to), one that others
    /// could write to (or a directory above it), or a `current` that is not a link to a
    /// version. Returns the version `current` names.
    fn check_store(&self, store: &Path) -> Result<Option<u64>, WriteError> {
        let refuse = |path: &Path, why: String| WriteError::Untrusted {
            path: path.to_owned(),
            why,
        };
        source::check_directory(&self.dir).map_err(|e| refuse(&self.dir, e.to_string()))?;
        match fs::symlink_metadata(store) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot inspect", store)(e)),
            Ok(meta) if !meta.is_dir() => {
                return Err(refuse(
                    store,
                    "expected the directory this tool keeps the versions of the rules in, found a symbolic link or a file; move it away".to_owned(),
                ));
            }
            Ok(_) => source::check_directory(store).map_err(|e| refuse(store, e.to_string()))?,
        }
        self.current_version(store)
    }

    /// The version `current` names, if any; a `current` that is not a link to a
    /// version (`vN`) is an error, never guessed at (the cleanup keeps what it names).
    fn current_version(&self, store: &Path) -> Result<Option<u64>, WriteError> {
        let link = store.join(CURRENT);
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot inspect", &link)(e)),
            Ok(_) => {}
        }
        fs::read_link(&link)
            .ok()
            .and_then(|target| target.to_str().and_then(parse_version))
            .map(Some)
            .ok_or_else(|| WriteError::Untrusted {
                path: link.clone(),
                why: "expected a link to a version of the rules (vN), as this tool makes it; move it away".to_owned(),
            })
    }

    /// Whether linking `names` through `current` leaves them showing what `before`
    /// says they show (a missing `current`, or a version without the name, shows no
    /// file).
    fn links_would_show(
        &self,
        store: &Path,
        current: Option<u64>,
        names: &[&String],
        before: &SetState,
    ) -> bool {
        names.iter().all(|name| {
            let held = current.and_then(|version| {
                let path = store.join(version_name(version)).join(name);
                source::read_output(&path, OUTPUT_LIMIT).ok().flatten()
            });
            held.map(|(bytes, _)| bytes).as_deref()
                == before.shown(name).map(|s| s.bytes.as_slice())
        })
    }

    /// Writes a version after `current` holding `content`, syncs it, and points
    /// `current` at it. Returns its number.
    fn write_version(
        &self,
        store: &Path,
        current: Option<u64>,
        content: &Target<'_>,
    ) -> Result<u64, WriteError> {
        let number = current.map_or(1, |n| n.saturating_add(1));
        let dir = store.join(version_name(number));
        // A leftover of this number was removed with the other stale entries; one that
        // appeared since is an error, never reused.
        fs::create_dir(&dir).map_err(io_error("cannot create", &dir))?;
        fs::set_permissions(&dir, Permissions::from_mode(files::DIR_MODE))
            .map_err(io_error("cannot set permissions of", &dir))?;
        for (name, file) in content {
            if let Some(wanted) = file {
                files::stage_file(&dir, wanted.bytes, wanted.mode, wanted.owner)?
                    .persist(dir.join(name))
                    .map_err(|e| io_error("cannot rename into", &dir.join(name))(e.error))?;
            }
        }
        files::sync_dir(&dir)?;
        // The version's own entry in the store is durable before `current` names it.
        files::sync_dir(store)?;
        files::replace_with_link(store, CURRENT, Path::new(&version_name(number)))?;
        files::sync_dir(store)?;
        Ok(number)
    }

    /// Whether `name` is the link through `current` that the set makes.
    fn is_linked(&self, name: &str) -> bool {
        fs::read_link(self.dir.join(name)).is_ok_and(|target| target == self.link_target(name))
    }

    fn link_target(&self, name: &str) -> PathBuf {
        Path::new(&self.store).join(CURRENT).join(name)
    }

    /// Replaces whatever `name` is by the link through `current`, in one rename.
    fn link(&self, name: &str) -> Result<(), WriteError> {
        files::replace_with_link(&self.dir, name, &self.link_target(name))
    }

    /// Removes everything in the store but `current` and the versions `keep` (the one
    /// in force, and after a swap the one before it): versions and links that killed
    /// runs left, and older versions.
    fn remove_stale(&self, store: &Path, keep: &[u64]) -> Result<(), WriteError> {
        let entries = match fs::read_dir(store) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("cannot list", store)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error("cannot list", store))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kept = name == CURRENT || parse_version(&name).is_some_and(|v| keep.contains(&v));
            if kept {
                continue;
            }
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed.map_err(io_error("cannot remove the stale", &path))?;
        }
        Ok(())
    }
}

fn version_name(number: u64) -> String {
    format!("v{number}")
}

fn parse_version(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = [
        "base.rules",
        "base.rules.empty",
        "base.rules6",
        "base.rules6.empty",
    ];

    fn set(dir: &Path) -> FileSet {
        FileSet::new(dir, "base", NAMES.map(str::to_owned).to_vec())
    }

    fn files(tag: &str) -> Vec<(String, String)> {
        NAMES
            .iter()
            .map(|n| ((*n).to_owned(), format!("{n} {tag}\n")))
            .collect()
    }

    fn shows(dir: &Path) -> Vec<Option<String>> {
        NAMES
            .iter()
            .map(|n| fs::read_to_string(dir.join(n)).ok())
            .collect()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in walk(dir) {
            let rel = entry
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            match fs::read_link(&entry) {
                Ok(target) => out.push(format!("{rel} -> {}", target.display())),
                Err(_) => out.push(rel),
            }
        }
        out.sort();
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).expect("list") {
            let path = entry.expect("entry").path();
            out.push(path.clone());
            if fs::symlink_metadata(&path).expect("stat").is_dir() {
                out.extend(walk(&path));
            }
        }
        out
    }

    #[test]
    fn a_new_set_is_four_links_through_one_current_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = set(dir.path()).write(&files("a")).expect("write");
        assert_eq!(summary.written.len(), 4);
        assert_eq!(
            listing(dir.path()),
            [
                ".base.set",
                ".base.set/current -> v1",
                ".base.set/v1",
                ".base.set/v1/base.rules",
                ".base.set/v1/base.rules.empty",
                ".base.set/v1/base.rules6",
                ".base.set/v1/base.rules6.empty",
                "base.rules -> .base.set/current/base.rules",
                "base.rules.empty -> .base.set/current/base.rules.empty",
                "base.rules6 -> .base.set/current/base.rules6",
                "base.rules6.empty -> .base.set/current/base.rules6.empty",
            ]
        );
        let mode = fs::metadata(dir.path().join("base.rules"))
            .expect("meta")
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn the_same_content_touches_nothing_and_a_change_keeps_one_previous_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fileset = set(dir.path());
        fileset.write(&files("a")).expect("write a");
        let listed = listing(dir.path());
        let again = fileset.write(&files("a")).expect("write a again");
        assert!(again.written.is_empty());
        assert_eq!(listing(dir.path()), listed);

        let mut changed = files("a");
        changed[2].1 = "base.rules6 b\n".to_owned();
        let summary = fileset.write(&changed).expect("write b");
        assert_eq!(summary.written, [dir.path().join("base.rules6")]);
        fileset.write(&files("c")).expect("write c");
        let versions: Vec<String> = listing(dir.path())
            .into_iter()
            .filter(|l| l.starts_with(".base.set/v") && !l.contains("/base"))
            .collect();
        assert_eq!(versions, [".base.set/v2", ".base.set/v3"]);
        assert_eq!(
            shows(dir.path()),
            NAMES.map(|n| Some(format!("{n} c\n"))).to_vec()
        );
    }

    #[test]
    fn plain_files_of_an_older_version_become_links_showing_the_same_bytes_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in files("old") {
            fs::write(dir.path().join(&name), content).expect("seed");
        }
        fs::set_permissions(dir.path().join("base.rules"), Permissions::from_mode(0o600))
            .expect("chmod");
        let fileset = set(dir.path());
        let before = fileset.read().expect("read");
        fileset.write(&files("new")).expect("write");
        assert_eq!(
            shows(dir.path()),
            NAMES.map(|n| Some(format!("{n} new\n"))).to_vec()
        );
        let mode = fs::metadata(dir.path().join("base.rules"))
            .expect("meta")
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600, "a private file stays private");
        // v1 holds the old bytes the links showed first, v2 the new ones.
        assert_eq!(
            fs::read_to_string(dir.path().join(".base.set/v1/base.rules6")).expect("v1"),
            "base.rules6 old\n"
        );
        assert!(fileset.put_back(&before).expect("put back"));
        assert_eq!(
            shows(dir.path()),
            NAMES.map(|n| Some(format!("{n} old\n"))).to_vec()
        );
    }

    #[test]
    fn putting_back_an_absent_set_leaves_nothing_and_an_unchanged_one_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fileset = set(dir.path());
        let absent = fileset.read().expect("read");
        fileset.write(&files("a")).expect("write");
        let written = fileset.read().expect("read");
        assert!(!fileset.put_back(&written).expect("same set"));
        assert!(fileset.put_back(&absent).expect("put back"));
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }

    #[test]
    fn what_a_killed_run_left_is_removed_by_the_next_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fileset = set(dir.path());
        fileset.write(&files("a")).expect("write");
        // A run killed after writing v2 but before moving `current`, and a temp link.
        let store = dir.path().join(".base.set");
        fs::create_dir(store.join("v2")).expect("half version");
        fs::write(store.join("v2/base.rules"), "half").expect("half file");
        std::os::unix::fs::symlink("v2", store.join(".iptables-ctl-x")).expect("temp link");
        assert_eq!(
            shows(dir.path()),
            NAMES.map(|n| Some(format!("{n} a\n"))).to_vec()
        );
        fileset.write(&files("a")).expect("unchanged write");
        assert_eq!(
            listing(dir.path())
                .iter()
                .filter(|l| l.starts_with(".base.set/") && !l.contains("/base"))
                .collect::<Vec<_>>(),
            [".base.set/current -> v1", ".base.set/v1"]
        );
    }

    #[test]
    fn a_store_that_is_a_link_or_a_current_that_is_not_a_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = tempfile::tempdir().expect("victim");
        fs::write(victim.path().join("data.txt"), "keep me").expect("victim file");
        std::os::unix::fs::symlink(victim.path(), dir.path().join(".base.set")).expect("link");
        let error = set(dir.path())
            .write(&files("a"))
            .expect_err("a linked store");
        assert!(
            error
                .to_string()
                .contains("found a symbolic link or a file"),
            "{error}"
        );
        assert!(
            victim.path().join("data.txt").exists(),
            "the cleanup stays in the store"
        );
        assert_eq!(
            listing(dir.path()),
            [".base.set -> ".to_owned() + &victim.path().display().to_string()]
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let fileset = set(dir.path());
        fileset.write(&files("a")).expect("write");
        let store = dir.path().join(".base.set");
        fs::remove_file(store.join("current")).expect("unlink");
        std::os::unix::fs::symlink("./v1", store.join("current")).expect("odd current");
        let listed = listing(dir.path());
        let error = fileset.write(&files("b")).expect_err("an odd current");
        assert!(
            error.to_string().contains("expected a link to a version"),
            "{error}"
        );
        assert_eq!(
            listing(dir.path()),
            listed,
            "nothing removed, nothing written"
        );
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), Permissions::from_mode(0o777)).expect("chmod");
        let error = set(dir.path())
            .write(&files("a"))
            .expect_err("world-writable");
        assert!(error.to_string().contains("writable by anyone"), "{error}");
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn a_directory_in_place_of_a_file_is_an_error_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("base.rules6")).expect("dir");
        let error = set(dir.path()).write(&files("a")).expect_err("a directory");
        assert!(error.to_string().contains("base.rules6"), "{error}");
        assert_eq!(listing(dir.path()), ["base.rules6"]);
    }
}
