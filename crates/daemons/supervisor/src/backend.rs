//! Two ways to run a node behind one interface:
//! - `process`: a child process of the supervisor (development, the demo, tests);
//! - `systemd`: the templated unit `minebox-node@<coin>.service` on the image, with the
//!   node's command in the environment file the unit reads and its resource limits set as
//!   unit properties.
//!
//! The supervisor, not the init system, decides about restarts (backoff, crash loops), so
//! both backends only start, stop, and report that a node exited.

use crate::launch::Launch;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

/// How a node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (_, Some(s)) => write!(f, "killed by signal {s}"),
            _ => write!(f, "ended"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("systemctl {args}: {message}")]
    Systemctl { args: String, message: String },
    #[error(
        "node data directory {path} is mode {mode:o} and not the supervisor's to change; the node's group needs rwx and others nothing: run chgrp minebox-node {path} && chmod 0770 {path}"
    )]
    NodeDir { path: String, mode: u32 },
}

/// Resource limits a node runs under (systemd unit properties on the image).
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub memory_max_mib: u64,
    pub cpu_weight: u32,
    pub io_weight: u32,
}

/// A running node: its exit arrives on `exited`; `stop` asks it to end.
pub struct Running {
    pub pid: Option<u32>,
    pub exited: watch::Receiver<Option<Exit>>,
    stop: Option<oneshot::Sender<Duration>>,
}

impl Running {
    /// Asks the node to end (SIGTERM, then SIGKILL after `grace`) and waits for it.
    pub async fn stop(mut self, grace: Duration) -> Option<Exit> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(grace);
        }
        let _ = self.exited.wait_for(|e| e.is_some()).await;
        let exit = self.exited.borrow().clone();
        exit
    }
}

/// Mode of a node's data directory: the node (group minebox-node) writes its chain in it,
/// the supervisor (its owner, or the snapshot agent after an install) writes the node's
/// config; others nothing (docs/supervisor.md, "Who owns what under /data").
pub const NODE_DIR_MODE: u32 = 0o770;
/// Mode of the files the supervisor writes for a node (config, environment): the node
/// reads them through its group; they hold an `rpcauth` hash, so nobody else does.
pub const NODE_FILE_MODE: u32 = 0o640;

/// Makes the node's data directory usable by the node's group. The service's UMask=0077
/// would leave a new directory 0700, which the node (another user) cannot enter; an
/// existing one left like that (or open to others) is put right when the supervisor owns it.
fn prepare_node_dir(dir: &Path) -> Result<(), BackendError> {
    let write = |e: std::io::Error| BackendError::Write { path: dir.display().to_string(), message: e.to_string() };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(write)?;
        // Without the setgid bit: RestrictSUIDSGID= forbids setting it, and the group the
        // directory took from /data/nodes (setgid, group minebox-node) stays.
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(NODE_DIR_MODE)).map_err(write);
    }
    let mode = std::fs::metadata(dir).map_err(write)?.permissions().mode() & 0o777;
    if mode & 0o070 == 0o070 && mode & 0o007 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(NODE_DIR_MODE))
        .map_err(|_| BackendError::NodeDir { path: dir.display().to_string(), mode })
}

/// Writes a file the node reads into its data directory, atomically. The new file is made
/// in the directory above (`/data/nodes`, setgid to minebox-node) and renamed in, so it has
/// the node's group whoever made the data directory (the supervisor's own group is
/// `minebox`, which the node is not in; the snapshot agent's directories are not setgid).
fn write_node_file(path: &Path, text: &str) -> Result<(), BackendError> {
    let err = |e: std::io::Error| BackendError::Write { path: path.display().to_string(), message: e.to_string() };
    let dir = path.parent().expect("a node file is in the node's directory");
    let staging = dir.parent().unwrap_or(dir);
    minebox_platform::fs::AtomicWrite::to(path)
        .mode(NODE_FILE_MODE)
        .staged_in(staging)
        .write(text.as_bytes())
        .map_err(err)
}

fn write_config(launch: &Launch) -> Result<(), BackendError> {
    prepare_node_dir(&launch.data_dir)?;
    if let Some((path, text)) = &launch.config {
        write_node_file(path, text)?;
    }
    Ok(())
}

