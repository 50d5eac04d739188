//! The MineBox supervisor: turns the coins ticked in the settings into running, healthy,
//! correctly configured nodes.
//!
//! - [`credentials`]: generated RPC secrets (0640, group-readable) and `rpcauth` lines.
//! - [`launch`]: a node's command line and config (RPC on localhost, ZMQ, pruning, dbcache).
//! - [`backend`]: child processes (development) or systemd units (the box).
//! - [`health`]: what the node says about itself; [`keeper`]: one coin's life cycle
//!   (backoff restarts, crash loops, stalls, the disk guard).
//! - [`event`], [`api`]: what other services hear and ask.

pub mod api;
pub mod backend;
pub mod credentials;
pub mod event;
pub mod health;
pub mod keeper;
pub mod launch;

use backend::Backend;
use health::NodeState;
use keeper::{Keeper, NodeView, Policy};
use minebox_settings::Settings;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A started supervisor.
pub struct Supervisor {
    pub api: SocketAddr,
    pub events: broadcast::Sender<event::Event>,
    pub views: BTreeMap<String, keeper::SharedView>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Supervisor {
    pub fn view(&self, coin: &str) -> Option<NodeView> {
        self.views.get(coin).map(|v| v.lock().expect("view").clone())
    }

    /// Stops every node cleanly (stop RPC, then signals) and returns when they are down.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

pub async fn start(
    settings: &Settings,
    backend: Backend,
    policy: Policy,
    api: SocketAddr,
) -> anyhow::Result<Supervisor> {
    let backend = Arc::new(backend);
    let (events, _) = broadcast::channel(256);
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut nodes = BTreeMap::new();
    let mut views = BTreeMap::new();
    for coin in settings.coins.values() {
        let view = Arc::new(Mutex::new(NodeView {
            coin: coin.id.clone(),
            network: coin.network.name.clone(),
            flavour: coin.node_flavour.to_string(),
            state: NodeState::Stopped,
            detail: String::new(),
            health: None,
            pid: None,
            restarts: 0,
            rpc_url: String::new(),
            zmq_hashblock: None,
            credentials_file: Default::default(),
            backend: backend.name().to_string(),
        }));
        let (tx, rx) = mpsc::channel(8);
        let k = Keeper {
            coin: coin.clone(),
            nodes_dir: settings.paths.nodes.clone(),
            secrets_dir: settings.paths.secrets.clone(),
            backend: backend.clone(),
            policy: policy.clone(),
            view: view.clone(),
            events: events.clone(),
        };
        std::fs::create_dir_all(&settings.paths.nodes)?;
        tasks.spawn(k.run(rx, shutdown.clone()));
        nodes.insert(coin.id.clone(), (view.clone(), tx));
        views.insert(coin.id.clone(), view);
    }
    let listener =
        tokio::net::TcpListener::bind(api).await.map_err(|e| anyhow::anyhow!("supervisor API {api}: {e}"))?;
    let addr = listener.local_addr()?;
    let router =
        api::router(api::ApiState { nodes: Arc::new(nodes), events: events.clone(), shutdown: shutdown.clone() });
    let api_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let _ =
            axum::serve(listener, router).with_graceful_shutdown(async move { api_shutdown.cancelled().await }).await;
    });
    Ok(Supervisor { api: addr, events, views, shutdown, tasks })
}
