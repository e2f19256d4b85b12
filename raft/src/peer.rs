//! The synchronous core of a node: a raft-rs `RawNode` over [`DiskStorage`] and the metadata
//! state machine. No sockets, threads or clocks: the caller ticks it, steps messages into it,
//! and calls [`Peer::handle_ready`], which persists, applies, and returns what to send. The
//! runtime in [`crate::node`] drives it over TCP; tests drive it over a simulated network.

use std::collections::BTreeMap;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message,
};
use raft::{Config, RawNode, StateRole, Storage as _};
use uuid::Uuid;

use crate::command::{Command, CommandError, CommandResult};
pub use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::snapshot;
use crate::state::MetadataState;
use crate::storage::DiskStorage;

/// Identifies a proposal made through one [`Peer`].
pub type ProposalId = u64;
/// Identifies a linearizable read requested through one [`Peer`].
pub type ReadId = u64;

/// The result of an applied entry that this peer proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The proposal.
    pub proposal: ProposalId,
    /// Raft index of the entry (the state version that includes it).
    pub index: u64,
    /// What the state machine said.
    pub outcome: Result<CommandResult, CommandError>,
}

/// What one [`Peer::handle_ready`] produced.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// Messages to send to other peers (already safe to send: everything is persisted).
    pub messages: Vec<Message>,
    /// Outcomes of this peer's proposals that were applied.
    pub applied: Vec<Applied>,
    /// This peer's proposals that were replaced by another leader's entries.
    pub dropped: Vec<ProposalId>,
    /// This peer's proposals whose fate is unknown (a snapshot replaced the log under them).
    pub unknown: Vec<ProposalId>,
    /// Reads that may now be served from the applied state.
    pub reads: Vec<ReadId>,
    /// Every applied entry `(index, command or None for internal entries, outcome)`, in order.
    pub log: Vec<(u64, Option<Command>, Result<CommandResult, CommandError>)>,
    /// Whether the state changed (entries applied or snapshot installed).
    pub state_changed: bool,
    /// Applied entries that this peer originated through another leader
    /// ([`Peer::propose_for`] on that leader), by the id this peer gave them.
    pub originated: Vec<Applied>,
    /// The term of a snapshot installed by this Ready: entries up to it were not seen.
    pub snapshot_term: Option<u64>,
}

/// One Raft peer with its state machine.
pub struct Peer {
    raw: RawNode<DiskStorage>,
    cfg: PeerConfig,
    state: Arc<MetadataState>,
    conf: ConfState,
    next_id: u64,
    /// Index → (proposal, the entry context expected at that index).
    pending: BTreeMap<u64, (ProposalId, Vec<u8>)>,
    /// Term of the last applied entry (or of the snapshot the state was restored from).
    applied_term: u64,
    reads: Vec<(ReadId, u64)>,
    init_proposed_term: u64,
    /// Set by a membership change: raft-rs refuses a snapshot whose conf state lacks the
    /// receiver, so a node added after the last snapshot needs a new one.
    snapshot_due: bool,
    logger: slog::Logger,
}

fn tag(node: u64, id: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&node.to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v
}

fn untag(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    Some((
        u64::from_le_bytes(ctx[0..8].try_into().ok()?),
        u64::from_le_bytes(ctx[8..16].try_into().ok()?),
    ))
}

