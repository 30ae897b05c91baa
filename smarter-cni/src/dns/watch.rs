//! Event-driven change tracking with inotify: the record directory (a record appears by
//! rename or write, disappears by unlink) and the directories holding resolv.conf (it is
//! usually replaced by rename, and may be a symlink into another directory). No polling.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// A change the server has to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The record file with this name was written or renamed into place: re-read it.
    Record(String),
    /// The record file with this name is gone.
    RecordGone(String),
    /// Events were lost (queue overflow) or the directory was replaced: re-read everything.
    Rescan,
    /// resolv.conf (or the file behind it) changed.
    ResolvConf,
}

/// The inotify instance and what each watch stands for.
pub struct Watcher {
    inotify: Inotify,
    state_dir: PathBuf,
    state_wd: WatchDescriptor,
    /// Watches on directories holding resolv.conf or its link target, with the file name.
    resolv: Vec<(WatchDescriptor, OsString)>,
}

const STATE_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

const RESOLV_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE);

impl Watcher {
    /// Watches `state_dir` and the files in `resolv_files` (each through its directory, and
    /// through the directory of its symlink target). Set this up before the first full read,
    /// so nothing between the read and the first event is missed.
    ///
    /// # Errors
    /// When inotify cannot be initialised or `state_dir` cannot be watched (a resolv.conf
    /// directory that cannot be watched is only logged).
    pub fn new(state_dir: &Path, resolv_files: &[PathBuf]) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let state_wd = inotify.watches().add(state_dir, STATE_MASK)?;
        let mut resolv = Vec::new();
        for file in resolv_files {
            let mut paths = vec![file.clone()];
            if let Ok(target) = std::fs::canonicalize(file)
                && target != *file
            {
                paths.push(target);
            }
            for p in paths {
                let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                    continue;
                };
                match inotify.watches().add(dir, RESOLV_MASK) {
                    Ok(wd) => resolv.push((wd, name.to_os_string())),
                    // No systemd-resolved on this node: nothing to follow there.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::debug!("not watching {}: {e}", dir.display());
                    }
                    Err(e) => tracing::warn!("cannot watch {}: {e}", dir.display()),
                }
            }
        }
        Ok(Self {
            inotify,
            state_dir: state_dir.to_path_buf(),
            state_wd,
            resolv,
        })
    }

    /// Calls `on` for every change until the event stream fails (then returns the error).
    ///
    /// # Errors
    /// When reading inotify events fails.
    pub async fn run(self, mut on: impl FnMut(Change)) -> io::Result<()> {
        let Self {
            inotify,
            state_dir,
            mut state_wd,
            resolv,
        } = self;
        let mut watches = inotify.watches();
        let mut events = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
        while let Some(ev) = events.next().await {
            let ev = ev?;
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                on(Change::Rescan);
                on(Change::ResolvConf);
                continue;
            }
            if ev.wd == state_wd {
                if ev
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    // The directory was replaced (or removed and made again by the plugin):
                    // watch the new one, if any, and re-read.
                    tracing::warn!("{} was replaced; watching it again", state_dir.display());
                    let _ = std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&state_dir);
                    match watches.add(&state_dir, STATE_MASK) {
                        Ok(wd) => state_wd = wd,
                        Err(e) => tracing::error!("cannot watch {}: {e}", state_dir.display()),
                    }
                    on(Change::Rescan);
                    continue;
                }
                let Some(name) = ev.name.map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                if ev
                    .mask
                    .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
                {
                    on(Change::RecordGone(name));
                } else {
                    on(Change::Record(name));
                }
                continue;
            }
            if resolv
                .iter()
                .any(|(wd, file)| *wd == ev.wd && ev.name.as_deref() == Some(file.as_os_str()))
            {
                on(Change::ResolvConf);
            }
        }
        Ok(())
    }
}
