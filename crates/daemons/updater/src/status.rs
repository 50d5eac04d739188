//! What the local API reports: the running version, what the updater is doing, how far
//! along it is, the update on offer and the last result. The types are the contract's
//! (`minebox_api::updater`), shared with the status page that reads them.

pub use minebox_api::updater::{Current, Progress, State, Status};
