//! A minimal ZMTP 3.1 SUB client (RFC 37) over one TCP connection: what the node's
//! `hashblock` publisher needs and no more (NULL security, one subscription, PING/PONG).
//!
//! Why not the `zeromq` crate (0.4), used before: a dropped `SubSocket` never closed its
//! TCP connection. Its fair queue parks a waker in the connection's own I/O registration,
//! and that waker holds the queue that holds the connection, a reference cycle that only
//! incoming traffic breaks; a quiet publisher (regtest, testnet, a syncing node) therefore
//! cost one descriptor per renewal, about 2,900 a day. The crate also has no disconnect,
//! never reports a publisher that went away (so the subscription had to be renewed on
//! silence), and panics on commands it does not implement. Owning the `TcpStream` here
//! means dropping closes it, and end-of-stream says the publisher is gone.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest frame kept; bigger ones (not `hashblock`'s 9, 32 and 4 bytes) are read and
/// dropped without being buffered, so a publisher cannot make the subscriber hold memory.
const MAX_FRAME: u64 = 1024;
/// Frames kept per message (`hashblock` has three); more are dropped.
const MAX_PARTS: usize = 8;

const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;

#[derive(Debug, thiserror::Error)]
pub enum ZmtpError {
    #[error("{0} is not a tcp://host:port endpoint")]
    Endpoint(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the publisher closed the connection")]
    Closed,
    #[error("the publisher did not finish the ZMTP handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("the publisher stopped in the middle of a frame for {0:?}")]
    Stalled(Duration),
    #[error("not a ZMTP 3 publisher: {0}")]
    Protocol(String),
}

/// What arrived on the subscription.
#[derive(Debug)]
pub enum Incoming {
    /// A published message, one entry per frame (at most [`MAX_PARTS`]; `None` for a
    /// frame too big to keep).
    Message(Vec<Option<Vec<u8>>>),
    /// The publisher spoke (a PONG or another command): it is alive.
    Alive,
    /// Nothing at all for the given time.
    Silent,
}

pub struct Subscriber {
    conn: BufReader<TcpStream>,
    /// The publisher speaks ZMTP 3.1 or later, which has PING/PONG (libzmq 4.2 and later).
    can_ping: bool,
}

fn host_port(endpoint: &str) -> Result<(&str, u16), ZmtpError> {
    let bad = || ZmtpError::Endpoint(endpoint.to_string());
    let rest = endpoint.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    frame(FLAG_COMMAND, &body)
}

fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + body.len());
    if body.len() < 256 {
        out.extend_from_slice(&[flags, body.len() as u8]);
    } else {
        out.push(flags | FLAG_LONG);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

impl Subscriber {
    /// Connects to `endpoint` (`tcp://host:port`), completes the handshake within `limit`,
    /// and subscribes to messages starting with `topic`.
    pub async fn connect(endpoint: &str, topic: &[u8], limit: Duration) -> Result<Subscriber, ZmtpError> {
        let (host, port) = host_port(endpoint)?;
        let stream = tokio::time::timeout(limit, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ZmtpError::HandshakeTimeout(limit))??;
        stream.set_nodelay(true)?;
        let mut sub = Subscriber { conn: BufReader::with_capacity(4096, stream), can_ping: false };
        // A publisher that accepts but never answers (a stopped process: the kernel still
        // completes TCP connects) must not hold the subscriber forever.
        tokio::time::timeout(limit, sub.handshake(topic)).await.map_err(|_| ZmtpError::HandshakeTimeout(limit))??;
        Ok(sub)
    }

    async fn handshake(&mut self, topic: &[u8]) -> Result<(), ZmtpError> {
        // Greeting: signature, version 3.1, mechanism NULL, as-server 0, filler.
        let mut greeting = [0u8; 64];
        greeting[0] = 0xff;
        greeting[9] = 0x7f;
        greeting[10] = 3;
        greeting[11] = 1;
        greeting[12..16].copy_from_slice(b"NULL");
        let mut ready = Vec::new();
        ready.push(11u8);
        ready.extend_from_slice(b"Socket-Type");
        ready.extend_from_slice(&3u32.to_be_bytes());
        ready.extend_from_slice(b"SUB");
        let mut hello = greeting.to_vec();
        hello.extend(command("READY", &ready));
        self.conn.get_mut().write_all(&hello).await?;

        let mut theirs = [0u8; 64];
        self.conn.read_exact(&mut theirs).await.map_err(eof_is_closed)?;
        if theirs[0] != 0xff || theirs[9] & 1 != 1 {
            return Err(ZmtpError::Protocol("no ZMTP signature in its greeting".into()));
        }
        let (major, minor) = (theirs[10], theirs[11]);
        if major < 3 {
            return Err(ZmtpError::Protocol(format!("it speaks ZMTP {major}.{minor}; 3.0 or later is needed")));
        }
        if &theirs[12..16] != b"NULL" || theirs[16..32].iter().any(|&b| b != 0) {
            let name = String::from_utf8_lossy(&theirs[12..32]).trim_end_matches('\0').to_string();
            return Err(ZmtpError::Protocol(format!("it wants the {name} security mechanism; only NULL is spoken")));
        }
        self.can_ping = major > 3 || minor >= 1;

        // The publisher's READY (or ERROR).
        let (flags, body) = self.read_frame().await?;
        let body = body.unwrap_or_default();
        if flags & FLAG_COMMAND == 0 {
            return Err(ZmtpError::Protocol("a message before its READY command".into()));
        }
        let (name, data) = split_command(&body)?;
        match name {
            b"READY" => {
                let kind = property(data, b"Socket-Type").unwrap_or_default();
                if kind != b"PUB" && kind != b"XPUB" {
                    return Err(ZmtpError::Protocol(format!(
                        "its socket type is {:?}, not PUB",
                        String::from_utf8_lossy(kind)
                    )));
                }
            }
            b"ERROR" => {
                let reason = data.get(1..).map(String::from_utf8_lossy).unwrap_or_default();
                return Err(ZmtpError::Protocol(format!("it refused the connection: {reason}")));
            }
            other => return Err(ZmtpError::Protocol(format!("{:?} instead of READY", String::from_utf8_lossy(other)))),
        }

        // The subscription as a message (0x01 + topic): understood by every ZMTP 3 publisher.
        let mut sub = vec![1u8];
        sub.extend_from_slice(topic);
        self.conn.get_mut().write_all(&frame(0, &sub)).await?;
        Ok(())
    }

    pub fn can_ping(&self) -> bool {
        self.can_ping
    }

    /// Asks the publisher to answer (ZMTP PING, no time-to-live: the publisher keeps the
    /// connection whether or not more pings follow).
    pub async fn ping(&mut self) -> Result<(), ZmtpError> {
        self.conn.get_mut().write_all(&command("PING", &[0, 0])).await?;
        Ok(())
    }

    /// The next message or command, or [`Incoming::Silent`] if nothing arrived within `idle`.
    /// Once a frame has begun, the rest of its message must follow within `idle` too.
    pub async fn next(&mut self, idle: Duration) -> Result<Incoming, ZmtpError> {
        // fill_buf keeps what it read in the buffer, so giving up after `idle` loses nothing.
        match tokio::time::timeout(idle, self.conn.fill_buf()).await {
            Err(_) => return Ok(Incoming::Silent),
            Ok(Ok([])) => return Err(ZmtpError::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
        tokio::time::timeout(idle, self.read_message()).await.map_err(|_| ZmtpError::Stalled(idle))?
    }

    async fn read_message(&mut self) -> Result<Incoming, ZmtpError> {
        let mut parts = Vec::new();
        loop {
            let (flags, body) = self.read_frame().await?;
            if flags & FLAG_COMMAND != 0 {
                let body = body.unwrap_or_default();
                let (name, data) = split_command(&body)?;
                match name {
                    b"PING" => {
                        // PING: ttl (2 bytes), then a context of up to 16 bytes echoed in PONG.
                        let context = data.get(2..).unwrap_or_default();
                        let context = &context[..context.len().min(16)];
                        self.conn.get_mut().write_all(&command("PONG", context)).await?;
                    }
                    b"ERROR" => {
                        let reason = data.get(1..).map(String::from_utf8_lossy).unwrap_or_default();
                        return Err(ZmtpError::Protocol(format!("it closed the subscription: {reason}")));
                    }
                    _ => {}
                }
                return Ok(Incoming::Alive);
            }
            if parts.len() < MAX_PARTS {
                parts.push(body);
            }
            if flags & FLAG_MORE == 0 {
                return Ok(Incoming::Message(parts));
            }
        }
    }

    /// One frame: its flags and its body (`None` if over [`MAX_FRAME`], skipped unread).
    async fn read_frame(&mut self) -> Result<(u8, Option<Vec<u8>>), ZmtpError> {
        let flags = self.conn.read_u8().await.map_err(eof_is_closed)?;
        if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0 {
            return Err(ZmtpError::Protocol(format!("frame flags {flags:#04x}")));
        }
        let size = if flags & FLAG_LONG != 0 {
            self.conn.read_u64().await.map_err(eof_is_closed)?
        } else {
            u64::from(self.conn.read_u8().await.map_err(eof_is_closed)?)
        };
        if size > MAX_FRAME {
            let skipped = tokio::io::copy(&mut (&mut self.conn).take(size), &mut tokio::io::sink()).await?;
            if skipped < size {
                return Err(ZmtpError::Closed);
            }
            return Ok((flags, None));
        }
        let mut body = vec![0u8; size as usize];
        self.conn.read_exact(&mut body).await.map_err(eof_is_closed)?;
        Ok((flags, Some(body)))
    }
}

fn eof_is_closed(e: std::io::Error) -> ZmtpError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ZmtpError::Closed
    } else {
        ZmtpError::Io(e)
    }
}

fn split_command(body: &[u8]) -> Result<(&[u8], &[u8]), ZmtpError> {
    let n = *body.first().ok_or_else(|| ZmtpError::Protocol("an empty command".into()))? as usize;
    let name = body.get(1..1 + n).ok_or_else(|| ZmtpError::Protocol("a truncated command name".into()))?;
    Ok((name, &body[1 + n..]))
}

/// A property of a READY command: name-size (1), name, value-size (4, big-endian), value.
fn property<'a>(mut data: &'a [u8], wanted: &[u8]) -> Option<&'a [u8]> {
    while let Some(&n) = data.first() {
        let name = data.get(1..1 + n as usize)?;
        let rest = &data[1 + n as usize..];
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let value = rest.get(4..4 + len)?;
        if name.eq_ignore_ascii_case(wanted) {
            return Some(value);
        }
        data = &rest[4 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_frames() {
        assert_eq!(host_port("tcp://127.0.0.1:28332").unwrap(), ("127.0.0.1", 28332));
        assert_eq!(host_port("tcp://[::1]:28332").unwrap(), ("::1", 28332));
        assert!(host_port("ipc:///tmp/x").is_err());
        assert!(host_port("tcp://:1").is_err());
        assert_eq!(frame(0, b"ab"), vec![0, 2, b'a', b'b']);
        let long = frame(FLAG_MORE, &[7u8; 300]);
        assert_eq!(&long[..9], &[FLAG_MORE | FLAG_LONG, 0, 0, 0, 0, 0, 0, 1, 44]);
        let ready =
            [&[11u8][..], b"Socket-Type", &3u32.to_be_bytes(), b"PUB", &[8], b"Identity", &[0, 0, 0, 0]].concat();
        assert_eq!(property(&ready, b"socket-type"), Some(&b"PUB"[..]));
        assert_eq!(property(&ready, b"Identity"), Some(&b""[..]));
        assert_eq!(property(&ready[..5], b"Socket-Type"), None);
    }
}
