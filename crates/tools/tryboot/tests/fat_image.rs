//! The A/B switch on a real FAT filesystem (mkfs.vfat image edited with mtools, the same
//! bytes the Pi 5 firmware would read), including failed trials and power cuts.
//! Needs dosfstools and mtools (scripts/setup.d/30-image.sh installs them).

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;

use minebox_tryboot::backend::{Backend, MarkGood, AUTOBOOT_NAME};
use minebox_tryboot::volume::{self, FatImage, Leftover, Volume, VolumeError, TEMP_NAME};
use minebox_tryboot::{Autoboot, BootInfo, Slot, SlotState};

struct Rig {
    _dir: tempfile::TempDir,
    image: PathBuf,
    dt: PathBuf,
}

impl Rig {
    /// A 32 MiB FAT autoboot partition holding the factory autoboot.txt, as image.cfg makes it.
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("autoboot.vfat");
        run(Command::new("mkfs.vfat").args(["-n", "AUTOBOOT", "-C"]).arg(&image).arg("32768"));
        let dt = dir.path().join("dt");
        let rig = Rig { image, dt, _dir: dir };
        rig.boot(Slot::A, false);
        rig.backend().write_factory().unwrap();
        rig
    }

    fn backend(&self) -> Backend {
        Backend::new(Box::new(FatImage::new(&self.image)), &self.dt)
    }

    /// The firmware's facts for the boot we pretend just happened.
    fn boot(&self, slot: Slot, trial: bool) {
        BootInfo { slot, trial }.write(&self.dt).unwrap();
    }

    /// What the firmware reads, straight off the FAT image.
    fn firmware_view(&self) -> Autoboot {
        let out = Command::new("mtype").arg("-i").arg(&self.image).arg("::autoboot.txt").output().unwrap();
        assert!(out.status.success(), "mtype: {}", String::from_utf8_lossy(&out.stderr));
        Autoboot::parse(&String::from_utf8_lossy(&out.stdout)).expect("firmware would not A/B boot")
    }

    /// Which slot the firmware boots: `[tryboot]` after `reboot '0 tryboot'`, else `[all]`.
    fn firmware_boots(&self, tryboot_flag: bool) -> Slot {
        let ab = self.firmware_view();
        if tryboot_flag {
            ab.trial
        } else {
            ab.primary
        }
    }

    fn assert_fsck_clean(&self) {
        let out = Command::new("fsck.fat").arg("-n").arg(&self.image).output().unwrap();
        assert!(out.status.success(), "fsck.fat found damage:\n{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}; run scripts/setup first"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn update_trial_then_health_check_commits_the_new_slot() {
    let rig = Rig::new();
    let b = rig.backend();
    assert_eq!(b.get_primary().unwrap(), Slot::A);

    // RAUC installed into B and set it primary: a normal boot still starts A.
    b.set_primary(Slot::B).unwrap();
    assert_eq!(rig.firmware_boots(false), Slot::A);
    assert_eq!(rig.firmware_boots(true), Slot::B);
    assert_eq!(b.get_primary().unwrap(), Slot::A);

    // reboot '0 tryboot' -> firmware boots B on trial; the health check passes.
    rig.boot(Slot::B, true);
    assert_eq!(b.get_current().unwrap(), Slot::B);
    assert_eq!(b.mark_good().unwrap(), MarkGood::Committed(Slot::B));
    assert_eq!(rig.firmware_boots(false), Slot::B);
    assert_eq!(rig.firmware_boots(true), Slot::B);
    assert_eq!(b.get_state(Slot::B).unwrap(), SlotState::Good);

    // The next normal boot is B; marking good again writes nothing new.
    rig.boot(Slot::B, false);
    assert_eq!(b.mark_good().unwrap(), MarkGood::Recorded(Slot::B));
    rig.assert_fsck_clean();
}

#[test]
fn failed_health_check_returns_to_the_old_slot() {
    let rig = Rig::new();
    let b = rig.backend();
    b.set_primary(Slot::B).unwrap();
    rig.boot(Slot::B, true);
    // The updater's health check fails inside the trial: RAUC mark-bad on the booted slot.
    b.set_state(Slot::B, SlotState::Bad).unwrap();
    assert_eq!(rig.firmware_boots(false), Slot::A);
    assert_eq!(rig.firmware_boots(true), Slot::A, "a bad slot must not stay armed");
    assert_eq!(b.get_state(Slot::B).unwrap(), SlotState::Bad);
    rig.assert_fsck_clean();
}

#[test]
fn crashed_or_hung_trial_falls_back_and_cannot_be_committed_from_the_old_slot() {
    let rig = Rig::new();
    let b = rig.backend();
    b.set_primary(Slot::B).unwrap();
    // The trial kernel panicked / hung: watchdog reset, firmware has cleared the flag.
    rig.boot(rig.firmware_boots(false), false);
    assert_eq!(b.get_current().unwrap(), Slot::A);
    // The old slot's own health check must not promote the untested slot.
    assert_eq!(b.mark_good().unwrap(), MarkGood::Recorded(Slot::A));
    assert_eq!(rig.firmware_boots(false), Slot::A);
    // A normal (not trial) boot of B, e.g. a hand-edited file, cannot commit B either.
    rig.boot(Slot::B, false);
    b.set_state(Slot::B, SlotState::Good).unwrap();
    assert_eq!(rig.firmware_boots(false), Slot::A);
}

#[test]
fn recovery_switch_refuses_a_bad_slot_unless_forced() {
    let rig = Rig::new();
    let b = rig.backend();
    b.set_state(Slot::B, SlotState::Bad).unwrap();
    assert!(b.switch_to_other(false).is_err());
    assert_eq!(rig.firmware_boots(false), Slot::A);
    assert_eq!(b.switch_to_other(true).unwrap(), Slot::B);
    assert_eq!(rig.firmware_boots(false), Slot::B);
    assert_eq!(rig.firmware_boots(true), Slot::B);
}

#[test]
fn a_corrupt_autoboot_txt_is_refused_and_left_alone() {
    let rig = Rig::new();
    let vol = FatImage::new(&rig.image);
    vol.write_synced(AUTOBOOT_NAME, b"[all]\nboot_partition=7\n").unwrap();
    let b = rig.backend();
    let err = b.set_primary(Slot::B).unwrap_err().to_string();
    assert!(err.contains("not a MineBox boot slot"), "{err}");
    assert_eq!(vol.read(AUTOBOOT_NAME).unwrap().unwrap(), b"[all]\nboot_partition=7\n");
}

/// A Volume that loses power after `budget` durable steps: later steps never happen.
struct PowerCut<'a> {
    inner: &'a FatImage,
    budget: Cell<usize>,
}

impl PowerCut<'_> {
    fn step(&self) -> Result<(), VolumeError> {
        match self.budget.get() {
            0 => Err(VolumeError::Io { op: "power cut", path: "-".into(), source: std::io::ErrorKind::Other.into() }),
            n => {
                self.budget.set(n - 1);
                Ok(())
            }
        }
    }
}

