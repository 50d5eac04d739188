//! The stratum line parser (crates/daemons/stratum/src/protocol.rs) on any line a miner can send.
//!
//! The connection hands `parse_line` every UTF-8 line of at most MAX_LINE_BYTES, trimmed.
//! Contract: never panics; whatever it accepts is within the bounds the server relies on
//! (field lengths, hex widths, finite positive difficulties); every answer built from what
//! it returns is one line of JSON that carries the miner's id back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minebox_stratum::protocol::{
    parse_line, reply, reply_error, reply_false, ErrorCode, Rejection, Request, MAX_LINE_BYTES,
};
use serde_json::Value;

fn one_json_line(line: &str, id: &Value) {
    assert!(!line.contains('\n') && !line.contains('\r'), "a reply spans lines: {line:?}");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a reply is not JSON ({e}): {line:?}"));
    // Floats (anywhere in the id, which may be an array or object) may not round-trip bit for
    // bit through serde_json's default parser; every other id a miner sends must come back as
    // sent (a miner matches replies by it).
    if !has_float(id) {
        assert_eq!(&v["id"], id, "the reply does not carry the request's id");
    }
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if line.len() > MAX_LINE_BYTES {
        return;
    }
    let line = line.trim();
    match parse_line(line) {
        Ok((id, request)) => {
            match &request {
                Request::Subscribe { user_agent, session_id } => {
                    assert!(user_agent.as_ref().is_none_or(|u| u.chars().count() <= 128));
                    assert!(session_id.as_ref().is_none_or(|s| s.chars().count() <= 16));
                }
                Request::Authorize { user } => assert_eq!(user.trim(), user),
                Request::Configure(c) => {
                    assert!(c.extensions.len() <= 16);
                    assert!(c.extensions.iter().all(|e| e.chars().count() <= 64));
                    assert!(c.version_rolling_min_bits.is_none_or(|b| b <= 32));
                    assert!(c.minimum_difficulty.is_none_or(|d| d.is_finite() && d > 0.0));
                }
                Request::SuggestDifficulty(d) => assert!(d.is_finite() && *d > 0.0, "accepted difficulty {d}"),
                Request::ExtranonceSubscribe | Request::Ping | Request::Answer => {}
                Request::Submit(s) => {
                    assert!(s.worker.chars().count() <= 128);
                    assert!(s.job_id.len() <= 32);
                    assert!(s.extranonce2.len() <= 16);
                }
                Request::Unknown(m) => assert!(m.chars().count() <= 64),
            }
            one_json_line(&reply(&id, Value::Bool(true)), &id);
            let r = Rejection::new(ErrorCode::Other, format!("{request:?}"));
            one_json_line(&reply_false(&id, &r), &id);
        }
        Err((id, e)) => {
            one_json_line(&reply_error(&id, &Rejection::new(ErrorCode::Other, e.to_string())), &id);
        }
    }
});
