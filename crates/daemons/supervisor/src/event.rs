//! What the supervisor tells the stratum and status services as it happens: one type with
//! the services that read them.

pub use minebox_api::supervisor::Event;
