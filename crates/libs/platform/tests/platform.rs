//! The platform crate against the real kernel: files written while a writer is killed, a
//! filesystem that fills up, free space on a tmpfs of known size, children stopped by signal.

use minebox_platform::fs::{atomic_write, disk_space, free_space, AtomicWrite};
use minebox_platform::process::{self, Signal};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const WRITER_ENV: &str = "MINEBOX_PLATFORM_TEST_WRITER";

/// A tmpfs of `size` mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "minebox-platform-test"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root (the tests run as root, as CI does)");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

fn whole(bytes: &[u8]) -> Option<u8> {
    let first = *bytes.first()?;
    (bytes.len() == 4 * MIB && bytes.iter().all(|b| *b == first)).then_some(first)
}

/// The writer is not left writing when the test fails before killing it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The writer the next test kills: run as a child process of this test binary, it replaces
/// the file with 4 MiB of 'a', then of 'b', ... until killed (bounded, should nobody kill it).
#[test]
#[ignore = "run by a_writer_killed_mid_write_leaves_the_old_file_or_the_new_one"]
fn writer_child() {
    let Some(path) = std::env::var_os(WRITER_ENV) else { return };
    let (a, b) = (vec![b'a'; 4 * MIB], vec![b'b'; 4 * MIB]);
    for i in 0..1_000 {
        atomic_write(Path::new(&path), if i % 2 == 0 { &a } else { &b }).unwrap();
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_the_old_file_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for round in 0..5 {
        let mut child = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["writer_child", "--exact", "--ignored", "--nocapture"])
                .env(WRITER_ENV, &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Read while it writes: every read sees one whole version. Kill it once it has
        // replaced the file a few times (after both 'a' and 'b' were seen).
        let (mut seen_a, mut seen_b) = (0, 0);
        let give_up = Instant::now() + Duration::from_secs(120);
        while seen_a < 3 || seen_b < 3 {
            assert!(Instant::now() < give_up, "the writer never got going");
            match std::fs::read(&path) {
                Ok(bytes) => match whole(&bytes) {
                    Some(b'a') => seen_a += 1,
                    Some(b'b') => seen_b += 1,
                    _ => panic!("round {round}: a reader saw a torn file of {} bytes", bytes.len()),
                },
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "round {round}"),
            }
        }
        process::send(child.0.id(), Signal::SIGKILL).unwrap();
        let status = child.0.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "round {round}: the writer was killed");
        let bytes = std::fs::read(&path).unwrap();
        assert!(whole(&bytes).is_some(), "round {round}: killed mid-write left {} bytes", bytes.len());
    }
}

#[test]
fn a_write_that_fails_leaves_the_old_file_and_no_temporary_file() {
    let fs = Tmpfs::mount("1m");
    let path = fs.path().join("settings.toml");
    atomic_write(&path, b"old = true\n").unwrap();
    let err = atomic_write(&path, vec![b'x'; 2 * MIB]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old = true\n");
    let names: Vec<PathBuf> = std::fs::read_dir(fs.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(names, vec![path.clone()], "a failed write must not leave its temporary file filling the disk");
    // And the disk is usable again at once.
    atomic_write(&path, b"new = true\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new = true\n");
}

#[test]
fn the_mode_is_the_one_asked_for_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    let old = process::set_umask(0o077);
    let written = AtomicWrite::to(&path).mode(0o640).write(b"user:password");
    process::set_umask(old);
    written.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
}

#[test]
fn a_file_staged_in_another_directory_lands_at_its_path_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("btc");
    std::fs::create_dir(&inner).unwrap();
    let path = inner.join("bitcoin.conf");
    AtomicWrite::to(&path).staged_in(dir.path()).write(b"regtest=1\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"regtest=1\n");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only btc/ is left in the staging directory");
}

#[test]
fn free_space_is_what_the_filesystem_has_left() {
    let fs = Tmpfs::mount("8m");
    let space = disk_space(fs.path()).unwrap();
    assert_eq!(space.total_bytes, 8 * MIB as u64);
    assert_eq!(space.available_bytes, 8 * MIB as u64);
    atomic_write(&fs.path().join("one-mib"), vec![0u8; MIB]).unwrap();
    assert_eq!(free_space(fs.path()).unwrap(), 7 * MIB as u64);
    let missing = free_space(&fs.path().join("no-such-dir")).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed_after_the_grace_time() {
    // `exec`: sleep inherits the ignored SIGTERM and is the child itself (no grandchild left).
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Only once the trap is set is SIGTERM ignored.
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    tokio::io::AsyncReadExt::read_exact(&mut out, &mut buf).await.unwrap();
    let stopped = process::terminate(&mut child, Duration::from_millis(300)).await.unwrap();
    assert!(stopped.killed);
    assert_eq!(stopped.status.signal(), Some(Signal::SIGKILL as i32));
}

#[tokio::test]
async fn a_child_that_honours_sigterm_ends_by_it_and_is_gone() {
    let mut child = tokio::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id().unwrap();
    assert!(process::exists(pid));
    let stopped = process::terminate(&mut child, Duration::from_secs(60)).await.unwrap();
    assert!(!stopped.killed);
    assert_eq!(stopped.status.signal(), Some(Signal::SIGTERM as i32));
    assert!(!process::exists(pid), "reaped");
}

#[test]
fn a_process_group_is_never_signalled_by_mistake() {
    // kill(0, SIGTERM) would stop this test's whole process group.
    let err = process::send(0, Signal::SIGTERM).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!process::exists(0));
}
