//! A throwaway PostgreSQL cluster for tests (a dev-dependency only; nothing here ships).
//!
//! [`Postgres::start`] runs Debian's `initdb` and `pg_ctl` (scripts/setup.d/55-cloud.sh installs
//! them) on a fresh directory, listening on 127.0.0.1 on a free port and on no Unix socket, and
//! stops the server when dropped. The server refuses to run as root; when the tests run as root
//! (as in CI), the kit runs it as the `postgres` user Debian's package creates, and hands it the
//! directory.
//!
//! Authentication is `trust` on the loopback address: any role that exists can connect, which
//! is what a test needs to log in as the service's own roles.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use minebox_test_support::free_port;

/// The cluster's superuser (initdb's `-U`).
pub const SUPERUSER: &str = "postgres";

/// A running PostgreSQL server in a temporary directory, stopped on drop.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<String>,
    dir: tempfile::TempDir,
}

/// The directory of Debian's server programs: `MINEBOX_PG_BIN` if set, else the newest
/// `/usr/lib/postgresql/<version>/bin` with an `initdb` in it.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MINEBOX_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL's server programs are not installed (no /usr/lib/postgresql/<version>/bin/initdb): \
         run scripts/setup, or set MINEBOX_PG_BIN",
    )
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The directory's owner is whoever we run as: root means the server must run as another user.
        let run_as = (std::fs::metadata(dir.path()).expect("stat").uid() == 0).then(|| SUPERUSER.to_string());
        if let Some(user) = &run_as {
            let ok = Command::new("chown").arg(format!("{user}:")).arg(dir.path()).status().map(|s| s.success());
            assert!(
                matches!(ok, Ok(true)),
                "could not hand {} to the `{user}` user (Debian's postgresql package creates it)",
                dir.path().display()
            );
        }
        let port = free_port();
        let pg = Postgres { port, bin, run_as, dir };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // Durability is not what a test checks: no fsync makes start and every commit quick.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        );
        let log = pg.dir.path().join("server.log");
        let out = pg.command(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "60", "start"],
        );
        if !out.status.success() {
            panic!(
                "pg_ctl start failed: {}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return pg;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL did not listen on port {port}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A libpq-style connection string (tokio-postgres reads it) for `user` on `dbname`.
    pub fn url(&self, user: &str, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname={dbname}", self.port)
    }

    /// A fresh, empty database owned by the superuser; returns its name.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        name.to_string()
    }

    /// Runs `sql` with psql as the superuser on `dbname`; returns its unaligned output
    /// (`|`-separated columns, no headers). Panics with psql's message on an error.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        let out = self.psql_as(SUPERUSER, dbname, sql);
        match out {
            Ok(text) => text,
            Err(e) => panic!("psql failed on {sql:?}: {e}"),
        }
    }

    /// Runs `sql` with psql as `user`; the error text if PostgreSQL refused it.
    pub fn psql_as(&self, user: &str, dbname: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", user, "-d", dbname, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// The directory the test owns beside the cluster (for dumps and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server now (fast shutdown: open connections are cut), as an outage would; the
    /// directory stays until drop. For tests of what a client does when the database is gone.
    pub fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    /// Freezes the server and its connections' processes (SIGSTOP) without closing a socket: a
    /// database that stops answering, as on a network partition or a stuck disk. [`thaw`] it
    /// before the end of the test (a frozen server cannot be stopped on drop).
    ///
    /// [`thaw`]: Postgres::thaw
    pub fn freeze(&self) {
        self.signal_all("STOP");
    }

    /// Undoes [`Postgres::freeze`].
    pub fn thaw(&self) {
        self.signal_all("CONT");
    }

    /// Sends `signal` to the postmaster (first line of postmaster.pid) and its children.
    fn signal_all(&self, signal: &str) {
        let pidfile = std::fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        let postmaster = pidfile.lines().next().expect("a pid").trim().to_string();
        let children = std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children"))
            .expect("the postmaster's children (/proc, Linux)");
        let mut pids: Vec<&str> = vec![&postmaster];
        pids.extend(children.split_whitespace());
        let ok = Command::new("kill").arg(format!("-{signal}")).args(&pids).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill -{signal} {pids:?} failed");
    }

    fn command(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{} could not run: {e}", path.display()))
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program, args);
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: the cluster is thrown away, nothing needs a clean checkpoint.
        let data = self.data();
        let _ = self.command("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_answers_and_stops_on_drop() {
        let pg = Postgres::start();
        let port = pg.port;
        pg.create_database("t");
        assert_eq!(pg.psql("t", "SELECT 40 + 2"), "42");
        assert!(pg.psql_as("nobody_here", "t", "SELECT 1").is_err(), "an unknown role is refused");
        drop(pg);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server stopped on drop");
    }
}
