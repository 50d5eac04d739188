//! Install throughput of a multi-GB snapshot from a local nginx, side by side with the
//! naive pipeline `curl | zstd -d | tar -x` on the same data: wall time, CPU, peak memory.
//!
//! `cargo build --release -p minebox-snapshot-agent && cargo bench -p minebox-e2e --bench snapshot_install -- --size-gb 2`

#[path = "../tests/support/mod.rs"]
mod support;

use minebox_snapshot::minisign::SecretKey;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn measured(label: &str, cmd: &mut Command) -> (f64, f64, f64, u64) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{label} failed: {}", String::from_utf8_lossy(&out.stderr));
    // GNU time's last line: wall user sys maxrss(KiB)
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with("TIME ")).expect("GNU time output");
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap())
}

fn fill(root: &Path, gib: f64) {
    std::fs::create_dir_all(root.join("blocks")).unwrap();
    std::fs::create_dir_all(root.join("chainstate")).unwrap();
    let file = 128usize << 20;
    let files = ((gib * 1024.0) / 128.0).ceil() as usize;
    for i in 0..files {
        // Block files are mostly incompressible; chainstate compresses somewhat.
        let data = if i % 4 == 3 {
            let unit = support::noise(4096, i as u64 + 1);
            let mut v = Vec::with_capacity(file);
            while v.len() < file {
                v.extend_from_slice(&unit[..1024]);
                v.extend_from_slice(&support::noise(1024, (v.len() + i) as u64));
            }
            v.truncate(file);
            v
        } else {
            support::noise(file, i as u64 + 100)
        };
        let dir = if i % 4 == 3 { "chainstate" } else { "blocks" };
        std::fs::write(root.join(dir).join(format!("{i:05}.dat")), data).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gib: f64 = args
        .iter()
        .position(|a| a == "--size-gb")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let base =
        std::env::var("MINEBOX_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).unwrap();
    let (src, tree) = (dir.path().join("source"), dir.path().join("tree"));
    eprintln!("generating {gib} GiB of node-like data...");
    fill(&src, gib);
    let key = SecretKey::generate();
    std::fs::write(dir.path().join("key.pub"), key.public().to_file()).unwrap();
    let t = Instant::now();
    support::publish_tree(&src, &tree, &key, 1, 86_400);
    let publish_secs = t.elapsed().as_secs_f64();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -cf - . | zstd -3 -T0 -q -o {}/naive.tar.zst", src.display(), tree.display()))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let nginx = support::Nginx::serve(&tree, None);
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let time = |c: &mut Command| {
        c.env("TIME", "TIME %e %U %S %M");
    };

    let mut agent = Command::new("/usr/bin/time");
    time(&mut agent);
    agent
        .arg(minebox_test_support::workspace_bin("minebox-snapshot-agent"))
        .args(["install", "--url", &url, "--pubkey"])
        .arg(dir.path().join("key.pub"))
        .arg("--dest")
        .arg(dir.path().join("agent-dest"));
    let a = measured("agent", &mut agent);
    support::same_tree(&src, &dir.path().join("agent-dest"));

    std::fs::create_dir_all(dir.path().join("naive-dest")).unwrap();
    let mut naive = Command::new("/usr/bin/time");
    time(&mut naive);
    naive.args([
        "sh",
        "-c",
        &format!("curl -s {url}/naive.tar.zst | zstd -d -q | tar -x -C {}", dir.path().join("naive-dest").display()),
    ]);
    let n = measured("naive", &mut naive);

    let bytes = (gib * (1u64 << 30) as f64) as u64;
    let mib = |secs: f64| bytes as f64 / (1 << 20) as f64 / secs;
    println!(
        "snapshot of {:.2} GiB ({} files), published in {publish_secs:.1} s",
        gib,
        std::fs::read_dir(src.join("blocks")).unwrap().count()
            + std::fs::read_dir(src.join("chainstate")).unwrap().count()
    );
    println!("| pipeline | wall s | MiB/s | user CPU s | sys CPU s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| minebox-snapshot-agent (verify every chunk, staging, atomic swap) | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
        a.0,
        mib(a.0),
        a.1,
        a.2,
        a.3 as f64 / 1024.0
    );
    println!(
        "| curl \\| zstd -d \\| tar -x (no verification) | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
        n.0,
        mib(n.0),
        n.1,
        n.2,
        n.3 as f64 / 1024.0
    );
}
