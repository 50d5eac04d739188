//! What the status page serves to the box's own services: the updater's health check
//! after a trial boot asks it whether it is up.

use serde::{Deserialize, Serialize};

/// `GET`: [`Health`], without signing in.
pub const HEALTH: &str = "/api/v1/health";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` while the page runs.
    pub status: String,
    /// The page's version.
    pub version: String,
}
