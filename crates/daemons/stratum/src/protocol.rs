//! The Stratum V1 wire format: one JSON-RPC object per line.
//!
//! Parsing is strict about what the server acts on (hex widths, numbers) and lenient about
//! what miners disagree on (string or number ids, missing optional parameters), because
//! firmware in the field is not always tidy and a miner that cannot authorize is a miner
//! that hashes for nobody.

use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt;

/// Longest line accepted from a miner. A Bitaxe's longest message (mining.submit with
/// version bits and a long worker name) is well under 300 bytes; anything near this cap
/// is hostile or broken, and the connection is closed rather than buffered.
pub const MAX_LINE_BYTES: usize = 4096;

/// The error codes every SV1 miner understands (from the original slush/cgminer usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Other = 20,
    /// Job not found: stale (superseded by a new block) or never sent to this miner.
    Stale = 21,
    Duplicate = 22,
    LowDifficulty = 23,
    Unauthorized = 24,
    NotSubscribed = 25,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Other => "other",
            ErrorCode::Stale => "stale",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::LowDifficulty => "low_difficulty",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotSubscribed => "not_subscribed",
        }
    }

    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::Other,
        ErrorCode::Stale,
        ErrorCode::Duplicate,
        ErrorCode::LowDifficulty,
        ErrorCode::Unauthorized,
        ErrorCode::NotSubscribed,
    ];
}

/// A refusal sent back to the miner: a code and a message a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code as u8)
    }
}

/// A request as it arrives, before its parameters are understood.
#[derive(Debug, Deserialize)]
pub struct RawRequest {
    #[serde(default)]
    pub id: Value,
    /// Absent on an answer to one of the server's own requests (a miner's `mining.ping` reply).
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

/// What a miner can ask of the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe {
        user_agent: Option<String>,
        session_id: Option<String>,
    },
    Authorize {
        user: String,
    },
    Configure(Configure),
    SuggestDifficulty(f64),
    ExtranonceSubscribe,
    Submit(Submit),
    /// `mining.ping` from the miner: answered with `"pong"`, as cgminer-family firmware does.
    Ping,
    /// A miner answering the server's keepalive `mining.ping`: ESP-Miner sends a `pong`
    /// *request* (`{"id":n,"method":"pong","params":[]}`), cgminer/bmminer an ordinary answer
    /// (`{"id":n,"result":"pong","error":null}`), firmware that does not know the ping an error
    /// answer. None of these is a protocol error, and none gets a reply: an error reply to
    /// ESP-Miner's `pong` would reach it as the answer to one of its own request ids.
    Answer,
    /// Answered with an error, never ignored: a silent miner is harder to debug.
    Unknown(String),
}

/// BIP310 mining.configure: the extensions asked for and their parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Configure {
    pub extensions: Vec<String>,
    pub version_rolling_mask: Option<u32>,
    pub version_rolling_min_bits: Option<u32>,
    pub minimum_difficulty: Option<f64>,
}

/// mining.submit, parsed into the exact fields of the header and coinbase.
#[derive(Debug, Clone, PartialEq)]
pub struct Submit {
    pub worker: String,
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
    /// BIP310: the rolled version bits, present only when version rolling is in use.
    pub version_bits: Option<u32>,
}

/// Why a line could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON-RPC: {0}")]
    Json(String),
    #[error("{method}: {problem}")]
    Params { method: String, problem: String },
}

/// Parses one line (without its newline) into the request id and the request.
/// The id is returned even when the parameters are bad, so the error can be answered.
pub fn parse_line(line: &str) -> Result<(Value, Request), (Value, ParseError)> {
    let raw: RawRequest = serde_json::from_str(line).map_err(|e| (Value::Null, ParseError::Json(e.to_string())))?;
    let id = raw.id.clone();
    if raw.method.is_none() {
        if raw.result.is_some() || raw.error.is_some() {
            return Ok((id, Request::Answer));
        }
        return Err((id, ParseError::Json("missing field `method`".into())));
    }
    parse_request(raw).map(|r| (id.clone(), r)).map_err(|e| (id, e))
}

fn parse_request(raw: RawRequest) -> Result<Request, ParseError> {
    let params = match raw.params {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let method = raw.method.unwrap_or_default();
    let bad = |problem: &str| ParseError::Params { method: method.clone(), problem: problem.to_string() };
    Ok(match method.as_str() {
        "mining.subscribe" => Request::Subscribe {
            user_agent: params.first().and_then(Value::as_str).map(|s| truncate(s, 128)),
            session_id: params.get(1).and_then(Value::as_str).map(|s| truncate(s, 16)),
        },
        "mining.authorize" => {
            let user = params
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| bad("expected [\"address.worker\", \"password\"]"))?;
            Request::Authorize { user: user.trim().to_string() }
        }
        "mining.configure" => Request::Configure(parse_configure(&params).map_err(|p| bad(&p))?),
        "mining.suggest_difficulty" => {
            let d = params.first().and_then(number).ok_or_else(|| bad("expected [difficulty]"))?;
            if !(d.is_finite() && d > 0.0) {
                return Err(bad("difficulty must be a positive number"));
            }
            Request::SuggestDifficulty(d)
        }
        "mining.extranonce.subscribe" => Request::ExtranonceSubscribe,
        "mining.submit" => Request::Submit(parse_submit(&params).map_err(|p| bad(&p))?),
        "mining.ping" => Request::Ping,
        "pong" => Request::Answer,
        other => Request::Unknown(truncate(other, 64)),
    })
}

