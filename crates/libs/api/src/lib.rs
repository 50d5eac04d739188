//! The contracts between MineBox processes, one module per daemon's local API: what it
//! answers, the events it streams and its route paths, each as one type that the daemon
//! serializes and every reader deserializes (the model: stratum-mining's `sv1` crate, where
//! each message is one type shared by both ends). A field renamed here is renamed for
//! writer and readers at once; a reader never picks a JSON value apart by string paths.
//!
//! - [`stratum`]: the stratum server's API (coins, miners, events).
//! - [`supervisor`]: the node supervisor's API (nodes, start/stop, events).
//! - [`snapshot`]: the snapshot agent's API.
//! - [`updater`]: the updater's API.
//! - [`status`]: what the status page serves to the box's own services (its health).
//! - [`sse`]: one typed client for the services' server-sent events.
//!
//! Readers are lenient where the writer may be older or a test's stand-in: a missing field
//! takes its default (`#[serde(default)]`), so a page still shows what it got.

pub mod snapshot;
pub mod sse;
pub mod status;
pub mod stratum;
pub mod supervisor;
pub mod updater;

/// Every daemon answers this with `ok` while it runs.
pub const HEALTHZ: &str = "/healthz";

/// How every daemon's API says no: a status code and this body, a sentence saying what to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody { error: error.into() }
    }
}

/// The value if it reads as `T`, else `T`'s default: for a field a reader does not depend
/// on, so that one odd value does not cost the reader the rest of the answer.
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(T::deserialize(v).unwrap_or_default())
}
