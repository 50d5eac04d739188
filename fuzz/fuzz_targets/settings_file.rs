//! The settings file (crates/libs/settings): the user's minebox.toml, as the status page and
//! the user write it, laid over the image defaults and checked (`Settings::from_texts`, what
//! every service runs at start and what the page runs on an edit).
//!
//! Contract: never panics (a wrong file is an error naming the file and key); whatever it
//! accepts lets every service start and work: difficulty bounds finite, positive and
//! ordered; share rate in range; each enabled coin's stratum port unprivileged, its own,
//! and not a port the box itself uses (the services' APIs, the page, the nodes' RPC, P2P
//! and ZMQ ports); a coinbase tag that fits the coinbase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minebox_coin::Registry;
use minebox_settings::{NodeKind, Settings, EMBEDDED_DEFAULTS};
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::embedded)
}

fn port_of(listen: &std::net::SocketAddr) -> Option<u16> {
    Some(listen.port())
}

fuzz_target!(|data: &[u8]| {
    // The services read the file with read_to_string: a file that is not UTF-8 is an I/O error.
    let Ok(user) = std::str::from_utf8(data) else { return };
    let settings = match Settings::from_texts("minebox.toml", user, "defaults.toml", EMBEDDED_DEFAULTS, registry()) {
        Ok(s) => s,
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("minebox.toml") || message.starts_with("defaults.toml"), "{message}");
            return;
        }
    };
    assert!(settings.stratum.coinbase_tag.len() <= 40);
    // Ports the box itself listens on, and who.
    let mut used: BTreeMap<u16, String> = BTreeMap::new();
    for (what, listen) in [
        ("stratum.api", &settings.stratum.api),
        ("supervisor.api", &settings.supervisor.api),
        ("snapshots.api", &settings.snapshots.api),
        ("updates.api", &settings.updates.api),
        ("status.listen", &settings.status.listen),
    ] {
        if let Some(p) = port_of(listen) {
            used.insert(p, what.to_string());
        }
    }
    let enabled: Vec<_> = settings.coins.values().filter(|c| c.enabled).collect();
    // A node MineBox runs listens here; an external node's ports are on another machine.
    for c in enabled.iter().filter(|c| c.node == NodeKind::Managed) {
        for (what, p) in [("rpc_port", c.rpc_port), ("p2p_port", c.p2p_port), ("zmq_port", c.zmq_port)] {
            used.insert(p, format!("coins.{}.{what}", c.id));
        }
    }
    let mut stratum_ports = BTreeMap::new();
    for c in &enabled {
        assert!(c.stratum_port >= 1024, "{}: privileged stratum port {}", c.id, c.stratum_port);
        if let Some(other) = stratum_ports.insert(c.stratum_port, &c.id) {
            panic!("{} and {other} share stratum port {}", c.id, c.stratum_port);
        }
        if let Some(what) = used.get(&c.stratum_port) {
            panic!("coins.{}.stratum_port {} is also {what}: the stratum server cannot listen", c.id, c.stratum_port);
        }
    }
    for c in settings.coins.values() {
        let (min, start, max) = (c.min_difficulty, c.start_difficulty, c.max_difficulty);
        for (what, d) in [("min", min), ("start", start), ("max", max)] {
            assert!(d.is_finite() && d > 0.0, "coins.{}.{what}_difficulty {d:e} accepted", c.id);
            // Below ~1e-300 vardiff's arithmetic leaves the f64 range (issue 12, defect 12).
            assert!(d.is_normal() && d >= 1e-300, "coins.{}.{what}_difficulty {d:e} accepted", c.id);
        }
        assert!(min <= start && start <= max, "coins.{}: difficulties {min} <= {start} <= {max} do not hold", c.id);
        assert!((0.1..=600.0).contains(&c.shares_per_minute));
        assert!(registry().get(&c.id).is_some());
    }
});
