//! Files and filesystems: one way to replace a file durably, and free space.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` so that a crash or power cut at any moment leaves either the
/// old file or the new one under that name, never a part of either. See [`AtomicWrite`].
pub fn atomic_write(path: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    AtomicWrite::to(path).write(bytes.as_ref())
}

/// A durable whole-file replacement, with the few choices the services need.
///
/// The one discipline, each step for a reason:
/// 1. write a temporary file beside the target (a rename is atomic only within one
///    filesystem), under a name of its own per process and write, so two writers never
///    share a temporary file;
/// 2. set the mode on the open file (fchmod is not masked by the umask: the services run
///    with UMask=0077, and a settings file only its writer could read once crash-looped the
///    stratum server);
/// 3. fsync the file: without it, ext4 may commit the rename before the data, and a power
///    cut leaves an empty or short file under the real name;
/// 4. rename over the target: readers see the old file or the new one;
/// 5. fsync the directory (and the staging directory, if it is another): the rename itself
///    is durable when this returns, so a caller may report "saved" or act on it.
///
/// On any error the temporary file is removed and the target is untouched. A power cut
/// between 1 and 4 can leave a hidden `.NAME.*.tmp` file beside the target, never a torn one.
#[derive(Debug, Clone)]
pub struct AtomicWrite<'a> {
    path: &'a Path,
    mode: Option<u32>,
    staging: Option<&'a Path>,
}

impl<'a> AtomicWrite<'a> {
    pub fn to(path: &'a Path) -> AtomicWrite<'a> {
        AtomicWrite { path, mode: None, staging: None }
    }

    /// The file's permission bits, whatever the process's umask. Without it a new file gets
    /// 0666 less the umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Makes the temporary file in `dir` (same filesystem as the target) rather than beside
    /// the target: a file then takes `dir`'s group when `dir` is setgid.
    pub fn staged_in(mut self, dir: &'a Path) -> Self {
        self.staging = Some(dir);
        self
    }

    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let dir = parent(self.path);
        let staging = self.staging.unwrap_or(dir);
        let tmp = temporary_name(staging, self.path);
        let written = (|| {
            // Without a mode: 0666 less the umask, as a plain create gives. With one, the file
            // is never more open than asked, not even before the fchmod (secrets are 0600).
            let create = self.mode.unwrap_or(0o666);
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(create).open(&tmp)?;
            if let Some(mode) = self.mode {
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(dir)?;
        if staging != dir {
            sync_dir(staging)?;
        }
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn temporary_name(dir: &Path, target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The size of the filesystem holding a path, and what of it an unprivileged writer may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    /// Free to unprivileged processes (the blocks reserved for root are not counted): what
    /// a service running as its own user can still write.
    pub available_bytes: u64,
}

/// statvfs(2) of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let s = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frsize = s.fragment_size() as u64;
    Ok(DiskSpace { total_bytes: s.blocks() as u64 * frsize, available_bytes: s.blocks_available() as u64 * frsize })
}

/// Bytes an unprivileged process can still write on the filesystem holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    disk_space(path).map(|s| s.available_bytes)
}
