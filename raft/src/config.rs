//! Configuration of a metadata-store node, as the broker fills it from its config file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Settings of one node of the metadata Raft group.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft id of this node (non-zero; the broker uses its `node.id`).
    pub node_id: u64,
    /// Directory for the Raft files (e.g. `<log.dirs>/__raft`).
    pub data_dir: PathBuf,
    /// Address the Raft listener binds, e.g. `0.0.0.0:9093`. `None` only for a single node
    /// without peers.
    pub raft_listen: Option<String>,
    /// The other voters' Raft addresses by node id (an entry for this node is ignored).
    /// Empty: a single-voter group.
    pub peers: BTreeMap<u64, String>,
    /// Length of one Raft tick.
    pub tick_ms: u64,
    /// Ticks without a leader before an election (randomized in `[e, 2e)`).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries between state-machine snapshots.
    pub snapshot_interval: u64,
    /// Entries kept in the log before a snapshot.
    pub snapshot_keep: u64,
    /// pchannel pool size of a new cluster.
    pub pchannels: u32,
    /// How long `propose` and `read` wait before [`Error::Timeout`].
    pub request_timeout_ms: u64,
    /// Start with no voters and wait to be added by an existing group (`add_voter`).
    pub join: bool,
    /// Messages queued per peer before new ones are dropped (and the peer reported unreachable).
    pub send_queue: usize,
    /// Proposals made on a follower that may wait on the leader at once (forwarded); more
    /// wait for a slot.
    pub max_forwarded: usize,
}

impl NodeConfig {
    /// A single-voter group in `data_dir` with the default timing (100 ms ticks, elections
    /// after 1–2 s, heartbeats every 100 ms).
    pub fn single(node_id: u64, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            node_id,
            data_dir: data_dir.into(),
            raft_listen: None,
            peers: BTreeMap::new(),
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_interval: 10_000,
            snapshot_keep: 1_000,
            pchannels: 16,
            request_timeout_ms: 10_000,
            join: false,
            send_queue: 4096,
            max_forwarded: 256,
        }
    }

    /// A member of a multi-voter group listening on `raft_listen`.
    pub fn cluster(
        node_id: u64,
        data_dir: impl Into<PathBuf>,
        raft_listen: impl Into<String>,
        peers: BTreeMap<u64, String>,
    ) -> Self {
        NodeConfig {
            raft_listen: Some(raft_listen.into()),
            peers,
            ..NodeConfig::single(node_id, data_dir)
        }
    }

    /// The tick interval.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.max(1))
    }

    /// Checks the values and derives the peer settings.
    pub fn peer_config(&self) -> Result<PeerConfig> {
        if self.node_id == 0 {
            return Err(Error::Config("node_id must be non-zero".into()));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(Error::Config(
                "election_ticks must be greater than heartbeat_ticks > 0".into(),
            ));
        }
        let others = self.peers.keys().any(|&id| id != self.node_id);
        if others && self.raft_listen.is_none() {
            return Err(Error::Config("peers configured without raft_listen".into()));
        }
        let mut voters: Vec<u64> = if self.join {
            Vec::new()
        } else {
            self.peers.keys().copied().chain([self.node_id]).collect()
        };
        voters.sort_unstable();
        voters.dedup();
        let mut p = PeerConfig::new(self.node_id, self.data_dir.clone(), voters);
        p.election_tick = self.election_ticks;
        p.heartbeat_tick = self.heartbeat_ticks;
        p.snapshot_interval = self.snapshot_interval;
        p.snapshot_keep = self.snapshot_keep;
        p.pchannels = self.pchannels;
        Ok(p)
    }
}

/// Settings of one Raft peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Raft id of this node (non-zero).
    pub id: u64,
    /// Directory of the Raft files.
    pub data_dir: PathBuf,
    /// Voters of a new group, used only when `data_dir` holds no Raft files. Empty: this node
    /// joins an existing group, which must add it with a membership change.
    pub initial_voters: Vec<u64>,
    /// Ticks without a leader before an election (randomized in `[e, 2e)`).
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Applied entries between state-machine snapshots.
    pub snapshot_interval: u64,
    /// Entries kept before a snapshot for followers slightly behind.
    pub snapshot_keep: u64,
    /// pchannel pool size written by the automatic `InitCluster`.
    pub pchannels: u32,
    /// Whether the leader proposes `InitCluster` by itself when the state has no cluster.
    pub auto_init: bool,
    /// fsync log appends and hard-state writes. Turn off only in simulations, where a "crash"
    /// drops the process state but never the page cache.
    pub sync_writes: bool,
}

impl PeerConfig {
    /// Defaults for peer `id` storing its files in `data_dir`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>, initial_voters: Vec<u64>) -> Self {
        PeerConfig {
            id,
            data_dir: data_dir.into(),
            initial_voters,
            election_tick: 10,
            heartbeat_tick: 1,
            snapshot_interval: 10_000,
            snapshot_keep: 1_000,
            pchannels: 16,
            auto_init: true,
            sync_writes: true,
        }
    }
}
