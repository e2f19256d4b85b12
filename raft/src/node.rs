//! The broker's handle on the metadata store: [`MetadataStore`] starts the transport and the
//! driver thread (`driver.rs`) and offers async propose, linearizable reads, watches of
//! the applied state and of the Raft status, membership changes and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::command::{Command, CommandError, CommandResult};
use crate::config::NodeConfig;
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::forward::Forwarding;
use crate::peer::Peer;
use crate::state::MetadataState;
use crate::transport::{Transport, TransportEvent};

/// The Raft view of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub node_id: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Applied index (the state version).
    pub applied: u64,
    /// Voters, as applied.
    pub voters: Vec<u64>,
    /// Set when storage failed and the node stopped.
    pub failed: Option<String>,
    /// Commit index: entries up to it are on a quorum (KRaft's high watermark).
    pub commit: u64,
    /// Index of the last entry in this node's log.
    pub last_index: u64,
    /// On the leader, each voter's replication progress, sorted by node id; empty elsewhere.
    pub progress: Vec<VoterProgress>,
}

/// How far one voter's log matches the leader's, as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoterProgress {
    /// The voter.
    pub node_id: u64,
    /// Index up to which its durable log agrees with the leader's.
    pub matched: u64,
    /// Wall-clock time (ms since the epoch) of its last answer to the leader (append or
    /// heartbeat response); `None` for the leader itself and before any answer.
    pub last_contact_ms: Option<i64>,
    /// Wall-clock time of the last answer showing it had every entry the leader had then;
    /// `None` before any.
    pub last_caught_up_ms: Option<i64>,
}

/// One applied entry, as published by [`MetadataStore::changes`].
#[derive(Debug, Clone)]
pub struct Change {
    /// Version of the state that includes this entry.
    pub version: u64,
    /// The command, or `None` for Raft-internal entries (leader no-ops, membership changes).
    pub command: Option<Command>,
    /// What the state machine said.
    pub outcome: Result<CommandResult, CommandError>,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Request {
    Net(TransportEvent),
    Propose(Command, Reply<CommandResult>),
    Membership(u64, Option<String>, Reply<CommandResult>),
    Read(Reply<Arc<MetadataState>>),
    Stop,
}

impl From<TransportEvent> for Request {
    fn from(e: TransportEvent) -> Self {
        Request::Net(e)
    }
}

struct Inner {
    requests: std_mpsc::Sender<Request>,
    state: watch::Receiver<Arc<MetadataState>>,
    status: watch::Receiver<RaftStatus>,
    changes: broadcast::Sender<Change>,
    raft_addr: Option<SocketAddr>,
    timeout: Duration,
    /// Caps proposals made while this node does not lead (forwarded to the leader).
    forward_slots: Semaphore,
    thread: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    /// The last handle gone without `shutdown`: stop the driver and the transport anyway.
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
        let _ = self.shutdown.send(true);
    }
}

/// The broker's handle on the metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetadataStore {
    inner: Arc<Inner>,
}