impl Peer {
    /// Opens (or creates) the peer's storage and restores the state machine from its snapshot.
    pub fn open(cfg: PeerConfig, logger: &slog::Logger) -> Result<Peer> {
        if cfg.id == 0 {
            return Err(Error::Config("node id must be non-zero".into()));
        }
        let mut voters = cfg.initial_voters.clone();
        voters.sort_unstable();
        voters.dedup();
        let conf = ConfState::from((voters, Vec::<u64>::new()));
        let (storage, _fresh) =
            DiskStorage::open(&cfg.data_dir, &conf, &[], cfg.sync_writes, logger)?;
        let snap = storage.latest_snapshot();
        let mut state = snapshot::decode(&snap.data).map_err(|e| match e {
            Error::Codec(reason) => Error::corrupt(
                storage.dir().join(crate::storage::files::SNAPSHOT_FILE),
                reason,
            ),
            e => e,
        })?;
        state.version = state.version.max(snap.get_metadata().index);
        let applied_term = snap.get_metadata().term;
        let conf = snap.get_metadata().get_conf_state().clone();
        let raft_cfg = Config {
            id: cfg.id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied: snap.get_metadata().index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let logger = logger.new(slog::o!("raft_id" => cfg.id));
        let raw = RawNode::new(&raft_cfg, storage, &logger)?;
        Ok(Peer {
            raw,
            cfg,
            state: Arc::new(state),
            conf,
            // Unique per incarnation, so ids are never reused across restarts.
            next_id: Uuid::new_v4().as_u64_pair().0 >> 1,
            pending: BTreeMap::new(),
            applied_term,
            reads: Vec::new(),
            init_proposed_term: 0,
            snapshot_due: false,
            logger,
        })
    }

    /// This peer's Raft id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The applied state.
    pub fn state(&self) -> &Arc<MetadataState> {
        &self.state
    }

    /// The leader this peer knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != 0)
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Whether this peer is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Current voters (as applied), sorted.
    pub fn voters(&self) -> Vec<u64> {
        let mut v = self.conf.voters.clone();
        v.sort_unstable();
        v
    }

    /// Term of the last applied entry: once it passes the term in which a leader accepted
    /// an entry, that entry is either applied already or will never be (Raft §5.4).
    pub fn applied_term(&self) -> u64 {
        self.applied_term
    }

    /// Index of the latest snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.raw.store().latest_snapshot().get_metadata().index
    }

    /// Index of the first entry still in the log.
    pub fn first_index(&self) -> u64 {
        self.raw.store().first_index().unwrap_or(0)
    }

    /// Index of the last entry in this peer's log.
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// The commit index: entries up to it are on a quorum and will be applied everywhere.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// On the leader, each voter's matched index (how far its durable log agrees with the
    /// leader's; the leader's own entry counts what it has persisted), sorted by node id.
    /// Empty on other peers: only the leader tracks progress.
    pub fn progress(&self) -> Vec<(u64, u64)> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut out: Vec<(u64, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| self.conf.voters.contains(id))
            .map(|(&id, p)| (id, p.matched))
            .collect();
        out.sort_unstable();
        out
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Starts an election now (tests and leadership transfer).
    pub fn campaign(&mut self) -> Result<()> {
        Ok(self.raw.campaign()?)
    }

    /// Steps a message from another peer. Messages for another node, or that raft-rs
    /// rejects, are dropped with a debug log.
    pub fn step(&mut self, msg: Message) {
        if msg.to != self.cfg.id {
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            slog::debug!(self.logger, "dropped raft message"; "error" => %e);
        }
    }

    /// Tells raft-rs that a peer could not be reached.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Tells raft-rs whether a snapshot message reached peer `id`. Transports must call this
    /// for every `MsgSnapshot`, or the leader waits for that follower forever.
    pub fn report_snapshot(&mut self, id: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(id, status);
    }

