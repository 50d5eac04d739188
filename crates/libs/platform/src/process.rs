//! Signals to processes and stopping children, the way systemd stops a unit.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

pub use nix::sys::signal::Signal;

fn pid(pid: u32) -> io::Result<nix::unistd::Pid> {
    // 0 and negative pids address process groups (kill(0, ...) is this process's own group):
    // never what a caller holding one process's id means.
    match i32::try_from(pid) {
        Ok(p) if p > 0 => Ok(nix::unistd::Pid::from_raw(p)),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a process id"))),
    }
}

/// Sends `sig` to the process `pid`.
pub fn send(pid_: u32, sig: Signal) -> io::Result<()> {
    nix::sys::signal::kill(pid(pid_)?, sig).map_err(io::Error::from)
}

/// Whether a process `pid` exists (a zombie not yet waited for counts). One of another user
/// exists too, though it may not be signalled.
pub fn exists(pid_: u32) -> bool {
    let Ok(p) = pid(pid_) else { return false };
    matches!(nix::sys::signal::kill(p, None), Ok(()) | Err(nix::errno::Errno::EPERM))
}

/// How a stopped child ended.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub status: ExitStatus,
    /// It did not end within the grace time after SIGTERM and was killed (SIGKILL).
    pub killed: bool,
}

/// Stops a child as systemd stops a unit: SIGTERM, and SIGKILL if it has not ended `grace`
/// later. Returns once it has ended and been reaped.
pub async fn terminate(child: &mut tokio::process::Child, grace: Duration) -> io::Result<Stopped> {
    if let Some(id) = child.id() {
        // It may have ended just now (then `wait` below reaps it): nothing to report.
        let _ = send(id, Signal::SIGTERM);
    }
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return Ok(Stopped { status: status?, killed: false });
    }
    let _ = child.start_kill();
    Ok(Stopped { status: child.wait().await?, killed: true })
}

/// Sets the process's file mode creation mask, returning the previous one.
pub fn set_umask(mask: u32) -> u32 {
    let mask = nix::sys::stat::Mode::from_bits_truncate(mask as _);
    nix::sys::stat::umask(mask).bits() as u32
}