impl MetadataStore {
    /// Opens the Raft files, binds `config.raft_listen` (if any) and starts the node. Must be
    /// called inside a tokio runtime.
    pub async fn start(config: NodeConfig, logger: slog::Logger) -> Result<MetadataStore> {
        let listener =
            match &config.raft_listen {
                Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                    Error::Config(format!("cannot bind raft listener {addr}: {e}"))
                })?),
                None => None,
            };
        Self::start_with_listener(config, listener, logger).await
    }

    /// Like [`MetadataStore::start`] with an already bound listener (tests bind `127.0.0.1:0`
    /// first to learn the addresses of all peers).
    pub async fn start_with_listener(
        config: NodeConfig,
        listener: Option<TcpListener>,
        logger: slog::Logger,
    ) -> Result<MetadataStore> {
        let peer_cfg = config.peer_config()?;
        let open_logger = logger.clone();
        let peer = tokio::task::spawn_blocking(move || Peer::open(peer_cfg, &open_logger))
            .await
            .map_err(|_| Error::Stopped)??;
        let (req_tx, req_rx) = std_mpsc::channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (ev_tx, ev_rx) = std_mpsc::channel::<TransportEvent>();
        let raft_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let transport = listener
            .map(|l| Transport::start(l, ev_tx, shutdown_rx, config.send_queue, logger.clone()));
        // Forward transport events into the driver's single queue.
        if transport.is_some() {
            let fwd = req_tx.clone();
            std::thread::Builder::new()
                .name(format!("sluice-raft-net-{}", config.node_id))
                .spawn(move || {
                    while let Ok(ev) = ev_rx.recv() {
                        if fwd.send(Request::from(ev)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::io("thread", e))?;
        }
        if let Some(t) = &transport {
            for (&id, addr) in &config.peers {
                if id != config.node_id {
                    t.set_peer(id, addr);
                }
            }
        }
        let mut peer = peer;
        if peer.voters() == [config.node_id] {
            // A single voter needs no election timeout: lead right away.
            peer.campaign()?;
        }
        let (state_tx, state_rx) = watch::channel(peer.state().clone());
        let (status_tx, status_rx) = watch::channel(RaftStatus::default());
        let (changes_tx, _) = broadcast::channel(4096);
        let mut driver = Driver {
            peer,
            transport,
            config: config.clone(),
            state_tx,
            status_tx,
            changes: changes_tx.clone(),
            proposals: HashMap::new(),
            reads: HashMap::new(),
            next_read: 1,
            ticks: 0,
            contacts: HashMap::new(),
            forwarding: Forwarding::new(),
            logger: logger.new(slog::o!("raft_node" => config.node_id)),
        };
        driver.publish();
        let thread = std::thread::Builder::new()
            .name(format!("sluice-raft-{}", config.node_id))
            .spawn(move || driver.run(req_rx))
            .map_err(|e| Error::io("thread", e))?;
        Ok(MetadataStore {
            inner: Arc::new(Inner {
                requests: req_tx,
                state: state_rx,
                status: status_rx,
                changes: changes_tx,
                raft_addr,
                timeout: Duration::from_millis(config.request_timeout_ms),
                forward_slots: Semaphore::new(config.max_forwarded.max(1)),
                thread: Mutex::new(Some(thread)),
                shutdown: shutdown_tx,
            }),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        self.call_by(Instant::now() + self.inner.timeout, make)
            .await
    }

    async fn call_by<T>(
        &self,
        deadline: Instant,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .requests
            .send(make(tx))
            .map_err(|_| Error::Stopped)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> Error {
        Error::Timeout(self.inner.timeout.as_millis() as u64)
    }

    /// Proposes `cmd` and resolves once it is applied **here**, so `state()` on this node
    /// then includes it. On a follower the command is forwarded to the leader (waiting for
    /// one to be known, up to the request timeout). A command known never to be applied (the
    /// leader changed before it entered the log, or another leader overwrote its entry) is
    /// sent again to whichever node leads next. Rejections by the state machine come back as
    /// [`Error::Rejected`]; [`Error::OutcomeUnknown`] when a snapshot replaced the log under
    /// it; [`Error::Timeout`] when no answer came in time (it may still be applied). At most
    /// `max_forwarded` proposals wait on the leader at once; more wait for a slot, within
    /// the same timeout.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult> {
        let deadline = Instant::now() + self.inner.timeout;
        let _slot = if self.inner.status.borrow().is_leader {
            None
        } else {
            let acquire = self.inner.forward_slots.acquire();
            match tokio::time::timeout_at(deadline, acquire).await {
                Ok(Ok(permit)) => Some(permit),
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(self.timed_out()),
            }
        };
        self.call_by(deadline, |tx| Request::Propose(cmd, tx)).await
    }

    /// A linearizable read (ReadIndex): the state includes every write acknowledged before
    /// the call. Works on followers too (the leader confirms the read index).
    pub async fn read(&self) -> Result<Arc<MetadataState>> {
        self.call(Request::Read).await
    }

    /// The locally applied state, possibly behind the leader.
    pub fn state(&self) -> Arc<MetadataState> {
        self.inner.state.borrow().clone()
    }

    /// A watch of the applied state; `changed()` fires on every new version.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.inner.state.clone()
    }

    /// Waits until the applied state reaches `version`.
    pub async fn wait_for_version(&self, version: u64) -> Result<Arc<MetadataState>> {
        let mut rx = self.inner.state.clone();
        let state = rx
            .wait_for(|s| s.version >= version)
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(state.clone())
    }

    /// Waits until the cluster is initialized (has a cluster id) in the applied state.
    pub async fn wait_initialized(&self) -> Result<Arc<MetadataState>> {
        let mut rx = self.inner.state.clone();
        let state = rx
            .wait_for(|s| s.cluster.is_some())
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(state.clone())
    }

    /// Every applied entry from now on, in order. A receiver that falls more than 4096
    /// entries behind gets `Lagged` and should re-read [`MetadataStore::state`].
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// The Raft status (leader, term, applied index, voters).
    pub fn status(&self) -> RaftStatus {
        self.inner.status.borrow().clone()
    }

    /// A watch of the Raft status.
    pub fn subscribe_status(&self) -> watch::Receiver<RaftStatus> {
        self.inner.status.clone()
    }

    /// Waits until this node knows a leader, and returns it.
    pub async fn wait_for_leader(&self) -> Result<u64> {
        let mut rx = self.inner.status.clone();
        let wait = rx.wait_for(|s| s.leader.is_some() || s.failed.is_some());
        let status = tokio::time::timeout(self.inner.timeout, wait)
            .await
            .map_err(|_| Error::Timeout(self.inner.timeout.as_millis() as u64))?
            .map_err(|_| Error::Stopped)?;
        status.leader.ok_or(Error::Stopped)
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<u64> {
        self.inner.status.borrow().leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.inner.status.borrow().term
    }

    /// The bound Raft listener address.
    pub fn raft_addr(&self) -> Option<SocketAddr> {
        self.inner.raft_addr
    }

    /// Adds voter `node_id` reachable at `addr` (run on the leader).
    pub async fn add_voter(&self, node_id: u64, addr: String) -> Result<CommandResult> {
        self.call(|tx| Request::Membership(node_id, Some(addr), tx))
            .await
    }

    /// Removes voter `node_id` (run on the leader).
    pub async fn remove_voter(&self, node_id: u64) -> Result<CommandResult> {
        self.call(|tx| Request::Membership(node_id, None, tx)).await
    }

    /// Stops the node: the driver thread ends after its current Ready, the transport closes.
    /// Pending requests fail with [`Error::Stopped`]. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.inner.requests.send(Request::Stop);
        let _ = self.inner.shutdown.send(true);
        let thread = self.inner.thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
