//! The release-or-test `minebox-stratum` binary as a child process against a real Bitcoin
//! Core regtest node: what a crash test must kill, and what log-volume tests must read.

use minebox_regtest::Core;
use minebox_test_support::free_port;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    pub child: Child,
    pub stratum: SocketAddr,
    pub api: SocketAddr,
    pub log: PathBuf,
}

/// The binary Cargo built for these tests (debug or release, whichever profile runs them).
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_minebox-stratum")
}

/// A command line for the binary in flags mode against `node`, writing `db`.
pub fn command(node: &Core, db: &Path, stratum: SocketAddr, api: SocketAddr, log: &Path) -> Command {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(binary());
    cmd.env("MINEBOX_NODE_PASSWORD", node.rpc_password())
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .arg("--coin=btc")
        .arg("--network=regtest")
        .arg(format!("--listen={stratum}"))
        .arg(format!("--api={api}"))
        .arg(format!("--node-url={}", node.rpc_url()))
        .arg(format!("--node-user={}", node.rpc_user()))
        .arg(format!("--zmq-hashblock={}", node.zmq_endpoint()))
        .arg(format!("--database={}", db.display()))
        .arg("--block-poll-ms=200")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    cmd
}

impl ServerProcess {
    /// Starts the server and waits until its stratum port accepts connections.
    pub async fn start(node: &Core, db: &Path, log: &Path, extra: &[&str]) -> ServerProcess {
        let stratum: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = command(node, db, stratum, api, log);
        if !extra.iter().any(|a| a.contains("difficulty")) {
            cmd.args(["--start-difficulty=0.0001", "--min-difficulty=0.00001"]);
        }
        cmd.args(extra);
        let mut child = cmd.spawn().expect("the stratum binary starts");
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(api).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the stratum server exited with {status}; its log: {}", std::fs::read_to_string(log).unwrap());
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the stratum server did not start within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ServerProcess { child, stratum, api, log: log.to_path_buf() }
    }

    /// SIGKILL, as a crash or power cut would end it.
    pub async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

/// Grinds a nonce whose header meets the job's network target (about every other nonce on
/// regtest): the share finds a block. Returns the nonce and the block hash.
pub fn grind_block(job: &minebox_simminer::work::Job, en1: &[u8], en2: &[u8]) -> (u32, bitcoin::BlockHash) {
    use bitcoin::hashes::Hash;
    let root = job.merkle_root(en1, en2);
    let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(job.bits)).to_le_bytes();
    let (nonce, hash) = (0u32..)
        .map(|n| (n, minebox_simminer::work::hash_header(&job.header(&root, job.version, job.ntime, n))))
        .find(|(_, h)| minebox_simminer::work::meets(h, &target))
        .expect("regtest blocks are easy");
    (nonce, bitcoin::BlockHash::from_byte_array(hash))
}