/// Child processes.
#[derive(Default)]
pub struct ProcessBackend;

impl ProcessBackend {
    pub async fn start(&self, launch: &Launch) -> Result<Running, BackendError> {
        write_config(launch)?;
        let mut child = Command::new(&launch.program)
            .args(&launch.args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::Spawn { program: launch.program.clone(), message: e.to_string() })?;
        let pid = child.id();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel::<Duration>();
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let status = tokio::select! {
                s = child.wait() => s,
                grace = stop_rx => {
                    let grace = grace.unwrap_or(Duration::from_secs(30));
                    minebox_platform::process::terminate(&mut child, grace).await.map(|stopped| {
                        if stopped.killed {
                            tracing::warn!(pid, "node did not stop in time; killed it");
                        }
                        stopped.status
                    })
                }
            };
            let exit = match status {
                Ok(s) => Exit { code: s.code(), signal: s.signal() },
                Err(_) => Exit { code: None, signal: None },
            };
            let _ = exit_tx.send(Some(exit));
        });
        Ok(Running { pid, exited: exit_rx, stop: Some(stop_tx) })
    }
}

/// The templated unit on the image. The template (`buildroot-external/overlay/etc/systemd/system/
/// minebox-node@.service`) runs `${NODE_BIN} $NODE_ARGS` from `/data/nodes/<coin>/
/// minebox-node.env`, which the supervisor writes before each start; resource limits are
/// set as unit properties (`systemctl set-property --runtime`), so nothing is written
/// under /etc or /run and they vanish at reboot.
pub struct SystemdBackend {
    pub systemctl: Systemctl,
}

/// Runs `systemctl`; tests swap in a recorder (a stand-in: there is no systemd in this
/// sandbox, so the real calls are exercised in the image's system tests).
#[derive(Clone)]
pub enum Systemctl {
    Real,
    Recorder(Arc<Mutex<Vec<Vec<String>>>>),
}

