//! The driver thread of a node: it owns the [`Peer`], waits on one queue of API requests and
//! transport events with the tick as timeout, and after each batch handles the Ready, sends
//! messages, publishes the state and answers callers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use raft::eraftpb::MessageType;
use tokio::sync::{broadcast, watch};

use crate::command::{Command, CommandResult};
use crate::config::NodeConfig;
use crate::error::Error;
use crate::forward::{ForwardOutcome, Forwarding};
use crate::node::{Change, RaftStatus, Reply, Request, VoterProgress};
use crate::peer::{Peer, ProposalId, ReadId, ReadyOutput};
use crate::state::MetadataState;
use crate::transport::{Transport, TransportEvent};

pub(crate) struct Driver {
    pub(crate) peer: Peer,
    pub(crate) transport: Option<Transport>,
    pub(crate) config: NodeConfig,
    pub(crate) state_tx: watch::Sender<Arc<MetadataState>>,
    pub(crate) status_tx: watch::Sender<RaftStatus>,
    pub(crate) changes: broadcast::Sender<Change>,
    /// Proposals made here; commands kept so that one overwritten by another leader (never
    /// applied) is sent again rather than failed. Membership changes keep none.
    pub(crate) proposals: HashMap<ProposalId, (Reply<CommandResult>, Option<Command>)>,
    pub(crate) reads: HashMap<ReadId, (Reply<Arc<MetadataState>>, u64)>,
    pub(crate) next_read: ReadId,
    pub(crate) ticks: u64,
    /// On the leader: when each voter last answered, and last answered fully caught up.
    pub(crate) contacts: HashMap<u64, Contact>,
    pub(crate) forwarding: Forwarding,
    pub(crate) logger: slog::Logger,
}

/// Wall-clock times (ms since the epoch) the leader saw a voter answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Contact {
    last: i64,
    caught_up: Option<i64>,
}

/// Requests handled per loop turn before the Ready is processed (bounds batch latency).
const MAX_BATCH: usize = 4096;
/// Ticks after which an unanswered ReadIndex is asked again.
const READ_RETRY_TICKS: u64 = 3;

impl Driver {
    pub(crate) fn run(mut self, rx: std_mpsc::Receiver<Request>) {
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
            Request::Net(TransportEvent::Message(m)) => {
                let (from, kind) = (m.from, m.get_msg_type());
                self.peer.step(*m);
                if matches!(
                    kind,
                    MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
                ) {
                    self.note_contact(from);
                }
            }
            Request::Net(TransportEvent::Unreachable(id)) => self.peer.report_unreachable(id),
            Request::Net(TransportEvent::SnapshotSent(id, ok)) => self.peer.report_snapshot(id, ok),
            Request::Net(TransportEvent::Forward(m)) => self.on_forward(*m),
            Request::Net(TransportEvent::ForwardUnsent { to, id }) => {
                self.on_forward_unsent(to, id)
            }
            Request::Propose(cmd, tx) => self.propose_local(cmd, tx),
            Request::Membership(node, addr, tx) => {
                if let (Some(a), Some(t)) = (&addr, &self.transport) {
                    t.set_peer(node, a);
                }
                match self.peer.propose_membership(node, addr) {
                    Ok(id) => {
                        self.proposals.insert(id, (tx, None));
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
        self.proposals.retain(|_, (tx, _)| !tx.is_closed());
        self.tick_forwards();
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
        // Order matters: the change feed, the status and the state are published before
        // anyone is answered, so a caller sees its own write in `state()`, and whoever sees
        // version v in the state and then subscribes to `changes()` misses nothing after v.
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
            if let Some((tx, _)) = self.proposals.remove(&a.proposal) {
                let _ = tx.send(a.outcome.map_err(Error::Rejected));
            } else {
                let outcome = ForwardOutcome::Applied {
                    index: a.index,
                    result: a.outcome,
                };
                self.resolve_served(a.proposal, outcome);
            }
        }
        for id in out.dropped {
            if let Some((tx, cmd)) = self.proposals.remove(&id) {
                match cmd {
                    Some(cmd) => self.forward(cmd, tx),
                    None => {
                        let _ = tx.send(Err(Error::ProposalDropped));
                    }
                }
            } else {
                self.resolve_served(id, ForwardOutcome::Dropped);
            }
        }
        for id in out.unknown {
            if let Some((tx, _)) = self.proposals.remove(&id) {
                let _ = tx.send(Err(Error::OutcomeUnknown));
            } else {
                self.resolve_served(id, ForwardOutcome::Unknown);
            }
        }
        self.settle_forwards(out.originated, out.snapshot_term);
        for id in out.reads {
            if let Some((tx, _)) = self.reads.remove(&id) {
                let _ = tx.send(Ok(self.peer.state().clone()));
            }
        }
    }

    /// Records that voter `from` answered the leader now, and whether it had everything.
    fn note_contact(&mut self, from: u64) {
        if !self.peer.is_leader() {
            return;
        }
        let last_index = self.peer.last_index();
        let Some(&(_, matched)) = self.peer.progress().iter().find(|(id, _)| *id == from) else {
            return;
        };
        let now = now_ms();
        let contact = self.contacts.entry(from).or_default();
        contact.last = now;
        if matched >= last_index {
            contact.caught_up = Some(now);
        }
    }

    pub(crate) fn publish(&mut self) {
        let progress = self.peer.progress();
        if progress.is_empty() {
            // Contacts belong to one leadership; a later one starts afresh.
            self.contacts.clear();
        }
        let me = self.peer.id();
        let progress = progress
            .into_iter()
            .map(|(node_id, matched)| {
                let contact = self.contacts.get(&node_id).copied();
                VoterProgress {
                    node_id,
                    matched,
                    last_contact_ms: contact.map(|c| c.last).filter(|_| node_id != me),
                    last_caught_up_ms: contact.and_then(|c| c.caught_up),
                }
            })
            .collect();
        let status = RaftStatus {
            node_id: me,
            leader: self.peer.leader(),
            term: self.peer.term(),
            is_leader: self.peer.is_leader(),
            applied: self.peer.state().version,
            voters: self.peer.voters(),
            failed: None,
            commit: self.peer.commit_index(),
            last_index: self.peer.last_index(),
            progress,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
