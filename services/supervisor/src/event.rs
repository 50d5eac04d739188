//! What the supervisor tells the stratum and status services as it happens.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    NodeStarted { coin: String, pid: Option<u32> },
    NodeSynced { coin: String, height: u64 },
    NodeStalled { coin: String, detail: String },
    NodeCrashed { coin: String, detail: String },
    CrashLoop { coin: String, detail: String },
    StoppedForDisk { coin: String, detail: String },
    NodeStopped { coin: String },
}
