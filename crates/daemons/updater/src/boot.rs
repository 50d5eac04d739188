//! What this boot is: the running image version (os-release), and whether it is the
//! trial boot of a fresh update (asked of `minebox-tryboot is-trial`, which reads the
//! firmware's tryboot flag).

use std::path::Path;
use tokio::process::Command;

/// The running image's version: `IMAGE_VERSION`, else `VERSION_ID`, from os-release.
pub fn running_version(os_release: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(os_release)?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    field("IMAGE_VERSION").or_else(|| field("VERSION_ID")).filter(|v| !v.is_empty()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: neither IMAGE_VERSION nor VERSION_ID", os_release.display()),
        )
    })
}

/// True on the one trial boot of a freshly installed slot.
pub async fn is_trial(tryboot: &Path) -> std::io::Result<bool> {
    let out = Command::new(tryboot).arg("is-trial").kill_on_drop(true).output().await?;
    let said = String::from_utf8_lossy(&out.stdout);
    match (out.status.code(), said.trim()) {
        (Some(0), "trial") => Ok(true),
        (Some(1), "normal") => Ok(false),
        _ => Err(std::io::Error::other(format!(
            "{} is-trial: {}{}",
            tryboot.display(),
            said.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_version_wins_over_version_id() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("os-release");
        std::fs::write(&f, "NAME=MineBox\nVERSION_ID=2026.11\n").unwrap();
        assert_eq!(running_version(&f).unwrap(), "2026.11");
        std::fs::write(&f, "VERSION_ID=2026.11\nIMAGE_VERSION=\"2026.11.2\"\n").unwrap();
        assert_eq!(running_version(&f).unwrap(), "2026.11.2");
        std::fs::write(&f, "NAME=MineBox\n").unwrap();
        assert!(running_version(&f).is_err());
    }
}
