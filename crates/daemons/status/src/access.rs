//! Who may call what: the one table of the least role each endpoint needs (issue 17).
//!
//! The guard in front of the API asks [`minimum_role`] for every signed-in request, so an
//! endpoint cannot be added without a place in this table: anything not named here that
//! changes state is the admin's, anything not named that reads is everyone's.
//!
//! Operators run the box (miners, nodes, snapshots, updates, alerts) but do not manage users,
//! read the audit log, link the box to MineBox Cloud (it sends data off the box), or change
//! coin settings: a coin's payout address, who a found block pays (`payout_policy`), its
//! solo pool (`upstream`, which is paid instead of the owner while the node syncs) and
//! whether it is mined at all all decide where the money goes, so the whole coin section
//! stays with admins ([`crate::api`] checks the body of `PUT /config`).

use crate::accounts::Role;
use axum::http::Method;

pub fn minimum_role(method: &Method, path: &str) -> Role {
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match (reads, first, rest) {
        // Users and the audit log: admins only, even to read.
        (_, "users", _) | (_, "audit", _) => Role::Admin,
        // Everyone's own: signing out, their password, their sessions (the handlers keep a
        // viewer to their own; admins see and revoke everyone's).
        (false, _, "/auth/logout" | "/auth/password") => Role::Viewer,
        // Each user's own second factor (the requirement for admins, /mfa/policy, is the admin's).
        (false, "auth", r) if r.starts_with("/auth/mfa/") => Role::Viewer,
        (_, "sessions", _) => Role::Viewer,
        // Each user's own pool payout address (crate::payees: every role may mine); the pool
        // configuration decides payouts and stays the admin's.
        (false, "pool", r) if r.starts_with("/pool/addresses/") => Role::Viewer,
        (false, "pool", _) => Role::Admin,
        (true, _, _) => Role::Viewer,
        (false, "miners" | "nodes" | "snapshots" | "updates" | "notify", _) => Role::Operator,
        // Operators may change the settings that do not decide payouts; the handler checks.
        (false, "config", _) => Role::Operator,
        (false, _, _) => Role::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_gets_what_the_docs_say() {
        let post = Method::POST;
        for (method, path, role) in [
            (Method::GET, "/api/v1/overview", Role::Viewer),
            (Method::GET, "/api/v1/config", Role::Viewer),
            (Method::GET, "/api/v1/users", Role::Admin),
            (Method::GET, "/api/v1/audit", Role::Admin),
            (Method::GET, "/api/v1/sessions", Role::Viewer),
            (Method::DELETE, "/api/v1/sessions/4", Role::Viewer),
            (post.clone(), "/api/v1/auth/logout", Role::Viewer),
            (Method::PUT, "/api/v1/auth/password", Role::Viewer),
            (post.clone(), "/api/v1/auth/mfa/enrol", Role::Viewer),
            (post.clone(), "/api/v1/auth/mfa/disable", Role::Viewer),
            (Method::GET, "/api/v1/mfa/policy", Role::Viewer),
            (Method::PUT, "/api/v1/mfa/policy", Role::Admin),
            (Method::DELETE, "/api/v1/users/bob/mfa", Role::Admin),
            (post.clone(), "/api/v1/nodes/btc/stop", Role::Operator),
            (post.clone(), "/api/v1/snapshots/btc/install", Role::Operator),
            (post.clone(), "/api/v1/updates/install", Role::Operator),
            (post.clone(), "/api/v1/miners/scan", Role::Operator),
            (Method::PUT, "/api/v1/config", Role::Operator),
            (Method::GET, "/api/v1/pool", Role::Viewer),
            (Method::PUT, "/api/v1/pool/addresses/btc", Role::Viewer),
            (Method::DELETE, "/api/v1/pool/addresses/btc", Role::Viewer),
            (Method::PUT, "/api/v1/pool/config/btc", Role::Admin),
            (post.clone(), "/api/v1/users", Role::Admin),
            (Method::PATCH, "/api/v1/users/bob", Role::Admin),
            (Method::DELETE, "/api/v1/users/bob", Role::Admin),
            (post.clone(), "/api/v1/cloud/link", Role::Admin),
            (post.clone(), "/api/v1/something/new", Role::Admin),
        ] {
            assert_eq!(minimum_role(&method, path), role, "{method} {path}");
        }
    }
}
