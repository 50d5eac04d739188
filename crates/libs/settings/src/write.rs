//! Writing the user's settings file (the status page does) so a power cut never leaves half.

use std::path::Path;

/// The settings file's mode: every MineBox service reads it through the group (minebox);
/// nobody else may (payout addresses, webhook URLs).
pub const SETTINGS_MODE: u32 = 0o640;

/// Replaces the user's settings file atomically: a power cut leaves the old file or the
/// new one, never half of each (write a temporary file, fsync, rename, fsync the directory).
///
/// `mode` is set explicitly, whatever the writer's umask: the settings file is
/// [`SETTINGS_MODE`], secrets 0o600.
pub fn write_atomically(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("settings")));
    {
        let mut f = std::fs::File::create(&tmp)?;
        // fchmod is not masked by the umask (0077 for the status page: a settings file only
        // its writer could read made the stratum server crash-loop, found on the twin).
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