impl Systemctl {
    async fn run(&self, args: &[&str]) -> Result<String, BackendError> {
        match self {
            Systemctl::Real => {
                let out = Command::new("systemctl")
                    .args(args)
                    .output()
                    .await
                    .map_err(|e| BackendError::Systemctl { args: args.join(" "), message: e.to_string() })?;
                if !out.status.success() {
                    return Err(BackendError::Systemctl {
                        args: args.join(" "),
                        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Systemctl::Recorder(log) => {
                log.lock().expect("recorder").push(args.iter().map(|s| s.to_string()).collect());
                Ok(if args.first() == Some(&"show") {
                    "ActiveState=active\nMainPID=4242\n".into()
                } else {
                    String::new()
                })
            }
        }
    }
}

pub fn unit_name(coin: &str) -> String {
    format!("minebox-node@{coin}.service")
}

/// The environment file the unit template reads: the node program and its arguments.
pub fn env_file(launch: &Launch) -> Result<String, BackendError> {
    if let Some(bad) = std::iter::once(&launch.program)
        .chain(&launch.args)
        .find(|a| a.contains(char::is_whitespace) || a.contains('"'))
    {
        return Err(BackendError::Write {
            path: launch.data_dir.join("minebox-node.env").display().to_string(),
            message: format!("argument {bad:?} has spaces or quotes, which the unit's $NODE_ARGS cannot carry"),
        });
    }
    Ok(format!(
        "# Written by minebox-supervisor before each start of {}.\nNODE_BIN={}\nNODE_ARGS={}\n",
        unit_name(&launch.coin),
        launch.program,
        launch.args.join(" ")
    ))
}

/// The unit properties that bound a node's resources.
pub fn properties(r: &Resources) -> Vec<String> {
    vec![
        format!("MemoryMax={}M", r.memory_max_mib),
        format!("CPUWeight={}", r.cpu_weight),
        format!("IOWeight={}", r.io_weight),
    ]
}

impl SystemdBackend {
    pub async fn start(&self, launch: &Launch, resources: &Resources) -> Result<Running, BackendError> {
        write_config(launch)?;
        write_node_file(&launch.data_dir.join("minebox-node.env"), &env_file(launch)?)?;
        let unit = unit_name(&launch.coin);
        let mut set = vec!["set-property".to_string(), "--runtime".to_string(), unit.clone()];
        set.extend(properties(resources));
        self.systemctl.run(&set.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        self.systemctl.run(&["start", &unit]).await?;
        let pid = self.main_pid(&unit).await;
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stop_tx, mut stop_rx) = oneshot::channel::<Duration>();
        let systemctl = self.systemctl.clone();
        tokio::spawn(async move {
            // systemd knows when the unit ends; ask it every few seconds (cheap: one D-Bus
            // round trip through systemctl), and stop it on request.
            loop {
                tokio::select! {
                    _ = &mut stop_rx => {
                        let _ = systemctl.run(&["stop", &unit]).await;
                        let _ = exit_tx.send(Some(Exit { code: Some(0), signal: None }));
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {
                        let state = systemctl
                            .run(&["show", "-p", "ActiveState,ExecMainCode,ExecMainStatus", &unit])
                            .await
                            .unwrap_or_default();
                        if let Some(exit) = ended(&state) {
                            let _ = exit_tx.send(Some(exit));
                            return;
                        }
                    }
                }
            }
        });
        Ok(Running { pid, exited: exit_rx, stop: Some(stop_tx) })
    }

    async fn main_pid(&self, unit: &str) -> Option<u32> {
        let out = self.systemctl.run(&["show", "-p", "MainPID", unit]).await.ok()?;
        out.lines().find_map(|l| l.strip_prefix("MainPID=")).and_then(|p| p.trim().parse().ok()).filter(|p| *p != 0)
    }
}

/// How the unit ended, from `systemctl show -p ActiveState,ExecMainCode,ExecMainStatus`;
/// None while it runs. ExecMainCode is the kernel's si_code: CLD_EXITED (1) with the exit
/// status, CLD_KILLED (2) or CLD_DUMPED (3) with the signal (a `kill -9` reads "killed by
/// signal 9", not "exit code 9").
pub fn ended(show: &str) -> Option<Exit> {
    let prop = |k: &str| show.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=').map(str::trim));
    if !matches!(prop("ActiveState"), Some("failed" | "inactive")) {
        return None;
    }
    let status = prop("ExecMainStatus").and_then(|c| c.parse().ok());
    Some(match prop("ExecMainCode") {
        Some("2" | "3") => Exit { code: None, signal: status },
        _ => Exit { code: status, signal: None },
    })
}

/// Either backend.
pub enum Backend {
    Process(ProcessBackend),
    Systemd(SystemdBackend),
}

impl Backend {
    pub async fn start(&self, launch: &Launch, resources: &Resources) -> Result<Running, BackendError> {
        match self {
            Backend::Process(b) => b.start(launch).await,
            Backend::Systemd(b) => b.start(launch, resources).await,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Process(_) => "process",
            Backend::Systemd(_) => "systemd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;

    fn launch(dir: &std::path::Path) -> Launch {
        Launch {
            coin: "btc".into(),
            program: "/usr/bin/bitcoind".into(),
            args: vec!["-datadir=/data/nodes/btc".into(), "-conf=/data/nodes/btc/minebox-node.conf".into()],
            config: Some((dir.join("btc/minebox-node.conf"), "server=1\n".into())),
            data_dir: dir.join("btc"),
            rpc_url: "http://127.0.0.1:8332/".into(),
            credentials: Credentials { user: "minebox".into(), password: "p".into(), path: dir.join("s") },
            zmq_hashblock: None,
            dbcache_mib: Some(450),
        }
    }

    #[test]
    fn the_unit_gets_the_command_and_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let text = env_file(&launch(dir.path())).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"NODE_BIN=/usr/bin/bitcoind"));
        assert!(lines.contains(&"NODE_ARGS=-datadir=/data/nodes/btc -conf=/data/nodes/btc/minebox-node.conf"));
        assert_eq!(
            properties(&Resources { memory_max_mib: 2560, cpu_weight: 50, io_weight: 50 }),
            vec!["MemoryMax=2560M", "CPUWeight=50", "IOWeight=50"]
        );
        let mut l = launch(dir.path());
        l.args.push("-datadir=/path with space".into());
        assert!(env_file(&l).unwrap_err().to_string().contains("spaces"));
    }

    #[tokio::test]
    async fn systemd_start_and_stop_go_through_systemctl() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let b = SystemdBackend { systemctl: Systemctl::Recorder(log.clone()) };
        let r = b
            .start(&launch(dir.path()), &Resources { memory_max_mib: 1024, cpu_weight: 100, io_weight: 100 })
            .await
            .unwrap();
        assert_eq!(r.pid, Some(4242));
        let env = std::fs::read_to_string(dir.path().join("btc/minebox-node.env")).unwrap();
        assert!(env.contains("NODE_BIN=/usr/bin/bitcoind"));
        assert!(dir.path().join("btc/minebox-node.conf").exists(), "node config written before start");
        r.stop(Duration::from_secs(1)).await;
        let calls: Vec<String> = log.lock().unwrap().iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            calls[0],
            "set-property --runtime minebox-node@btc.service MemoryMax=1024M CPUWeight=100 IOWeight=100"
        );
        assert_eq!(calls[1], "start minebox-node@btc.service");
        assert!(calls.contains(&"stop minebox-node@btc.service".to_string()), "{calls:?}");
    }

    #[tokio::test]
    async fn the_node_user_can_use_its_directory_and_files_and_nobody_else_can() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        // /data/nodes as tmpfiles.d makes it: setgid, the node's group. (As root, a group
        // that is not the test's own shows where the files' group comes from.)
        let made = std::fs::metadata(dir.path()).unwrap(); // made by the test: its euid and egid
        let node_gid = if made.uid() == 0 { 65534 } else { made.gid() };
        std::os::unix::fs::chown(dir.path(), None, Some(node_gid)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
        // The service's UMask=0077.
        let old_umask = minebox_platform::process::set_umask(0o077);
        let log = Arc::new(Mutex::new(Vec::new()));
        let b = SystemdBackend { systemctl: Systemctl::Recorder(log.clone()) };
        let limits = Resources { memory_max_mib: 640, cpu_weight: 50, io_weight: 50 };
        let r = b.start(&launch(dir.path()), &limits).await.unwrap();
        r.stop(Duration::from_secs(1)).await;
        let node_dir = dir.path().join("btc");
        assert_eq!(mode(&node_dir), 0o770, "the node (group minebox-node) writes its chain here");
        for f in ["minebox-node.conf", "minebox-node.env"] {
            let p = node_dir.join(f);
            assert_eq!(mode(&p), 0o640, "{f}: the node reads it through its group, others nothing");
            assert_eq!(std::fs::metadata(&p).unwrap().gid(), node_gid, "{f} must have the node's group");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        // A directory an older supervisor left 0700 is opened to the node's group.
        std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let r = b.start(&launch(dir.path()), &limits).await.unwrap();
        r.stop(Duration::from_secs(1)).await;
        minebox_platform::process::set_umask(old_umask);
        assert_eq!(mode(&node_dir), 0o770);
    }

    #[test]
    fn a_killed_node_is_told_from_one_that_exited() {
        assert_eq!(ended("ActiveState=active\nExecMainCode=0\nExecMainStatus=0\n"), None);
        assert_eq!(
            ended("ActiveState=failed\nExecMainCode=2\nExecMainStatus=9\n"),
            Some(Exit { code: None, signal: Some(9) })
        );
        assert_eq!(
            ended("ActiveState=inactive\nExecMainCode=1\nExecMainStatus=0\n"),
            Some(Exit { code: Some(0), signal: None })
        );
        assert_eq!(ended("ActiveState=failed\nExecMainCode=1\nExecMainStatus=1\n").unwrap().to_string(), "exit code 1");
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = launch(dir.path());
        l.program = "sh".into();
        l.args = vec!["-c".into(), "trap '' TERM; sleep 30".into()];
        l.config = None;
        let r = ProcessBackend.start(&l).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let exit = r.stop(Duration::from_millis(300)).await.unwrap();
        assert_eq!(exit.signal, Some(minebox_platform::process::Signal::SIGKILL as i32));
    }
}