impl Volume for PowerCut<'_> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, VolumeError> {
        self.inner.read(name)
    }
    fn write_synced(&self, name: &str, data: &[u8]) -> Result<(), VolumeError> {
        self.step()?;
        self.inner.write_synced(name, data)
    }
    fn rename_over(&self, from: &str, to: &str) -> Result<(), VolumeError> {
        self.step()?;
        self.inner.rename_over(from, to)
    }
    fn remove(&self, name: &str) -> Result<(), VolumeError> {
        self.step()?;
        self.inner.remove(name)
    }
}

#[test]
fn power_cut_at_every_step_of_the_switch_leaves_a_bootable_old_or_new_file() {
    let new_text = {
        let mut ab = Autoboot::factory();
        ab.trial = Slot::B;
        ab.render()
    };
    let mut saw_old = false;
    let mut saw_new = false;
    for budget in 0..=3 {
        let rig = Rig::new();
        let fat = FatImage::new(&rig.image);
        let cut = PowerCut { inner: &fat, budget: Cell::new(budget) };
        let res = volume::replace(&cut, AUTOBOOT_NAME, new_text.as_bytes());

        // After the cut: the filesystem is sound and the firmware reads a whole file.
        rig.assert_fsck_clean();
        let seen = rig.firmware_view();
        if seen == Autoboot::factory() {
            saw_old = true;
            assert!(res.is_err(), "replace reported success but the old file is live (budget {budget})");
        } else {
            assert_eq!(seen.render(), new_text, "budget {budget}");
            saw_new = true;
        }

        // Next boot: the backend recovers and the same switch completes.
        let b = rig.backend();
        b.set_primary(Slot::B).unwrap();
        assert_eq!(rig.firmware_boots(true), Slot::B);
        assert_eq!(rig.firmware_boots(false), Slot::A);
        assert!(fat.read(TEMP_NAME).unwrap().is_none(), "leftover temp file after recovery");
        rig.assert_fsck_clean();
    }
    assert!(saw_old && saw_new);
}

#[test]
fn a_leftover_equal_to_the_live_file_is_set_aside_not_deleted() {
    // After a cut between the directory-entry rewrite and the temp entry's removal, both
    // entries share clusters on the device; deleting the leftover would free the live
    // file's clusters. mtools cannot make the shared chain, but the rule is the same.
    let rig = Rig::new();
    let fat = FatImage::new(&rig.image);
    let live = fat.read(AUTOBOOT_NAME).unwrap().unwrap();
    fat.write_synced(TEMP_NAME, &live).unwrap();
    assert_eq!(volume::recover(&fat, AUTOBOOT_NAME).unwrap(), Leftover::SetAside("STALE000.OLD".into()));
    assert_eq!(fat.read("STALE000.OLD").unwrap().unwrap(), live);

    fat.write_synced(TEMP_NAME, b"half a fil").unwrap();
    assert_eq!(volume::recover(&fat, AUTOBOOT_NAME).unwrap(), Leftover::Removed);
    assert_eq!(fat.read(AUTOBOOT_NAME).unwrap().unwrap(), live);
}
