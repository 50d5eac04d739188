//! Things worth telling the status page (and, through it, the owner) as they happen: one
//! type with the status page that reads them.

pub use minebox_api::stratum::Event;
