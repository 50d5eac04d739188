//! `autoboot.txt`: which boot partition the firmware boots normally and on a trial.
//!
//! Slot states are kept in the same file as comment lines the firmware ignores, so one
//! atomic replacement changes everything RAUC knows about the slots at once.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// One A/B slot: a boot partition (FAT) and the root partition its cmdline names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// MBR partition number of the slot's boot partition (1 is the autoboot partition).
    pub fn boot_partition(self) -> u32 {
        match self {
            Slot::A => 2,
            Slot::B => 3,
        }
    }

    pub fn from_boot_partition(n: u32) -> Option<Slot> {
        match n {
            2 => Some(Slot::A),
            3 => Some(Slot::B),
            _ => None,
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// RAUC's `bootname` of the slot (system.conf and `rauc.slot=` on the cmdline).
    pub fn bootname(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.bootname())
    }
}

impl FromStr for Slot {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A" | "a" => Ok(Slot::A),
            "B" | "b" => Ok(Slot::B),
            other => Err(ParseError::UnknownSlot(other.to_string())),
        }
    }
}

/// RAUC's view of a slot: may it be booted?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Good,
    Bad,
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotState::Good => "good",
            SlotState::Bad => "bad",
        })
    }
}

impl FromStr for SlotState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "good" => Ok(SlotState::Good),
            "bad" => Ok(SlotState::Bad),
            other => Err(ParseError::UnknownState(other.to_string())),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error(
        "autoboot.txt has no boot_partition in its [all] section; restore it from the image (buildroot-external/board/rpi5/autoboot.txt)"
    )]
    NoPrimary,
    #[error("autoboot.txt boot_partition={0} is not a MineBox boot slot (2 = A, 3 = B)")]
    BadPartition(String),
    #[error("autoboot.txt lacks tryboot_a_b=1, so the firmware would not do A/B; restore it from the image")]
    NoTrybootAB,
    #[error("unknown slot {0:?}: MineBox slots are A and B")]
    UnknownSlot(String),
    #[error("unknown slot state {0:?}: expected good or bad")]
    UnknownState(String),
}

/// Everything `autoboot.txt` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoboot {
    /// Booted by a normal (re)boot or power-on.
    pub primary: Slot,
    /// Booted once after `reboot '0 tryboot'`. Equal to `primary` when no update is pending.
    pub trial: Slot,
    pub state_a: SlotState,
    pub state_b: SlotState,
}

const STATE_PREFIX: &str = "# minebox-slot-state";

impl Autoboot {
    /// A fresh image: slot A boots, nothing pending; slot B stays empty (bad) until the
    /// first update writes it, so the recovery console will not switch to nothing.
    pub fn factory() -> Autoboot {
        Autoboot { primary: Slot::A, trial: Slot::A, state_a: SlotState::Good, state_b: SlotState::Bad }
    }

    pub fn state(&self, slot: Slot) -> SlotState {
        match slot {
            Slot::A => self.state_a,
            Slot::B => self.state_b,
        }
    }

    pub fn set_state(&mut self, slot: Slot, state: SlotState) {
        match slot {
            Slot::A => self.state_a = state,
            Slot::B => self.state_b = state,
        }
    }

    /// The slot an update installed and that waits for its trial boot, if any.
    pub fn pending(&self) -> Option<Slot> {
        (self.trial != self.primary).then_some(self.trial)
    }

    /// Parses the file the firmware reads. Missing state comments mean "good": a file
    /// written by hand or by an older image stays usable.
    pub fn parse(text: &str) -> Result<Autoboot, ParseError> {
        let mut section = String::from("all");
        let (mut primary, mut trial, mut ab) = (None, None, false);
        let (mut state_a, mut state_b) = (SlotState::Good, SlotState::Good);
        for raw in text.lines() {
            let line = raw.trim();
            if let Some(rest) = line.strip_prefix(STATE_PREFIX) {
                for word in rest.split_whitespace() {
                    if let Some((slot, state)) = word.split_once('=') {
                        match slot.parse::<Slot>()? {
                            Slot::A => state_a = state.parse()?,
                            Slot::B => state_b = state.parse()?,
                        }
                    }
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_ascii_lowercase();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match (section.as_str(), key) {
                ("all", "tryboot_a_b") => ab = value == "1",
                ("all", "boot_partition") => primary = Some(partition(value)?),
                ("tryboot", "boot_partition") => trial = Some(partition(value)?),
                _ => {}
            }
        }
        if !ab {
            return Err(ParseError::NoTrybootAB);
        }
        let primary = primary.ok_or(ParseError::NoPrimary)?;
        Ok(Autoboot { primary, trial: trial.unwrap_or(primary), state_a, state_b })
    }

    /// The canonical file. Kept far below one 512-byte sector on purpose: the whole file
    /// is one sector of one cluster, written before the directory entry points at it.
    pub fn render(&self) -> String {
        format!(
            "# MineBox A/B boot: read by the Raspberry Pi 5 firmware, written only by minebox-tryboot.\n\
             [all]\n\
             tryboot_a_b=1\n\
             boot_partition={}\n\
             [tryboot]\n\
             boot_partition={}\n\
             {STATE_PREFIX} A={} B={}\n",
            self.primary.boot_partition(),
            self.trial.boot_partition(),
            self.state_a,
            self.state_b,
        )
    }
}

fn partition(value: &str) -> Result<Slot, ParseError> {
    value
        .parse::<u32>()
        .ok()
        .and_then(Slot::from_boot_partition)
        .ok_or_else(|| ParseError::BadPartition(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse_is_identity() {
        for primary in [Slot::A, Slot::B] {
            for trial in [Slot::A, Slot::B] {
                for (a, b) in [(SlotState::Good, SlotState::Bad), (SlotState::Bad, SlotState::Good)] {
                    let ab = Autoboot { primary, trial, state_a: a, state_b: b };
                    assert_eq!(Autoboot::parse(&ab.render()).unwrap(), ab);
                    assert!(ab.render().len() < 512);
                }
            }
        }
    }

    #[test]
    fn reads_the_raspberry_pi_documented_form() {
        let text = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n";
        let ab = Autoboot::parse(text).unwrap();
        assert_eq!((ab.primary, ab.trial), (Slot::A, Slot::B));
        assert_eq!(ab.pending(), Some(Slot::B));
        assert_eq!((ab.state_a, ab.state_b), (SlotState::Good, SlotState::Good));
    }

    #[test]
    fn refuses_files_the_firmware_would_not_ab_boot() {
        assert_eq!(Autoboot::parse("[all]\nboot_partition=2\n"), Err(ParseError::NoTrybootAB));
        assert_eq!(Autoboot::parse("[all]\ntryboot_a_b=1\n"), Err(ParseError::NoPrimary));
        assert_eq!(
            Autoboot::parse("[all]\ntryboot_a_b=1\nboot_partition=5\n"),
            Err(ParseError::BadPartition("5".into()))
        );
        assert!(Autoboot::parse("").is_err());
        assert!(Autoboot::parse("\u{0}\u{ff}garbage").is_err());
    }

    #[test]
    fn the_image_ships_the_factory_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../buildroot-external/board/rpi5/autoboot.txt");
        let text = std::fs::read_to_string(path).expect("buildroot-external/board/rpi5/autoboot.txt");
        assert_eq!(text, Autoboot::factory().render());
    }

    #[test]
    fn a_trial_section_without_partition_means_nothing_pending() {
        let ab = Autoboot::parse("[all]\ntryboot_a_b=1\nboot_partition=3\n").unwrap();
        assert_eq!(ab.pending(), None);
        assert_eq!(ab.trial, Slot::B);
    }
}