fn parse_configure(params: &[Value]) -> Result<Configure, String> {
    let extensions = params
        .first()
        .and_then(Value::as_array)
        .ok_or("expected [[extensions...], {parameters}]")?
        .iter()
        .take(16)
        .filter_map(Value::as_str)
        .map(|s| truncate(s, 64))
        .collect();
    let empty = serde_json::Map::new();
    let p = params.get(1).and_then(Value::as_object).unwrap_or(&empty);
    let version_rolling_mask = match p.get("version-rolling.mask") {
        None => None,
        Some(v) => Some(v.as_str().and_then(hex_u32).ok_or("version-rolling.mask must be 8 hex digits")?),
    };
    let version_rolling_min_bits =
        p.get("version-rolling.min-bit-count").and_then(Value::as_u64).map(|n| n.min(32) as u32);
    let minimum_difficulty = p.get("minimum-difficulty.value").and_then(number).filter(|d| d.is_finite() && *d > 0.0);
    Ok(Configure { extensions, version_rolling_mask, version_rolling_min_bits, minimum_difficulty })
}

fn parse_submit(params: &[Value]) -> Result<Submit, String> {
    if params.len() < 5 {
        return Err("expected [worker, job_id, extranonce2, ntime, nonce(, version_bits)]".into());
    }
    let s = |i: usize, what: &str| params[i].as_str().ok_or_else(|| format!("{what} must be a string"));
    let worker = truncate(s(0, "worker")?, 128);
    let job_id = s(1, "job_id")?;
    if job_id.len() > 32 {
        return Err("job_id too long".into());
    }
    let extranonce2 = s(2, "extranonce2")?;
    if extranonce2.len() > 32 {
        return Err("extranonce2 too long".into());
    }
    let extranonce2 = hex::decode(extranonce2).map_err(|_| "extranonce2 is not hex".to_string())?;
    let ntime = hex_u32(s(3, "ntime")?).ok_or("ntime must be 8 hex digits")?;
    let nonce = hex_u32(s(4, "nonce")?).ok_or("nonce must be 8 hex digits")?;
    let version_bits = match params.get(5) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().and_then(hex_u32).ok_or("version_bits must be 8 hex digits")?),
    };
    Ok(Submit { worker, job_id: job_id.to_string(), extranonce2, ntime, nonce, version_bits })
}

/// A big-endian u32 written as up to 8 hex digits, the way SV1 writes ntime, nonce and version.
pub fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // Some firmware sends the difficulty as a string.
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A successful reply.
pub fn reply(id: &Value, result: Value) -> String {
    json!({ "id": id, "result": result, "error": null }).to_string()
}

/// A refusal in the `[code, message, null]` shape miners parse.
pub fn reply_error(id: &Value, rejection: &Rejection) -> String {
    json!({ "id": id, "result": null, "error": [rejection.code as u8, rejection.message, null] }).to_string()
}

/// A reply whose result is `false` with an error attached: what authorize answers, because
/// some firmware only looks at `result` and others only at `error`.
pub fn reply_false(id: &Value, rejection: &Rejection) -> String {
    json!({ "id": id, "result": false, "error": [rejection.code as u8, rejection.message, null] }).to_string()
}

pub fn set_difficulty(difficulty: f64) -> String {
    // JSON has no NaN or infinity (serde writes `null`, which miners read as 0): a
    // difficulty that is not a usable number must never reach the wire.
    let difficulty = crate::vardiff::sane(difficulty, crate::vardiff::MIN_DIFFICULTY);
    json!({ "id": null, "method": "mining.set_difficulty", "params": [difficulty] }).to_string()
}

/// The keepalive sent to a miner that has heard nothing for a while (ESP-Miner gives up on a
/// pool after 180 s of silence). ESP-Miner and cgminer/bmminer answer it; firmware that
/// does not know it logs and ignores it. The id is a number because bmminer echoes it with
/// `%d`; the server ignores the answer.
pub fn ping(id: u64) -> String {
    json!({ "id": id, "method": "mining.ping", "params": [] }).to_string()
}

/// Sent to every miner before a planned stop, so each reconnects at once instead of after
/// its own timeout (or failing over to its backup pool). No parameters: ESP-Miner ignores
/// them, cgminer reads a missing host and port as "the same pool".
pub fn client_reconnect() -> String {
    json!({ "id": null, "method": "client.reconnect", "params": [] }).to_string()
}

pub fn set_version_mask(mask: u32) -> String {
    json!({ "id": null, "method": "mining.set_version_mask", "params": [format!("{mask:08x}")] }).to_string()
}