    fn check_leader(&self) -> Result<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader {
                leader: self.leader(),
            })
        }
    }

    /// A fresh id, unique in this incarnation, shared by proposals and forwarded requests.
    pub fn next_proposal(&mut self) -> ProposalId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Proposes a command; its outcome comes out of a later `handle_ready` as [`Applied`].
    pub fn propose(&mut self, cmd: &Command) -> Result<ProposalId> {
        self.propose_tagged(cmd, self.cfg.id, None)
    }

    /// Proposes a command forwarded by peer `origin` as its request `id`, tagged so that
    /// `origin` recognizes it when applying it ([`ReadyOutput::originated`]).
    pub fn propose_for(&mut self, cmd: &Command, origin: u64, id: u64) -> Result<ProposalId> {
        self.propose_tagged(cmd, origin, Some(id))
    }

    fn propose_tagged(&mut self, cmd: &Command, node: u64, id: Option<u64>) -> Result<ProposalId> {
        self.check_leader()?;
        let pid = self.next_proposal();
        let ctx = tag(node, id.unwrap_or(pid));
        self.raw
            .propose(ctx.clone(), cmd.encode())
            .map_err(|_| Error::NotLeader {
                leader: self.leader(),
            })?;
        let index = self.raw.raft.raft_log.last_index();
        self.pending.insert(index, (pid, ctx));
        Ok(pid)
    }

    /// Proposes adding (`Some(addr)`) or removing (`None`) voter `node`.
    pub fn propose_membership(&mut self, node: u64, addr: Option<String>) -> Result<ProposalId> {
        self.check_leader()?;
        let id = self.next_proposal();
        let ctx = tag(self.cfg.id, id);
        let mut cc = ConfChangeV2::default();
        let kind = if addr.is_some() {
            ConfChangeType::AddNode
        } else {
            ConfChangeType::RemoveNode
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = node;
        cc.mut_changes().push(single);
        cc.context = addr.unwrap_or_default().into_bytes().into();
        self.raw
            .propose_conf_change(ctx.clone(), cc)
            .map_err(|e| Error::Rejected(CommandError::InvalidMembership(e.to_string())))?;
        self.pending
            .insert(self.raw.raft.raft_log.last_index(), (id, ctx));
        Ok(id)
    }

    /// Asks for a linearizable read (ReadIndex); it comes out of a later `handle_ready` in
    /// [`ReadyOutput::reads`] once the applied state is recent enough. raft-rs may drop the
    /// request (no leader yet); callers retry with the same id.
    pub fn read_index(&mut self, id: ReadId) {
        self.raw.read_index(id.to_le_bytes().to_vec());
    }

    /// Persists, applies and collects everything raft-rs has ready, in the order raft-rs
    /// requires. An error is a storage failure: the peer must not be used afterwards.
    pub fn handle_ready(&mut self) -> Result<ReadyOutput> {
        let mut out = ReadyOutput::default();
        if self.is_leader()
            && self.cfg.auto_init
            && self.state.cluster.is_none()
            && self.init_proposed_term != self.term()
        {
            self.init_proposed_term = self.term();
            let cmd = Command::InitCluster {
                cluster_id: Uuid::new_v4(),
                pchannels: self.cfg.pchannels,
            };
            // Not tracked as a pending proposal: whichever InitCluster commits first wins.
            let _ = self.raw.propose(Vec::new(), cmd.encode());
        }
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut rd = self.raw.ready();
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone(), &mut out)?;
        }
        self.apply_entries(rd.take_committed_entries(), &mut out)?;
        self.raw.mut_store().append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        for rs in rd.take_read_states() {
            if let Ok(ctx) = <[u8; 8]>::try_from(&rs.request_ctx[..]) {
                self.reads.push((u64::from_le_bytes(ctx), rs.index));
            }
        }
        out.messages.extend(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.apply_entries(light.take_committed_entries(), &mut out)?;
        self.raw.advance_apply();
        let applied = self.state.version;
        self.reads.retain(|&(id, index)| {
            if index <= applied {
                out.reads.push(id);
                false
            } else {
                true
            }
        });
        self.maybe_snapshot()?;
        Ok(out)
    }

    fn install_snapshot(
        &mut self,
        snap: raft::eraftpb::Snapshot,
        out: &mut ReadyOutput,
    ) -> Result<()> {
        let meta = snap.get_metadata().clone();
        let state = snapshot::decode(&snap.data)?;
        self.raw.mut_store().apply_snapshot(&snap)?;
        slog::info!(self.logger, "installed raft snapshot"; "index" => meta.index, "term" => meta.term);
        self.state = Arc::new(state);
        self.applied_term = meta.term;
        out.snapshot_term = Some(meta.term);
        self.conf = meta.get_conf_state().clone();
        let rest = self.pending.split_off(&(meta.index + 1));
        let replaced = std::mem::replace(&mut self.pending, rest);
        out.unknown.extend(replaced.into_values().map(|(p, _)| p));
        out.state_changed = true;
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut ReadyOutput) -> Result<()> {
        for entry in entries {
            if entry.index <= self.state.version {
                continue;
            }
            out.state_changed = true;
            self.applied_term = entry.term;
            let (cmd, outcome) = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    Arc::make_mut(&mut self.state).version = entry.index;
                    (None, Ok(CommandResult::Done))
                }
                EntryType::EntryNormal => {
                    let state = Arc::make_mut(&mut self.state);
                    match Command::decode(&entry.data) {
                        Ok(cmd) => {
                            let r = state.apply(entry.index, &cmd);
                            (Some(cmd), r)
                        }
                        Err(e) => {
                            state.version = entry.index;
                            (None, Err(e))
                        }
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    (None, self.apply_conf_change(&entry))
                }
            };
            match self.pending.remove(&entry.index) {
                Some((p, ctx)) if ctx == entry.context => {
                    out.applied.push(Applied {
                        proposal: p,
                        index: entry.index,
                        outcome: outcome.clone(),
                    });
                }
                Some((p, _)) => out.dropped.push(p),
                None => match untag(&entry.context) {
                    // Forwarded by this peer and proposed by another leader.
                    Some((node, id)) if node == self.cfg.id => out.originated.push(Applied {
                        proposal: id,
                        index: entry.index,
                        outcome: outcome.clone(),
                    }),
                    _ => {}
                },
            }
            out.log.push((entry.index, cmd, outcome));
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: &Entry) -> Result<CommandResult, CommandError> {
        let state = Arc::make_mut(&mut self.state);
        state.version = entry.index;
        let cc = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            ConfChangeV2::parse_from_bytes(&entry.data)
                .map_err(|e| CommandError::Undecodable(e.to_string()))?
        } else {
            let old = raft::eraftpb::ConfChange::parse_from_bytes(&entry.data)
                .map_err(|e| CommandError::Undecodable(e.to_string()))?;
            let mut single = ConfChangeSingle::default();
            single.set_change_type(old.get_change_type());
            single.node_id = old.node_id;
            let mut cc = ConfChangeV2::default();
            cc.mut_changes().push(single);
            cc.context = old.context;
            cc
        };
        let cs = self
            .raw
            .apply_conf_change(&cc)
            .map_err(|e| CommandError::InvalidMembership(e.to_string()))?;
        let state = Arc::make_mut(&mut self.state);
        for change in cc.get_changes() {
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let addr = String::from_utf8_lossy(&cc.context).into_owned();
                    if !addr.is_empty() {
                        state.raft_peers.insert(change.node_id, addr);
                    }
                }
                ConfChangeType::RemoveNode => {
                    state.raft_peers.remove(&change.node_id);
                }
            }
        }
        self.conf = cs;
        self.snapshot_due = true;
        Ok(CommandResult::MembershipChanged {
            voters: self.voters(),
        })
    }

    fn maybe_snapshot(&mut self) -> Result<()> {
        let applied = self.state.version;
        if !self.snapshot_due && applied < self.snapshot_index() + self.cfg.snapshot_interval.max(1)
        {
            return Ok(());
        }
        self.snapshot_due = false;
        self.snapshot_now()
    }

    /// Snapshots the applied state now and compacts the log.
    pub fn snapshot_now(&mut self) -> Result<()> {
        let applied = self.state.version;
        let data = snapshot::encode(&self.state);
        let conf = self.conf.clone();
        let keep = self.cfg.snapshot_keep;
        self.raw
            .mut_store()
            .create_snapshot(applied, &conf, data, keep)
    }
}
