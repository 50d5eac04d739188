//! Hostile and broken clients against a real server on a real Bitcoin Core regtest node: each
//! gets an error or a disconnect, and an honest miner on the same server keeps mining.

mod common;

use common::{stack, Raw, Stack};
use minebox_stratum::connection::Limits;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn addr() -> String {
    common::regtest_addresses()[2].0.clone()
}

/// An honest miner on the same server still gets work and has a share accepted.
async fn honest_miner_still_mines(s: &Stack) {
    let url = format!("stratum+tcp://{}", s.server.stratum_addr("btc").unwrap());
    let report = minebox_simminer::mine_shares(&url, &format!("{}.honest", addr()), 1, Duration::from_secs(60))
        .await
        .expect("honest miner connects and mines");
    assert!(report.accepted >= 1, "honest miner got no share accepted: {report:?}");
}

#[tokio::test]
async fn garbage_bytes_are_refused_and_disconnected() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    c.writer.write_all(&[0xff, 0xfe, 0x00, 0x80, b'\n']).await.unwrap();
    let said = c.until_closed().await;
    assert_eq!(said.len(), 1);
    assert_eq!(said[0]["error"][1], "not UTF-8 text");
    honest_miner_still_mines(&s).await;
}

#[tokio::test]
async fn an_overlong_line_closes_the_connection_without_buffering_it() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    // 1 MiB without a newline: the server must stop at its cap, not wait for the end.
    let blob = vec![b'a'; 1 << 20];
    let _ = c.writer.write_all(&blob).await;
    let said = c.until_closed().await;
    assert!(said[0]["error"][1].as_str().unwrap().contains("line longer than 4096 bytes"), "{said:?}");
    honest_miner_still_mines(&s).await;
}

#[tokio::test]
async fn invalid_json_gets_errors_then_a_disconnect() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    c.send("{not json").await;
    let v = c.recv().await.unwrap();
    assert_eq!(v["error"][0], 20);
    assert!(v["error"][1].as_str().unwrap().starts_with("not valid JSON-RPC"));
    for _ in 0..20 {
        c.send("[1,2,3]").await;
    }
    let said = c.until_closed().await;
    assert!(said.len() <= 11, "disconnected after the malformed limit, got {} replies", said.len());
    honest_miner_still_mines(&s).await;
}

#[tokio::test]
async fn unknown_methods_get_an_error_and_the_session_goes_on() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    c.send(r#"{"id":7,"method":"mining.get_transactions","params":[]}"#).await;
    let v = c.reply(7).await;
    assert_eq!(v["error"][0], 20);
    assert_eq!(v["error"][1], "unknown method mining.get_transactions");
    let job = c.handshake(&format!("{}.after-unknown", addr())).await;
    assert_eq!(job["method"], "mining.notify");
}

#[tokio::test]
async fn submit_before_subscribe_and_before_authorize() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    let submit = r#"{"id":3,"method":"mining.submit","params":["x.y","1","0000000000000000","00000000","00000000"]}"#;
    c.send(submit).await;
    assert_eq!(c.reply(3).await["error"][0], 25);
    c.send(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).await;
    c.reply(1).await;
    c.send(submit).await;
    assert_eq!(c.reply(3).await["error"][0], 24);
}

#[tokio::test]
async fn bad_hex_and_wrong_extranonce2_length() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    let user = format!("{}.hex", addr());
    let job = c.handshake(&user).await;
    let id = job["params"][0].as_str().unwrap();
    let ntime = job["params"][7].as_str().unwrap();
    c.send(&format!(
        r#"{{"id":4,"method":"mining.submit","params":["{user}","{id}","zz00000000000000","{ntime}","00000000"]}}"#
    ))
    .await;
    let v = c.reply(4).await;
    assert_eq!(v["error"][0], 20);
    assert!(v["error"][1].as_str().unwrap().contains("extranonce2 is not hex"));
    c.send(&format!(
        r#"{{"id":5,"method":"mining.submit","params":["{user}","{id}","00000000","{ntime}","00000000"]}}"#
    ))
    .await;
    let v = c.reply(5).await;
    assert!(v["error"][1].as_str().unwrap().contains("extranonce2 must be 8 bytes, got 4"), "{v}");
    c.send(&format!(
        r#"{{"id":6,"method":"mining.submit","params":["{user}","{id}","0000000000000000","{ntime}","0x00"]}}"#
    ))
    .await;
    assert_eq!(c.reply(6).await["error"][0], 20);
}

#[tokio::test]
async fn a_wrong_network_address_is_refused_with_a_reason() {
    let s = stack(Limits::default()).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    c.send(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).await;
    c.reply(1).await;
    // A mainnet address on a regtest box.
    c.send(r#"{"id":2,"method":"mining.authorize","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig","x"]}"#)
        .await;
    let v = c.reply(2).await;
    assert_eq!(v["result"], false);
    assert_eq!(v["error"][0], 24);
    let msg = v["error"][1].as_str().unwrap();
    assert!(msg.contains("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), "{msg}");
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_capped() {
    let limits = Limits { connections_per_ip: 20, ..Limits::default() };
    let s = stack(limits).await;
    let addr = s.server.stratum_addr("btc").unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(Raw::connect(addr).await);
    }
    // Give the server time to admit them all before the one too many.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = Raw::connect(addr).await;
    let said = extra.until_closed().await;
    assert_eq!(said.len(), 1);
    assert_eq!(said[0]["error"][1], "too many connections from your address");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    honest_miner_still_mines(&s).await;
}

#[tokio::test]
async fn a_message_flood_is_cut_off() {
    let limits = Limits { messages_per_sec: 5.0, message_burst: 20.0, ..Limits::default() };
    let s = stack(limits).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    for i in 0..200 {
        if c.writer
            .write_all(format!("{{\"id\":{i},\"method\":\"mining.extranonce.subscribe\",\"params\":[]}}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let said = c.until_closed().await;
    let last = said.last().unwrap();
    assert_eq!(last["error"][1], "too many messages; slow down");
    assert!(said.len() <= 22, "{} replies before the cut", said.len());
    honest_miner_still_mines(&s).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_others_keep_getting_work() {
    let limits = Limits {
        write_timeout: Duration::from_secs(2),
        send_buffer_bytes: 4096,
        messages_per_sec: 100_000.0,
        message_burst: 100_000.0,
        ..Limits::default()
    };
    let s = stack(limits).await;
    let addr = s.server.stratum_addr("btc").unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    // Ask for replies (each ~150 bytes) and never read one, until our writes stall or fail.
    let line = b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n".repeat(64);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        match tokio::time::timeout(Duration::from_secs(5), w.write_all(&line)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    // Now read what is buffered: a dropped connection ends (EOF or reset) soon; one the
    // server still holds would just stop sending and time out here.
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 65536];
    let mut dropped = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                dropped = true;
                break;
            }
            Ok(Ok(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(dropped, "server kept a non-reading client for 30 s");
    honest_miner_still_mines(&s).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let limits = Limits { handshake_timeout: Duration::from_secs(1), ..Limits::default() };
    let s = stack(limits).await;
    let mut c = Raw::connect(s.server.stratum_addr("btc").unwrap()).await;
    assert!(c.until_closed().await.is_empty());
}
