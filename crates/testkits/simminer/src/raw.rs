//! A raw Stratum V1 line client: it says exactly what a test wants, hostile or not, and reads
//! the server's answers as JSON. The simulated Bitaxe ([`crate::miner`]) speaks the protocol
//! properly; this one is for tests that must send what no miner would.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One connection to a stratum server, line by line.
pub struct Raw {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        Raw { reader: BufReader::new(r), writer: w }
    }

    pub async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// The next line as JSON, or None when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(_)) => {
                Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("server sent non-JSON {line:?}: {e}")))
            }
            Err(_) => panic!("server said nothing for 20 s"),
        }
    }

    /// Reads until a reply with this id (skipping notifications).
    pub async fn reply(&mut self, id: u64) -> Value {
        loop {
            let v = self.recv().await.expect("connection closed before the reply");
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Reads until the server closes the connection; returns what it said on the way.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut said = Vec::new();
        while let Some(v) = self.recv().await {
            said.push(v);
        }
        said
    }

    /// Subscribes and authorizes; returns the first mining.notify.
    pub async fn handshake(&mut self, user: &str) -> Value {
        self.send(r#"{"id":1,"method":"mining.subscribe","params":["test/1.0"]}"#).await;
        assert!(self.reply(1).await["error"].is_null());
        self.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{user}","x"]}}"#)).await;
        let auth = self.reply(2).await;
        assert_eq!(auth["result"], true, "{auth}");
        self.notify().await
    }

    pub async fn notify(&mut self) -> Value {
        loop {
            let v = self.recv().await.expect("closed while waiting for a job");
            if v["method"] == "mining.notify" {
                return v;
            }
        }
    }
}