/// A new extranonce1 and extranonce2 size for the next jobs (to miners that sent
/// `mining.extranonce.subscribe`).
pub fn set_extranonce(extranonce1: &[u8], extranonce2_len: usize) -> String {
    json!({ "id": null, "method": "mining.set_extranonce", "params": [hex::encode(extranonce1), extranonce2_len] })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_bitaxe_submit_with_version_bits() {
        let line = r#"{"id": 5, "method": "mining.submit", "params": ["bcrt1qxyz.bitaxe", "1a", "0000000000000001", "65f1a2b3", "deadbeef", "00800000"]}"#;
        let (id, req) = parse_line(line).unwrap();
        assert_eq!(id, json!(5));
        assert_eq!(
            req,
            Request::Submit(Submit {
                worker: "bcrt1qxyz.bitaxe".into(),
                job_id: "1a".into(),
                extranonce2: vec![0, 0, 0, 0, 0, 0, 0, 1],
                ntime: 0x65f1a2b3,
                nonce: 0xdeadbeef,
                version_bits: Some(0x0080_0000),
            })
        );
    }

    #[test]
    fn submit_without_version_bits_is_accepted() {
        let line = r#"{"id":"x","method":"mining.submit","params":["w","1","00000001","00000000","00000000"]}"#;
        let (_, req) = parse_line(line).unwrap();
        assert!(matches!(req, Request::Submit(Submit { version_bits: None, .. })));
    }

    #[test]
    fn bad_hex_names_the_field_and_keeps_the_id() {
        let line = r#"{"id":9,"method":"mining.submit","params":["w","1","zz","00000000","00000000"]}"#;
        let (id, err) = parse_line(line).unwrap_err();
        assert_eq!(id, json!(9));
        assert!(err.to_string().contains("extranonce2 is not hex"), "{err}");
        let line = r#"{"id":9,"method":"mining.submit","params":["w","1","00","123456789","00000000"]}"#;
        assert!(parse_line(line).unwrap_err().1.to_string().contains("ntime"));
    }

    #[test]
    fn invalid_json_is_an_error_not_a_panic() {
        for line in ["", "{", "null", "[1,2]", "{\"method\": 5}", "\u{0}\u{1}garbage"] {
            assert!(matches!(parse_line(line), Err((_, ParseError::Json(_)))), "{line:?}");
        }
    }

    #[test]
    fn configure_reads_bip310_parameters() {
        let line = r#"{"id":1,"method":"mining.configure","params":[["version-rolling","minimum-difficulty","frobnicate"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":16,"minimum-difficulty.value":512}]}"#;
        let (_, req) = parse_line(line).unwrap();
        let Request::Configure(c) = req else { panic!() };
        assert_eq!(c.extensions, vec!["version-rolling", "minimum-difficulty", "frobnicate"]);
        assert_eq!(c.version_rolling_mask, Some(0x1fffe000));
        assert_eq!(c.version_rolling_min_bits, Some(16));
        assert_eq!(c.minimum_difficulty, Some(512.0));
    }

    #[test]
    fn suggest_difficulty_refuses_nonsense() {
        assert!(parse_line(r#"{"id":1,"method":"mining.suggest_difficulty","params":[-1]}"#).is_err());
        assert!(parse_line(r#"{"id":1,"method":"mining.suggest_difficulty","params":["abc"]}"#).is_err());
        let (_, r) = parse_line(r#"{"id":1,"method":"mining.suggest_difficulty","params":["1000"]}"#).unwrap();
        assert_eq!(r, Request::SuggestDifficulty(1000.0));
    }

    #[test]
    fn unknown_methods_are_kept_for_an_answer() {
        let (_, r) = parse_line(r#"{"id":1,"method":"mining.get_transactions","params":[]}"#).unwrap();
        assert_eq!(r, Request::Unknown("mining.get_transactions".into()));
    }

    #[test]
    fn pings_and_answers_to_pings_are_understood() {
        assert_eq!(parse_line(r#"{"id":7,"method":"mining.ping","params":[]}"#).unwrap(), (json!(7), Request::Ping));
        // ESP-Miner's answer is a request named pong; cgminer's an ordinary answer.
        assert_eq!(parse_line(r#"{"id":3,"method":"pong","params":[]}"#).unwrap().1, Request::Answer);
        assert_eq!(parse_line(r#"{"id":3,"result":"pong","error":null}"#).unwrap().1, Request::Answer);
        assert_eq!(parse_line(r#"{"id":3,"result":null,"error":[20,"unknown",null]}"#).unwrap().1, Request::Answer);
        // Neither a method nor an answer: still malformed.
        assert!(matches!(parse_line(r#"{"id":3,"params":[]}"#), Err((_, ParseError::Json(_)))));
    }

    #[test]
    fn errors_have_the_shape_miners_parse() {
        let s = reply_error(&json!(3), &Rejection::new(ErrorCode::Duplicate, "Duplicate share"));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["error"], json!([22, "Duplicate share", null]));
        assert_eq!(v["result"], Value::Null);
    }
}
