//! A node's data directory replaced by a snapshot, and how it leaves the disk.
//!
//! The old chain's files belong to the node's user (Bitcoin Core creates them with its own
//! `umask(077)`: directories 0700, files 0600), and the agent runs as another user
//! (minebox-snapshot), so the agent cannot delete them; left alone they stay on disk (on
//! mainnet, hundreds of GB). So the swap renames the old directory, whole, to
//! `<nodes>/.<coin>.retired` ([`retired_dir`]): a rename in `<nodes>` (2770
//! root:minebox-node) needs no right on the directory's contents. The node's unit
//! (`minebox-node@.service`) runs [`remove_retired`] as the node's own user before every
//! start (`minebox-snapshot-agent remove-retired --dest /data/nodes/%i`), which owns those
//! files. It is our own code rather than `rm -rf --one-file-system` because the Pi's
//! BusyBox `rm` has no `--one-file-system`, and because it can delete only the retired
//! directory of the data directory it is given, never the data directory itself.
//!
//! Only [`crate::install`]'s swap retires anything, and only once the verified staging area
//! is complete: a failed or tampered install never reaches it, so the running chain stays.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the data directory `dest` goes when a snapshot replaces it: beside it, so the
/// move is a rename in the same directory (`/data/nodes/btc` -> `/data/nodes/.btc.retired`).
pub fn retired_dir(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    dest.with_file_name(format!(".{name}.retired"))
}

/// Moves `old` (a replaced data directory) to `dest`'s retired place. When an earlier
/// retired chain is still there (the node has not started since), `old` goes inside it,
/// named `tag`, and both leave at the node's next start.
pub fn retire(old: &Path, dest: &Path, tag: &str) -> std::io::Result<()> {
    let retired = retired_dir(dest);
    match std::fs::symlink_metadata(&retired) {
        // Not ours to follow: a link or a file there is removed, never written through.
        Ok(m) if !m.is_dir() => std::fs::remove_file(&retired)?,
        // Emptied by the node's unit, which cannot remove the directory itself (in its
        // sandbox it is a mount point); the agent can.
        Ok(_) => {
            let _ = std::fs::remove_dir(&retired);
        }
        Err(_) => {}
    }
    match std::fs::rename(old, &retired) {
        Ok(()) => Ok(()),
        Err(_) if std::fs::symlink_metadata(&retired).is_ok_and(|m| m.is_dir()) => {
            let stamp =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            std::fs::rename(old, retired.join(format!("{tag}-{stamp}")))
        }
        Err(e) => Err(e),
    }
}

/// What [`remove_retired`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Bytes of files deleted.
    pub bytes: u64,
    pub files: u64,
    /// Entries that could not be deleted (no right to, another filesystem, too deep); the
    /// first reason is in `first_error`.
    pub left: u64,
    pub first_error: Option<String>,
}

/// A data directory is a few levels deep; anything deeper was not made by a node.
const MAX_DEPTH: u32 = 32;

/// Deletes `dest`'s retired directory, as far as the caller may: never following a
/// symbolic link, never leaving the retired directory's filesystem. Run by the node's unit
/// as the node's user; the agent also runs it after a swap, for whatever it may delete itself.
pub fn remove_retired(dest: &Path) -> Removed {
    let top = retired_dir(dest);
    let mut out = Removed::default();
    let meta = match std::fs::symlink_metadata(&top) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return out,
        Err(e) => {
            note(&mut out, &top, e.to_string());
            return out;
        }
    };
    if !meta.is_dir() {
        match std::fs::remove_file(&top) {
            Ok(()) => out.files += 1,
            Err(e) => note(&mut out, &top, e.to_string()),
        }
        return out;
    }
    remove_below(&top, meta.dev(), 0, &mut out);
    match std::fs::remove_dir(&top) {
        // EBUSY: in the node's sandbox the directory is a mount point (ReadWritePaths); it
        // stays, empty, and the agent removes it at the next swap.
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {}
        Err(e) => note(&mut out, &top, e.to_string()),
    }
    out
}

fn note(out: &mut Removed, path: &Path, why: String) {
    out.left += 1;
    if out.first_error.is_none() {
        out.first_error = Some(format!("{}: {why}", path.display()));
    }
}

fn remove_below(dir: &Path, dev: u64, depth: u32, out: &mut Removed) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return note(out, dir, e.to_string()),
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                note(out, &path, e.to_string());
                continue;
            }
        };
        if meta.dev() != dev {
            note(out, &path, "on another filesystem: left alone".into());
            continue;
        }
        if meta.is_dir() {
            if depth >= MAX_DEPTH {
                note(out, &path, "nested too deep: left alone".into());
                continue;
            }
            remove_below(&path, dev, depth + 1, out);
            if let Err(e) = std::fs::remove_dir(&path) {
                note(out, &path, e.to_string());
            }
        } else {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    out.files += 1;
                    out.bytes += meta.len();
                }
                Err(e) => note(out, &path, e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retired_place_is_a_sibling_the_node_unit_names() {
        assert_eq!(retired_dir(Path::new("/data/nodes/btc")), Path::new("/data/nodes/.btc.retired"));
        // The unit template removes exactly this path for minebox-node@btc and may write
        // there (ReadWritePaths); both must name what the agent uses.
        let unit = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../buildroot-external/overlay/etc/systemd/system/minebox-node@.service"
        ))
        .expect("the node unit template");
        let unit = unit.replace("%i", "btc");
        assert!(
            unit.lines()
                .any(|l| l.trim()
                    == "ExecStartPre=-/usr/bin/minebox-snapshot-agent remove-retired --dest /data/nodes/btc"),
            "the node unit must remove the retired chain before each start, ignoring failure"
        );
        let rw = format!("-{}", retired_dir(Path::new("/data/nodes/btc")).display());
        assert!(
            unit.lines()
                .filter_map(|l| l.strip_prefix("ReadWritePaths="))
                .any(|l| l.split_whitespace().any(|p| p == rw)),
            "the node unit must be allowed to write {rw}"
        );
    }

    #[test]
    fn never_follows_a_link_out_of_the_retired_place() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("btc");
        std::fs::create_dir_all(live.join("blocks")).unwrap();
        std::fs::write(live.join("blocks/blk00000.dat"), b"the running chain").unwrap();
        // The retired place is a link to the live directory: only the link goes.
        std::os::unix::fs::symlink(&live, retired_dir(&live)).unwrap();
        remove_retired(&live);
        assert!(std::fs::symlink_metadata(retired_dir(&live)).is_err());
        assert!(live.join("blocks/blk00000.dat").exists(), "the live chain was deleted through a link");
        // A link inside the retired tree: the link goes, not its target.
        std::fs::create_dir(retired_dir(&live)).unwrap();
        std::os::unix::fs::symlink(live.join("blocks"), retired_dir(&live).join("blocks")).unwrap();
        let r = remove_retired(&live);
        assert!(live.join("blocks/blk00000.dat").exists());
        assert!(!retired_dir(&live).exists(), "{r:?}");
    }

    #[test]
    fn a_second_retired_chain_waits_inside_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("btc");
        for (n, tag) in [(1, "v1"), (2, "v2")] {
            std::fs::create_dir_all(dest.join("blocks")).unwrap();
            std::fs::write(dest.join("blocks/blk.dat"), vec![n as u8; 1000 * n]).unwrap();
            retire(&dest, &dest, tag).unwrap();
            assert!(!dest.exists());
        }
        let r = remove_retired(&dest);
        assert_eq!((r.files, r.bytes, r.left), (2, 3000, 0), "{r:?}");
        assert!(!retired_dir(&dest).exists());
    }
}
