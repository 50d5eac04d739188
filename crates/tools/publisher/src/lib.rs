//! The publisher: turns a stopped node's data directory (or a `dumptxoutset` file) into a
//! published snapshot tree, reusing every chunk the tree already has.
//!
//! - [`publish`]: chunk, compress what is new, write the index, the manifest and its signature.
//! - [`verify`]: check a published tree end to end, as a device would.
//! - [`keys`]: key files an operator can live with (0600, key id, never logged).
//! - [`upload`]: the cloud target, any S3-compatible object store.
//! - [`register`]: cataloguing an uploaded tree in MineBox Cloud.

pub mod keys;
pub mod publish;
pub mod register;
pub mod upload;
pub mod verify;
