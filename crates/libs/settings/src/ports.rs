//! One port, one listener: the check across every section that opens one.

use crate::file::FileSettings;
use crate::{NodeKind, Settings, SettingsError};
use minebox_coin::Registry;
use std::net::SocketAddr;

/// TCP ports the box always has in use, whatever the settings say.
const BOX_PORTS: [(u16, &str); 3] = [(22, "SSH"), (80, "the status page"), (443, "HTTPS")];

/// One listener on the box: its port, the settings key that chose it, in which file, and
/// what it is, for an error that names both users of a port.
struct PortUser {
    port: u16,
    file: String,
    key: String,
    what: String,
    /// Set in the user's file (else a default): the one to blame in a clash.
    in_user: bool,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses two listeners on one port: the second could not start (a stratum server on the
/// node's RPC port, or on the status page's, crash-loops). Counted: the box's own ports,
/// every service's local API and the status page, and for each enabled coin its stratum
/// port and the ports of its node when that node listens on this box (a managed node; an
/// external one on localhost). Disabled coins run nothing.
pub(crate) fn check(
    s: &Settings,
    user: (&str, &FileSettings),
    defaults_file: &str,
    registry: &Registry,
) -> Result<(), SettingsError> {
    let u = user.1;
    let service_file = |in_user: bool| if in_user { user.0 } else { defaults_file }.to_string();
    let mut users: Vec<PortUser> = Vec::new();
    let services: [(&str, SocketAddr, &str, bool); 5] = [
        (
            "stratum.api",
            s.stratum.api,
            "the stratum server's local API",
            u.stratum.as_ref().is_some_and(|x| x.api.is_some()),
        ),
        (
            "supervisor.api",
            s.supervisor.api,
            "the supervisor's API",
            u.supervisor.as_ref().is_some_and(|x| x.api.is_some()),
        ),
        (
            "snapshots.api",
            s.snapshots.api,
            "the snapshot agent's API",
            u.snapshots.as_ref().is_some_and(|x| x.api.is_some()),
        ),
        ("updates.api", s.updates.api, "the updater's API", u.updates.as_ref().is_some_and(|x| x.api.is_some())),
        ("status.listen", s.status.listen, "the status page", u.status.as_ref().is_some_and(|x| x.listen.is_some())),
    ];
    for (key, address, what, in_user) in services {
        // Port 0 (a free port picked at start, in tests) cannot clash.
        if address.port() == 0 {
            continue;
        }
        users.push(PortUser {
            port: address.port(),
            file: service_file(in_user),
            key: key.into(),
            what: format!("{what} ({key} = \"{address}\")"),
            in_user,
        });
    }
    for c in s.coins.values().filter(|c| c.enabled) {
        let name = registry.get(&c.id).map(|coin| coin.name.as_str()).unwrap_or(&c.id);
        let fc = u.coins.get(&c.id);
        let file = service_file(fc.is_some());
        let mut add = |field: &str, port: u16, what: String| {
            let key = format!("coins.{}.{field}", c.id);
            let in_user = fc.is_some_and(|f| match field {
                "stratum_port" => f.stratum_port.is_some(),
                "rpc_port" => f.rpc_port.is_some(),
                "p2p_port" => f.p2p_port.is_some(),
                "pool.port" => f.pool.as_ref().is_some_and(|p| p.port.is_some()),
                _ => f.zmq_port.is_some(),
            });
            users.push(PortUser { port, file: file.clone(), what: format!("{what} ({key})"), key, in_user });
        };
        add("stratum_port", c.stratum_port, format!("the {name} stratum port"));
        if let Some(pool) = &c.pool {
            add("pool.port", pool.port, format!("the {name} pool (PPLNS) port"));
        }
        let local = c.node == NodeKind::Managed || is_loopback(&c.rpc_host);
        if local {
            add("rpc_port", c.rpc_port, format!("the {name} node's RPC port"));
            // Only a node MineBox runs is known to listen for peers on p2p_port.
            if c.node == NodeKind::Managed {
                add("p2p_port", c.p2p_port, format!("the {name} node's P2P port"));
            }
            if c.node_flavour.publishes_zmq() {
                add("zmq_port", c.zmq_port, format!("the {name} node's ZMQ port"));
            }
        }
    }
    let clash = |blamed: &PortUser, message: String| SettingsError::Value {
        file: blamed.file.clone(),
        key: blamed.key.clone(),
        message,
    };
    for (i, user) in users.iter().enumerate() {
        if let Some((_, what)) = BOX_PORTS.iter().find(|(p, _)| *p == user.port) {
            // The status page itself listens on 80 on the box.
            if !(user.port == 80 && user.key == "status.listen") {
                return Err(clash(
                    user,
                    format!("{} is used by the box itself ({what}); choose another port", user.port),
                ));
            }
        }
        let Some(first) = users[..i].iter().find(|o| o.port == user.port) else { continue };
        // Name the key the user chose (a default is rarely the mistake), and the other user.
        let (blamed, other) = if first.in_user && !user.in_user { (first, user) } else { (user, first) };
        if blamed.key.ends_with(".stratum_port") && other.key.ends_with(".stratum_port") {
            let coin = other.key.trim_start_matches("coins.").trim_end_matches(".stratum_port");
            return Err(clash(
                blamed,
                format!("{} is already the stratum port of {coin}; give each coin its own port", user.port),
            ));
        }
        return Err(clash(
            blamed,
            format!(
                "{} is also {}; two listeners cannot share a port (one of them would not start): choose another port",
                user.port, other.what
            ),
        ));
    }
    Ok(())
}
