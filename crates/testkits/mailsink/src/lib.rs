//! A real SMTP server for tests (a dev-dependency only; nothing here ships).
//!
//! [`MailSink::start`] runs aiosmtpd (Debian's `python3-aiosmtpd`, installed by
//! scripts/setup.d/55-cloud.sh) on 127.0.0.1 on a free port with its stock `Mailbox` handler,
//! which stores every message it accepts in a Maildir; [`MailSink::wait_for`] reads them back.
//! Stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MailSink {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// Debian's Python (where `python3-aiosmtpd` installs) when present: a `python3` earlier on the
/// PATH (pyenv, a virtualenv) may not have the module.
fn python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

impl MailSink {
    pub fn start() -> MailSink {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = minebox_test_support::free_port();
        let maildir = dir.path().join("maildir");
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).expect("log file");
        let mut child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("python3 runs");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return MailSink { port, child, dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aiosmtpd exited ({status}) (is python3-aiosmtpd installed? scripts/setup): {}",
                    std::fs::read_to_string(dir.path().join("aiosmtpd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not listen on port {port}");
    }

    /// Stops the server: mail sent from now on is refused at connection.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The Maildir the messages land in (`new/` holds one file per message), for a test's
    /// helper in another language (the account page's browser test reads its links there).
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Every message received so far, raw (headers and body as sent), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir/new");
        let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = std::fs::read_dir(new)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                (modified, e.file_name().to_string_lossy().into_owned(), e.path())
            })
            .collect();
        files.sort();
        files.into_iter().filter_map(|(_, _, p)| std::fs::read_to_string(p).ok()).collect()
    }

    /// Waits (up to 30 s, to stop a hang) until `count` messages have arrived; returns them all.
    pub fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.messages();
            if got.len() >= count {
                return got;
            }
            assert!(Instant::now() < deadline, "{count} message(s) expected, {} arrived", got.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A raw SMTP conversation: the sink accepts it and the message comes back.
    #[test]
    fn a_message_sent_over_smtp_can_be_read_back() {
        let sink = MailSink::start();
        let stream = std::net::TcpStream::connect(("127.0.0.1", sink.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let mut line = String::new();
        let mut expect = |reader: &mut BufReader<_>, code: &str| loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "wanted {code}, got {line:?}");
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        };
        expect(&mut reader, "220");
        for (cmd, code) in [
            ("HELO t", "250"),
            ("MAIL FROM:<a@example.org>", "250"),
            ("RCPT TO:<b@example.org>", "250"),
            ("DATA", "354"),
        ] {
            write!(w, "{cmd}\r\n").unwrap();
            expect(&mut reader, code);
        }
        write!(w, "Subject: hi\r\n\r\nhello sink\r\n.\r\n").unwrap();
        expect(&mut reader, "250");
        let got = sink.wait_for(1);
        assert!(got[0].contains("hello sink"), "{got:?}");
    }
}
