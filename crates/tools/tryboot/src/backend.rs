//! RAUC's custom bootloader backend contract, mapped onto tryboot.
//!
//! RAUC calls `get-primary`, `set-primary <bootname>`, `get-state <bootname>`,
//! `set-state <bootname> good|bad` and `get-current`. Tryboot adds one rule: installing
//! never changes what a normal boot starts. `set-primary` only arms the `[tryboot]`
//! section; the updater then reboots with `reboot '0 tryboot'`; and only `set-state
//! <slot> good` from inside that trial boot (RAUC's `mark-good`, after the health check)
//! rewrites `[all]`. A crash, a hang caught by the watchdog, or a plain power cycle during
//! the trial boots the old slot again.

use std::path::PathBuf;

use thiserror::Error;

use crate::autoboot::{Autoboot, ParseError, Slot, SlotState};
use crate::bootloader::{BootInfo, BootInfoError};
use crate::volume::{self, Volume, VolumeError};

pub const AUTOBOOT_NAME: &str = "autoboot.txt";

#[derive(Debug, Error)]
pub enum BackendError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("autoboot.txt: {0}")]
    Parse(#[from] ParseError),
    #[error(
        "autoboot.txt is missing from the autoboot partition; restore it from the image (buildroot-external/board/rpi5/autoboot.txt)"
    )]
    Missing,
    #[error(transparent)]
    Boot(#[from] BootInfoError),
    #[error("slot {0} is marked bad; install an update into it first, or use --force to boot it anyway")]
    SwitchToBad(Slot),
}

/// What the backend did when a slot was marked good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkGood {
    /// This was the trial boot of the slot: it is now what every boot starts.
    Committed(Slot),
    /// Already the normal boot slot (or not booted): recorded as good, nothing to switch.
    Recorded(Slot),
}

pub struct Backend {
    volume: Box<dyn Volume>,
    dt_dir: PathBuf,
}

impl Backend {
    pub fn new(volume: Box<dyn Volume>, dt_dir: impl Into<PathBuf>) -> Backend {
        Backend { volume, dt_dir: dt_dir.into() }
    }

    pub fn load(&self) -> Result<Autoboot, BackendError> {
        let bytes = self.volume.read(AUTOBOOT_NAME)?.ok_or(BackendError::Missing)?;
        Ok(Autoboot::parse(&String::from_utf8_lossy(&bytes))?)
    }

    fn store(&self, ab: &Autoboot) -> Result<(), BackendError> {
        volume::replace(self.volume.as_ref(), AUTOBOOT_NAME, ab.render().as_bytes())?;
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut Autoboot)) -> Result<Autoboot, BackendError> {
        let old = self.load()?;
        let mut new = old;
        f(&mut new);
        // No write when nothing changes: fewer writes to the card, fewer power-cut windows.
        if new != old {
            self.store(&new)?;
        }
        Ok(new)
    }

    pub fn boot_info(&self) -> Result<BootInfo, BackendError> {
        Ok(BootInfo::read(&self.dt_dir)?)
    }

    /// The slot a normal boot starts.
    pub fn get_primary(&self) -> Result<Slot, BackendError> {
        Ok(self.load()?.primary)
    }

    /// Arms `slot` for the next `reboot '0 tryboot'` (RAUC calls this after installing).
    /// Choosing the slot that already boots normally cancels a pending trial.
    pub fn set_primary(&self, slot: Slot) -> Result<Autoboot, BackendError> {
        self.update(|ab| {
            ab.trial = slot;
            ab.set_state(slot, SlotState::Good);
        })
    }

    pub fn get_state(&self, slot: Slot) -> Result<SlotState, BackendError> {
        Ok(self.load()?.state(slot))
    }

    /// Good from inside the slot's trial boot commits it; bad disarms a pending trial of
    /// it, and if it is the normal boot slot while the other is good, moves away from it.
    pub fn set_state(&self, slot: Slot, state: SlotState) -> Result<Autoboot, BackendError> {
        let boot = match state {
            SlotState::Good => Some(self.boot_info()?),
            SlotState::Bad => None,
        };
        self.update(|ab| {
            ab.set_state(slot, state);
            match state {
                SlotState::Good => {
                    if boot == Some(BootInfo { slot, trial: true }) && ab.trial == slot {
                        ab.primary = slot;
                    }
                }
                SlotState::Bad => {
                    if ab.primary == slot && ab.state(slot.other()) == SlotState::Good {
                        ab.primary = slot.other();
                    }
                    if ab.trial == slot {
                        ab.trial = ab.primary;
                    }
                }
            }
        })
    }

    /// The updater's and the recovery console's "this boot is healthy".
    pub fn mark_good(&self) -> Result<MarkGood, BackendError> {
        let boot = self.boot_info()?;
        let before = self.load()?;
        let after = self.set_state(boot.slot, SlotState::Good)?;
        Ok(if after.primary == boot.slot && before.primary != boot.slot {
            MarkGood::Committed(boot.slot)
        } else {
            MarkGood::Recorded(boot.slot)
        })
    }

    /// The slot running now.
    pub fn get_current(&self) -> Result<Slot, BackendError> {
        Ok(self.boot_info()?.slot)
    }

    /// Recovery console: make the other slot what every boot starts, for good.
    pub fn switch_to_other(&self, force: bool) -> Result<Slot, BackendError> {
        let current = self.load()?.primary;
        let target = current.other();
        if !force && self.load()?.state(target) == SlotState::Bad {
            return Err(BackendError::SwitchToBad(target));
        }
        self.update(|ab| {
            ab.primary = target;
            ab.trial = target;
            ab.set_state(target, SlotState::Good);
        })?;
        Ok(target)
    }

    /// Writes a fresh file (image build, or a recovery console repair).
    pub fn write_factory(&self) -> Result<(), BackendError> {
        self.store(&Autoboot::factory())
    }
}
