//! `minebox-tryboot`: RAUC's custom bootloader backend (`bootloader-custom-backend=` in
//! system.conf), plus the updater's `mark-good` and the recovery console's `status` and
//! `switch`. RAUC passes no options, so the locations come from the environment.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use minebox_tryboot::backend::{Backend, MarkGood};
use minebox_tryboot::bootloader::DEFAULT_DT_DIR;
use minebox_tryboot::volume::{FatImage, MountedDir, Volume};
use minebox_tryboot::{Slot, SlotState};

#[derive(Parser)]
#[command(version, about = "Pi 5 tryboot A/B for RAUC: edits autoboot.txt on the autoboot partition")]
struct Cli {
    /// Where the autoboot partition (partition 1) is mounted.
    #[arg(long, env = "MINEBOX_AUTOBOOT_DIR", default_value = "/autoboot")]
    autoboot_dir: PathBuf,
    /// Edit a FAT image file with mtools instead of the mounted partition.
    #[arg(long, env = "MINEBOX_AUTOBOOT_IMAGE", conflicts_with = "autoboot_dir")]
    autoboot_image: Option<PathBuf>,
    /// The firmware's boot facts (partition, tryboot cells).
    #[arg(long, env = "MINEBOX_BOOTLOADER_DT", default_value = DEFAULT_DT_DIR)]
    dt_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// RAUC: print the slot a normal boot starts.
    GetPrimary,
    /// RAUC: arm a slot for the next `reboot '0 tryboot'`.
    SetPrimary { slot: Slot },
    /// RAUC: print good or bad.
    GetState { slot: Slot },
    /// RAUC: mark a slot; good from inside its trial boot commits it.
    SetState { slot: Slot, state: SlotState },
    /// RAUC: print the slot running now.
    GetCurrent,
    /// Health check passed: commit this trial boot (no-op on a normal boot).
    MarkGood,
    /// Print whether this boot is a trial (exit 0) or a normal boot (exit 1).
    IsTrial,
    /// Human-readable state, for the console and the status page.
    Status,
    /// Recovery: make the other slot the one every boot starts.
    Switch {
        /// Switch even to a slot marked bad.
        #[arg(long)]
        force: bool,
    },
    /// Write a fresh autoboot.txt (slot A, nothing pending, B empty).
    Init,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minebox-tryboot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let volume: Box<dyn Volume> = match &cli.autoboot_image {
        Some(img) => Box::new(FatImage::new(img)),
        None => Box::new(MountedDir::new(&cli.autoboot_dir)),
    };
    let b = Backend::new(volume, &cli.dt_dir);
    match cli.cmd {
        Cmd::GetPrimary => println!("{}", b.get_primary()?),
        Cmd::SetPrimary { slot } => {
            b.set_primary(slot).with_context(|| format!("arming slot {slot} for its trial boot"))?;
        }
        Cmd::GetState { slot } => println!("{}", b.get_state(slot)?),
        Cmd::SetState { slot, state } => {
            b.set_state(slot, state).with_context(|| format!("marking slot {slot} {state}"))?;
        }
        Cmd::GetCurrent => println!("{}", b.get_current()?),
        Cmd::MarkGood => match b.mark_good()? {
            MarkGood::Committed(s) => {
                println!("slot {s} passed its trial and now boots by default")
            }
            MarkGood::Recorded(s) => println!("slot {s} marked good (it already boots by default)"),
        },
        Cmd::IsTrial => {
            let info = b.boot_info()?;
            println!("{}", if info.trial { "trial" } else { "normal" });
            if !info.trial {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Status => {
            let ab = b.load()?;
            let boot = b.boot_info().ok();
            match boot {
                Some(i) => println!("booted: slot {} ({})", i.slot, if i.trial { "trial boot" } else { "normal boot" }),
                None => println!("booted: unknown (no firmware boot information)"),
            }
            println!("default: slot {}", ab.primary);
            match ab.pending() {
                Some(s) => {
                    println!("pending: slot {s} waits for its trial boot (reboot '0 tryboot')")
                }
                None => println!("pending: none"),
            }
            println!("slot A: {}\nslot B: {}", ab.state_a, ab.state_b);
        }
        Cmd::Switch { force } => {
            let s = b.switch_to_other(force)?;
            println!("slot {s} now boots by default; reboot to start it");
        }
        Cmd::Init => b.write_factory()?,
    }
    Ok(ExitCode::SUCCESS)
}
