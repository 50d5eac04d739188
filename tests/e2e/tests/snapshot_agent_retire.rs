//! The chain a snapshot replaced leaves the disk, as the box's real users would see it: the
//! agent (its own uid, the node's group, UMask 0077) swaps a `datadir` snapshot in, and the
//! node's unit (the node's uid) deletes the old chain before the node's next start. The old
//! chain's files are the node's (0700/0600, as Bitcoin Core makes them), so the agent alone
//! cannot delete them. Needs root, to be the three users (setpriv), as the tests run in CI.

mod support;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use support::*;

/// Stand-ins for the box's users (buildroot-external/overlay/usr/lib/sysusers.d/minebox.conf).
const NODE_GROUP: u32 = 64_201; // minebox-node
const NODE: u32 = 64_202; // minebox-node
const AGENT: u32 = 64_203; // minebox-snapshot, primary group minebox-node
const SUPERVISOR: u32 = 64_204; // minebox-supervisor

fn agent_bin() -> PathBuf {
    minebox_test_support::workspace_bin("minebox-snapshot-agent")
}

/// `minebox-snapshot-agent ARGS` as `uid` with the node's group only and UMask=0077, as the
/// units run it.
fn run_as(uid: u32, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid", &uid.to_string(), "--regid", &NODE_GROUP.to_string(), "--clear-groups", "--"]);
    cmd.arg(agent_bin()).args(args);
    // The child inherits the umask; each test has its own process under nextest.
    let old = minebox_platform::process::set_umask(0o077);
    let out = cmd.output().unwrap();
    minebox_platform::process::set_umask(old);
    out
}

fn set(path: &Path, uid: u32, mode: u32) {
    chown(path, Some(uid), Some(NODE_GROUP)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The node writes its chain in `datadir` as Bitcoin Core does: its own files, 0700/0600.
fn node_writes_chain(datadir: &Path, sub: &str, bytes: usize, seed: u64) -> PathBuf {
    let dir = datadir.join(sub).join("blocks");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("blk00000.dat");
    std::fs::write(&file, noise(bytes, seed)).unwrap();
    set(&datadir.join(sub), NODE, 0o700);
    set(&dir, NODE, 0o700);
    set(&file, NODE, 0o600);
    file
}

/// Bytes of files under `nodes` outside the node's data directory `keep`: what a replaced
/// chain still holds on the disk.
fn bytes_outside(nodes: &Path, keep: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![nodes.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if p == keep {
                continue;
            }
            if m.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "installed.json" {
                total += m.len();
            }
        }
    }
    total
}

/// Every chunk file of a published tree.
fn chunk_files(tree: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(tree.join("chunks")).unwrap().flatten() {
        out.extend(std::fs::read_dir(sub.path()).unwrap().flatten().map(|e| e.path()));
    }
    out
}

#[tokio::test]
async fn the_replaced_chain_is_deleted_by_the_node_user_before_the_node_starts_and_a_failed_install_keeps_it() {
    let euid = std::process::Command::new("id").arg("-u").output().unwrap().stdout;
    assert_eq!(
        String::from_utf8_lossy(&euid).trim(),
        "0",
        "this test becomes the box's users with setpriv: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = minebox_snapshot::minisign::SecretKey::generate();
    let source = dir.path().join("source");
    make_datadir(&source, 2, 7);
    let tree = dir.path().join("tree");
    publish_tree(&source, &tree, &key, 1, 86_400);
    let nginx = Nginx::serve(&tree, None);
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let pubkey = dir.path().join("snapshot-test.pub");
    std::fs::write(&pubkey, key.public().to_file()).unwrap();
    std::fs::set_permissions(&pubkey, std::fs::Permissions::from_mode(0o644)).unwrap();

    // /data/nodes: 2770 root:minebox-node; the supervisor made the node's directory 0770.
    let nodes = dir.path().join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    chown(&nodes, Some(0), Some(NODE_GROUP)).unwrap();
    std::fs::set_permissions(&nodes, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let dest = nodes.join("bch");
    std::fs::create_dir(&dest).unwrap();
    set(&dest, SUPERVISOR, 0o770);
    std::fs::write(dest.join("minebox-node.conf"), "regtest=1\n").unwrap();
    set(&dest.join("minebox-node.conf"), SUPERVISOR, 0o640);
    let old_chain = 3 << 20;
    let old_file = node_writes_chain(&dest, "regtest", old_chain, 99);
    let (dest_s, nodes_s) = (dest.to_str().unwrap(), nodes.to_str().unwrap());
    let install = |what: &str| {
        let out = run_as(AGENT, &["install", "--url", &url, "--dest", dest_s, "--pubkey", pubkey.to_str().unwrap()]);
        println!("{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        out.status.success()
    };
    let node_starts = || {
        // What minebox-node@.service runs before every start, as the node's user.
        let out = run_as(NODE, &["remove-retired", "--dest", dest_s]);
        println!("remove-retired: {}", String::from_utf8_lossy(&out.stderr));
        out.status.success()
    };

    assert!(install("install v1"), "the agent installs the snapshot");
    same_tree(&source, &dest);
    assert!(!old_file.exists());
    let after_swap = bytes_outside(&nodes, &dest);
    assert!(after_swap >= old_chain as u64, "the agent may not delete the node's files: {after_swap} bytes left");
    let ran = node_starts();
    let left = bytes_outside(&nodes, &dest);
    println!("the replaced chain's bytes left on disk after the node's start: {left} (of {old_chain})");
    assert!(ran, "remove-retired failed as the node's user");
    assert_eq!(left, 0, "the replaced chain is still on disk under {nodes_s}");
    same_tree(&source, &dest);

    // The node runs on the snapshot and writes its own files; a newer snapshot replaces
    // them too (an older agent failed here: it could not clear the previous swap's leftovers).
    let chain2 = node_writes_chain(&dest, "regtest", 1 << 20, 5);
    std::fs::write(source.join("chainstate/000002.ldb"), noise(64 << 10, 3)).unwrap();
    publish_tree(&source, &tree, &key, 2, 86_400);
    assert!(install("install v2"), "a second snapshot installs over the first");
    same_tree(&source, &dest);
    assert!(!chain2.exists());
    assert!(node_starts());
    assert_eq!(bytes_outside(&nodes, &dest), 0, "the second replaced chain is still on disk");

    // A failed install (a chunk missing on the server) replaces nothing: the node's chain
    // stays, and the node's start deletes nothing of it.
    let chain3 = node_writes_chain(&dest, "regtest", 1 << 20, 6);
    std::fs::write(source.join("chainstate/000003.ldb"), noise(600 << 10, 4)).unwrap();
    let before = chunk_files(&tree);
    publish_tree(&source, &tree, &key, 3, 86_400);
    let added: Vec<PathBuf> = chunk_files(&tree).into_iter().filter(|c| !before.contains(c)).collect();
    assert!(!added.is_empty());
    for c in added {
        std::fs::remove_file(c).unwrap();
    }
    assert!(!install("install v3, a chunk missing"), "an install with a missing chunk must fail");
    assert!(node_starts());
    assert_eq!(std::fs::read(&chain3).unwrap(), noise(1 << 20, 6), "the running chain was touched");
    assert!(dest.join("blocks/blk00000.dat").exists(), "the installed v2 data was deleted");
}
