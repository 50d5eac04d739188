//! The autoboot partition and the one way MineBox changes a file on it.
//!
//! FAT has no journal; what it has is rename-over, which the kernel's vfat driver turns
//! into one rewrite of the target's 32-byte directory entry (start cluster and size) and,
//! after that, the removal of the source entry. [`replace`] therefore writes the whole new
//! file under [`TEMP_NAME`], syncs it (data, FAT chain and its own entry), renames it over
//! the target and syncs the directory. A power cut leaves the firmware one of two complete
//! files: before the entry rewrite the old one, after it the new one. (The autoboot
//! partition is mounted `dirsync` on the device so the kernel writes the entries in that
//! order rather than at writeback's whim.)
//!
//! The one awkward window is after the entry rewrite and before the source entry's
//! removal: both entries then point at the same clusters. Deleting that leftover would
//! free clusters the live file uses, so [`recover`] only deletes a leftover whose content
//! differs from the live file (then it cannot share its clusters) and otherwise renames it
//! aside, to be cleaned by `fsck.fat` while the partition is unmounted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// The name the new file is written under before it replaces the live one (8.3, so no
/// long-name entries are involved).
pub const TEMP_NAME: &str = "AUTOBOOT.NEW";

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: io::Error },
    #[error("mtools {cmd} on {image}: {stderr}; is mtools installed and the image a FAT filesystem?")]
    Mtools { cmd: String, image: String, stderr: String },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io { op, path: path.display().to_string(), source }
}

/// A FAT filesystem holding `autoboot.txt`: only the few operations [`replace`] needs,
/// each durable when it returns.
pub trait Volume {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, VolumeError>;
    /// Creates or truncates `name` with `data`, durably (data, allocation, entry).
    fn write_synced(&self, name: &str, data: &[u8]) -> Result<(), VolumeError>;
    /// Renames `from` over `to`, durably.
    fn rename_over(&self, from: &str, to: &str) -> Result<(), VolumeError>;
    fn remove(&self, name: &str) -> Result<(), VolumeError>;
}

/// The mounted autoboot partition on the device.
pub struct MountedDir {
    dir: PathBuf,
}

impl MountedDir {
    pub fn new(dir: impl Into<PathBuf>) -> MountedDir {
        MountedDir { dir: dir.into() }
    }

    fn sync_dir(&self) -> Result<(), VolumeError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err("sync directory", &self.dir))
    }
}

impl Volume for MountedDir {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, VolumeError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn write_synced(&self, name: &str, data: &[u8]) -> Result<(), VolumeError> {
        let path = self.dir.join(name);
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).open(&path).map_err(io_err("create", &path))?;
        f.write_all(data).map_err(io_err("write", &path))?;
        f.sync_all().map_err(io_err("sync", &path))?;
        self.sync_dir()
    }

    fn rename_over(&self, from: &str, to: &str) -> Result<(), VolumeError> {
        let (src, dst) = (self.dir.join(from), self.dir.join(to));
        fs::rename(&src, &dst).map_err(io_err("rename", &src))?;
        self.sync_dir()
    }

    fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let path = self.dir.join(name);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        self.sync_dir()
    }
}

/// A FAT image file edited with mtools: the tests' real FAT, and usable at image build
/// time. Every mtools command writes the image and exits, so each step is durable.
pub struct FatImage {
    image: PathBuf,
}

impl FatImage {
    pub fn new(image: impl Into<PathBuf>) -> FatImage {
        FatImage { image: image.into() }
    }

    fn mtools(&self, cmd: &str, args: &[&str]) -> Result<Vec<u8>, VolumeError> {
        let out = Command::new(cmd)
            .arg("-i")
            .arg(&self.image)
            .args(args)
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .map_err(io_err("run mtools on", &self.image))?;
        if !out.status.success() {
            return Err(VolumeError::Mtools {
                cmd: format!("{cmd} {}", args.join(" ")),
                image: self.image.display().to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    fn exists(&self, name: &str) -> Result<bool, VolumeError> {
        let listing = self.mtools("mdir", &["-b", "::"])?;
        let wanted = format!("::/{}", name.to_ascii_lowercase());
        Ok(String::from_utf8_lossy(&listing).lines().any(|l| l.trim().to_ascii_lowercase() == wanted))
    }
}

impl Volume for FatImage {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, VolumeError> {
        if !self.exists(name)? {
            return Ok(None);
        }
        self.mtools("mtype", &[&format!("::{name}")]).map(Some)
    }

    fn write_synced(&self, name: &str, data: &[u8]) -> Result<(), VolumeError> {
        let dir = tempfile_dir()?;
        let local = dir.join("data");
        fs::write(&local, data).map_err(io_err("write", &local))?;
        let r = self.mtools("mcopy", &["-o", &local.display().to_string(), &format!("::{name}")]);
        let _ = fs::remove_dir_all(&dir);
        r.map(drop)
    }

    fn rename_over(&self, from: &str, to: &str) -> Result<(), VolumeError> {
        self.mtools("mmove", &["-D", "o", &format!("::{from}"), &format!("::{to}")]).map(drop)
    }

    fn remove(&self, name: &str) -> Result<(), VolumeError> {
        self.mtools("mdel", &[&format!("::{name}")]).map(drop)
    }
}

fn tempfile_dir() -> Result<PathBuf, VolumeError> {
    let base = std::env::temp_dir();
    for n in 0..1000u32 {
        let dir = base.join(format!("minebox-tryboot-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
    }
    Err(io_err("create temporary directory in", &base)(io::ErrorKind::AlreadyExists.into()))
}

/// What [`recover`] did with a leftover of an interrupted [`replace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    None,
    /// Differed from the live file, so it never replaced it: deleted.
    Removed,
    /// Same content as the live file, so it may share its clusters: renamed aside.
    SetAside(String),
}

/// Cleans up after a power cut during [`replace`]; see the module comment for why a
/// leftover is only deleted when its content differs from the live file.
pub fn recover(vol: &dyn Volume, target: &str) -> Result<Leftover, VolumeError> {
    let Some(left) = vol.read(TEMP_NAME)? else {
        return Ok(Leftover::None);
    };
    if vol.read(target)?.as_deref() != Some(left.as_slice()) {
        vol.remove(TEMP_NAME)?;
        return Ok(Leftover::Removed);
    }
    for n in 0..1000 {
        let aside = format!("STALE{n:03}.OLD");
        if vol.read(&aside)?.is_none() {
            vol.rename_over(TEMP_NAME, &aside)?;
            return Ok(Leftover::SetAside(aside));
        }
    }
    Ok(Leftover::None)
}

/// Atomically replaces `target` with `data` (see the module comment).
pub fn replace(vol: &dyn Volume, target: &str, data: &[u8]) -> Result<(), VolumeError> {
    recover(vol, target)?;
    vol.write_synced(TEMP_NAME, data)?;
    vol.rename_over(TEMP_NAME, target)
}
