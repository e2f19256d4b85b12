//! The broker's view of the metadata Raft group: start-up and bootstrap, registration and
//! liveness heartbeats, proposals, and the applied state every handler answers from.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slog::{Logger, info, warn};
use sluice_raft::command::{Command, CommandResult};
use sluice_raft::state::{Listener, MetadataState};
use sluice_raft::{MetadataStore, NodeConfig};
use tokio::sync::watch;

use crate::config::Config;

/// How long a broker stays live without a heartbeat.
pub const BROKER_LEASE: Duration = Duration::from_secs(10);
/// How often a broker renews its lease.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// `node.id`.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// The metadata store as the broker uses it.
pub struct Cluster {
    store: MetadataStore,
    node_id: i32,
    incarnation_id: uuid::Uuid,
}

impl Cluster {
    /// Starts (or restarts) this node's Raft peer. With no voters configured it is a
    /// one-voter group created on first boot and reused afterwards.
    pub async fn start(config: &Config, log: Logger) -> anyhow::Result<Cluster> {
        let raft_dir = config.data_dir.join("raft");
        let mut node_config = if config.voters.is_empty() {
            NodeConfig::single(config.node_id, raft_dir)
        } else {
            let peers = config
                .voters
                .iter()
                .map(|v| (v.node_id, v.addr.clone()))
                .collect();
            NodeConfig::cluster(config.node_id, raft_dir, config.raft_listen.clone(), peers)
        };
        node_config.pchannels = config.pchannels;
        let store = MetadataStore::start(node_config, log)
            .await
            .context("starting the metadata Raft group")?;
        Ok(Cluster {
            store,
            node_id: i32::try_from(config.node_id).context("node.id must fit in 31 bits")?,
            incarnation_id: uuid::Uuid::new_v4(),
        })
    }

    /// The latest applied metadata.
    pub fn state(&self) -> Arc<MetadataState> {
        self.store.state()
    }

    /// The applied state, changing with every applied command.
    pub fn watch(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.store.subscribe()
    }

    /// Proposes a command and waits until it is applied.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, sluice_raft::Error> {
        self.store.propose(command).await
    }

    /// The Raft group's status as this node sees it (term, leader, applied index).
    pub fn raft_status(&self) -> sluice_raft::RaftStatus {
        self.store.status()
    }

    /// The Kafka cluster id, spelled as Kafka spells it: the UUID in URL-safe base64.
    pub fn cluster_id(&self, state: &MetadataState) -> String {
        use base64::Engine;
        state
            .cluster
            .as_ref()
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.cluster_id.as_bytes())
            })
            .unwrap_or_default()
    }

    /// The broker Kafka clients see as the controller: the Raft leader, or -1 during an election.
    pub fn controller_id(&self) -> i32 {
        self.store
            .leader()
            .and_then(|l| i32::try_from(l).ok())
            .unwrap_or(-1)
    }

    /// Brokers whose lease runs now, with their PLAINTEXT endpoint.
    pub fn live_brokers(&self, state: &MetadataState) -> Vec<BrokerEndpoint> {
        let now = crate::streaming::wal::now_ms();
        state
            .live_brokers(now)
            .filter_map(|b| {
                let listener = b.listeners.first()?;
                Some(BrokerEndpoint {
                    id: b.broker_id,
                    host: listener.host.clone(),
                    port: i32::from(listener.port),
                    rack: b.rack.clone(),
                })
            })
            .collect()
    }

    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Waits until the group has a cluster id, then registers this broker and starts its lease.
    pub async fn register(&self, advertised: &(String, i32), log: &Logger) -> anyhow::Result<()> {
        let mut versions = self.watch();
        loop {
            if self.state().cluster.is_some() {
                break;
            }
            versions
                .changed()
                .await
                .context("metadata store stopped during start-up")?;
        }
        let command = Command::RegisterBroker {
            broker_id: self.node_id,
            incarnation_id: self.incarnation_id,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: advertised.0.clone(),
                port: u16::try_from(advertised.1).context("advertised port")?,
            }],
            rack: None,
            now_ms: crate::streaming::wal::now_ms(),
            lease_ms: BROKER_LEASE.as_millis() as i64,
        };
        self.propose_with_retry(command, log)
            .await
            .context("registering the broker")?;
        info!(log, "broker registered"; "cluster_id" => self.cluster_id(&self.state()));
        Ok(())
    }

    /// Renews this broker's lease until `shutdown` turns true.
    pub async fn heartbeat(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, log: Logger) {
        let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let command = Command::BrokerHeartbeat {
                broker_id: self.node_id,
                incarnation_id: self.incarnation_id,
                now_ms: crate::streaming::wal::now_ms(),
            };
            if let Err(e) = self.propose(command).await {
                warn!(log, "heartbeat failed"; "error" => %e);
            }
        }
    }

    /// Proposes until the command is applied, riding out elections.
    pub async fn propose_with_retry(
        &self,
        command: Command,
        log: &Logger,
    ) -> Result<CommandResult, sluice_raft::Error> {
        let mut delay = Duration::from_millis(20);
        for attempt in 0.. {
            match self.propose(command.clone()).await {
                Err(
                    sluice_raft::Error::NotLeader { .. }
                    | sluice_raft::Error::ProposalDropped
                    | sluice_raft::Error::Timeout(_),
                ) if attempt < 50 => {
                    if attempt % 10 == 9 {
                        warn!(log, "metadata proposal still waiting for a leader"; "attempts" => attempt + 1);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Stops the Raft peer.
    pub async fn shutdown(&self) {
        self.store.shutdown().await;
    }
}
