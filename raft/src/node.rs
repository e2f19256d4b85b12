//! The node runtime and the broker's handle: a dedicated thread drives a [`Peer`] (ticks,
//! messages, Ready handling with fsync), a tokio transport carries messages, and
//! [`MetadataStore`] offers async propose, linearizable reads and watches of applied state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raft::eraftpb::MessageType;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot, watch};

use crate::command::{Command, CommandError, CommandResult};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::peer::{Peer, ProposalId, ReadId, ReadyOutput};
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

type Reply<T> = oneshot::Sender<Result<T>>;

enum Request {
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
    thread: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<bool>,
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
        let listener = match &config.raft_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::Config(format!("cannot bind raft listener {addr}: {e}")))?,
            ),
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
        let transport = listener.map(|l| {
            Transport::start(l, ev_tx, shutdown_rx, config.send_queue, logger.clone())
        });
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
                thread: Mutex::new(Some(thread)),
                shutdown: shutdown_tx,
            }),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .requests
            .send(make(tx))
            .map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout(self.inner.timeout.as_millis() as u64)),
        }
    }

    /// Proposes `cmd` on the leader and resolves once it is applied here. Rejections by the
    /// state machine come back as [`Error::Rejected`]; on a follower, [`Error::NotLeader`].
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult> {
        self.call(|tx| Request::Propose(cmd, tx)).await
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
        self.call(|tx| Request::Membership(node_id, Some(addr), tx)).await
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

struct Driver {
    peer: Peer,
    transport: Option<Transport>,
    config: NodeConfig,
    state_tx: watch::Sender<Arc<MetadataState>>,
    status_tx: watch::Sender<RaftStatus>,
    changes: broadcast::Sender<Change>,
    proposals: HashMap<ProposalId, Reply<CommandResult>>,
    reads: HashMap<ReadId, (Reply<Arc<MetadataState>>, u64)>,
    next_read: ReadId,
    ticks: u64,
    logger: slog::Logger,
}

/// Requests handled per loop turn before the Ready is processed (bounds batch latency).
const MAX_BATCH: usize = 4096;
/// Ticks after which an unanswered ReadIndex is asked again.
const READ_RETRY_TICKS: u64 = 3;

impl Driver {
    fn run(mut self, rx: std_mpsc::Receiver<Request>) {
        let tick = self.config.tick();
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut stop = match rx.recv_timeout(wait) {
                Ok(req) => self.handle(req),
                Err(std_mpsc::RecvTimeoutError::Timeout) => false,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => true,
            };
            let mut n = 0;
            while !stop && n < MAX_BATCH {
                match rx.try_recv() {
                    Ok(req) => stop = self.handle(req),
                    Err(_) => break,
                }
                n += 1;
            }
            if stop {
                break;
            }
            if Instant::now() >= next_tick {
                next_tick += tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + tick;
                }
                self.on_tick();
            }
            match self.peer.handle_ready() {
                Ok(out) => self.dispatch(out),
                Err(e) => {
                    slog::crit!(self.logger, "raft storage failed; stopping the node"; "error" => %e);
                    let reason = e.to_string();
                    self.status_tx.send_modify(|s| s.failed = Some(reason));
                    break;
                }
            }
        }
        // Dropping the pending replies fails them with `Stopped`.
        slog::info!(self.logger, "raft node stopped");
    }

    fn handle(&mut self, req: Request) -> bool {
        match req {
            Request::Net(TransportEvent::Message(m)) => self.peer.step(*m),
            Request::Net(TransportEvent::Unreachable(id)) => self.peer.report_unreachable(id),
            Request::Net(TransportEvent::SnapshotSent(id, ok)) => self.peer.report_snapshot(id, ok),
            Request::Propose(cmd, tx) => match self.peer.propose(&cmd) {
                Ok(id) => {
                    self.proposals.insert(id, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
            Request::Membership(node, addr, tx) => {
                if let (Some(a), Some(t)) = (&addr, &self.transport) {
                    t.set_peer(node, a);
                }
                match self.peer.propose_membership(node, addr) {
                    Ok(id) => {
                        self.proposals.insert(id, tx);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            Request::Read(tx) => {
                if self.peer.leader().is_none() {
                    let _ = tx.send(Err(Error::NotLeader { leader: None }));
                } else {
                    let id = self.next_read;
                    self.next_read += 1;
                    self.peer.read_index(id);
                    self.reads.insert(id, (tx, self.ticks));
                }
            }
            Request::Stop => return true,
        }
        false
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        self.peer.tick();
        self.proposals.retain(|_, tx| !tx.is_closed());
        let ticks = self.ticks;
        let mut retry = Vec::new();
        self.reads.retain(|&id, (tx, issued)| {
            if tx.is_closed() {
                return false;
            }
            if ticks - *issued >= READ_RETRY_TICKS {
                *issued = ticks;
                retry.push(id);
            }
            true
        });
        for id in retry {
            self.peer.read_index(id);
        }
    }

    fn dispatch(&mut self, out: ReadyOutput) {
        if let Some(t) = &self.transport {
            for m in out.messages {
                let (to, snapshot) = (m.to, m.get_msg_type() == MessageType::MsgSnapshot);
                if !t.send(m) {
                    self.peer.report_unreachable(to);
                    if snapshot {
                        self.peer.report_snapshot(to, false);
                    }
                }
            }
        }
        // Publish the state before answering, so a caller sees its own write in `state()`.
        if out.state_changed {
            let state = self.peer.state().clone();
            if let Some(t) = &self.transport {
                for (&id, addr) in &state.raft_peers {
                    if id != self.config.node_id {
                        t.set_peer(id, addr);
                    }
                }
            }
            self.state_tx.send_replace(state);
        }
        for a in out.applied {
            if let Some(tx) = self.proposals.remove(&a.proposal) {
                let _ = tx.send(a.outcome.map_err(Error::Rejected));
            }
        }
        for id in out.dropped {
            if let Some(tx) = self.proposals.remove(&id) {
                let _ = tx.send(Err(Error::ProposalDropped));
            }
        }
        for id in out.unknown {
            if let Some(tx) = self.proposals.remove(&id) {
                let _ = tx.send(Err(Error::OutcomeUnknown));
            }
        }
        for id in out.reads {
            if let Some((tx, _)) = self.reads.remove(&id) {
                let _ = tx.send(Ok(self.peer.state().clone()));
            }
        }
        if self.changes.receiver_count() > 0 {
            for (version, command, outcome) in out.log {
                let _ = self.changes.send(Change {
                    version,
                    command,
                    outcome,
                });
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let status = RaftStatus {
            node_id: self.peer.id(),
            leader: self.peer.leader(),
            term: self.peer.term(),
            is_leader: self.peer.is_leader(),
            applied: self.peer.state().version,
            voters: self.peer.voters(),
            failed: None,
        };
        self.status_tx.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }
}
