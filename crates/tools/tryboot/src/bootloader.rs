//! What the Pi 5 firmware tells the kernel about this boot, under
//! `/proc/device-tree/chosen/bootloader/`: `partition` (the boot partition it loaded) and
//! `tryboot` (1 when this is a one-shot trial boot). Both are big-endian u32 cells.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::autoboot::Slot;

pub const DEFAULT_DT_DIR: &str = "/proc/device-tree/chosen/bootloader";

#[derive(Debug, Error)]
pub enum BootInfoError {
    #[error("read {path}: {source}; is this a Raspberry Pi 5 booted by its own firmware?")]
    Read { path: String, source: io::Error },
    #[error("{path} holds {len} bytes, not one big-endian u32 cell")]
    Cell { path: String, len: usize },
    #[error("the firmware booted partition {0}, which is not a MineBox boot slot (2 = A, 3 = B)")]
    NotASlot(u32),
}

/// This boot, as the firmware saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo {
    pub slot: Slot,
    pub trial: bool,
}

impl BootInfo {
    pub fn read(dir: &Path) -> Result<BootInfo, BootInfoError> {
        let partition = cell(&dir.join("partition"))?;
        // Older firmware has no tryboot cell at all: then it cannot be a trial.
        let trial = match cell(&dir.join("tryboot")) {
            Ok(v) => v != 0,
            Err(BootInfoError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let slot = Slot::from_boot_partition(partition).ok_or(BootInfoError::NotASlot(partition))?;
        Ok(BootInfo { slot, trial })
    }

    /// Writes the cells as the firmware does: for tests and the x86_64 twin, which has no
    /// Pi firmware and gets its boot facts from its own boot loader.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        fs::write(dir.join("partition"), self.slot.boot_partition().to_be_bytes())?;
        fs::write(dir.join("tryboot"), u32::from(self.trial).to_be_bytes())
    }
}

fn cell(path: &PathBuf) -> Result<u32, BootInfoError> {
    let bytes = fs::read(path).map_err(|source| BootInfoError::Read { path: path.display().to_string(), source })?;
    let arr: [u8; 4] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| BootInfoError::Cell { path: path.display().to_string(), len: bytes.len() })?;
    Ok(u32::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_firmware_writes() {
        let dir = tempfile::tempdir().unwrap();
        let info = BootInfo { slot: Slot::B, trial: true };
        info.write(dir.path()).unwrap();
        assert_eq!(BootInfo::read(dir.path()).unwrap(), info);
    }

    #[test]
    fn missing_tryboot_cell_is_a_normal_boot() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("partition"), 2u32.to_be_bytes()).unwrap();
        assert_eq!(BootInfo::read(dir.path()).unwrap(), BootInfo { slot: Slot::A, trial: false });
    }

    #[test]
    fn rejects_malformed_cells_and_foreign_partitions() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("partition"), b"2\n").unwrap();
        assert!(matches!(BootInfo::read(dir.path()), Err(BootInfoError::Cell { .. })));
        fs::write(dir.path().join("partition"), 5u32.to_be_bytes()).unwrap();
        assert!(matches!(BootInfo::read(dir.path()), Err(BootInfoError::NotASlot(5))));
        assert!(matches!(BootInfo::read(&dir.path().join("absent")), Err(BootInfoError::Read { .. })));
    }
}
