//! Proposal forwarding (as Kafka forwards to the controller, KIP-590): `propose` on a follower
//! travels to the leader as a forwarding frame on the Raft TCP connections, the leader proposes
//! it and answers with the outcome once applied, and the follower answers its caller once its
//! own applied state has reached that entry. This module owns the wire messages and both
//! sides' bookkeeping in the driver thread.
//!
//! The leader proposes a forwarded command only in the term the follower saw it lead, and tags
//! the entry with the follower's id and request id, so the follower recognizes the entry when
//! it applies it, whoever answers. A command is sent again (to whichever node leads next) only
//! when it is known not to be applied and never to be: the leader refused it (`NotLeader`),
//! another leader overwrote it (`Dropped`), the transport never wrote the request, or the
//! follower applied an entry of a later term without meeting it (Raft's log matching: a
//! later-term entry is committed only after every entry that will ever precede it). Only a
//! snapshot installed here over it leaves the outcome unknown ([`Error::OutcomeUnknown`]); no
//! answer in time is [`Error::Timeout`]. A command is never applied twice silently.

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, CommandResult};
use crate::driver::Driver;
use crate::error::Error;
use crate::node::Reply;
use crate::peer::{Applied, ProposalId};

/// Format version carried by every forwarding message.
pub const FORWARD_FORMAT_VERSION: u32 = 1;

/// A forwarding message between two nodes (JSON in a forwarding frame, see `transport.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardMsg {
    /// [`FORWARD_FORMAT_VERSION`]; a message of another version is dropped.
    pub version: u32,
    /// Sender's node id (responses are routed back to it).
    pub from: u64,
    /// Receiver's node id.
    pub to: u64,
    /// Request or response.
    pub body: ForwardBody,
}

/// The two kinds of forwarding message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForwardBody {
    /// Follower → leader: propose `command`.
    Request {
        /// Chosen by the follower, unique per incarnation.
        id: u64,
        /// The term in which the follower saw the receiver lead: the receiver proposes only
        /// in that term.
        term: u64,
        /// The command to propose.
        command: Command,
    },
    /// Leader → follower: what became of request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// Its outcome.
        outcome: ForwardOutcome,
    },
}

/// What the leader says about a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ForwardOutcome {
    /// Applied at `index` with this result (a rejection is a result too).
    Applied {
        /// Raft index of the entry: the state version that includes it.
        index: u64,
        /// What the state machine said.
        result: Result<CommandResult, CommandError>,
    },
    /// The receiver does not lead; the command was not proposed.
    NotLeader {
        /// The leader the receiver knows of.
        leader: Option<u64>,
    },
    /// Another leader overwrote the entry: it was not applied.
    Dropped,
    /// A snapshot replaced the leader's log under the entry: the leader cannot tell (the
    /// follower then settles it from its own log).
    Unknown,
}

impl ForwardMsg {
    /// Encodes the message as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a message received from the network.
    pub fn decode(body: &[u8]) -> Result<ForwardMsg, Error> {
        let msg: ForwardMsg =
            serde_json::from_slice(body).map_err(|e| Error::Codec(e.to_string()))?;
        if msg.version != FORWARD_FORMAT_VERSION {
            return Err(Error::Codec(format!(
                "forwarding format version {} (this build speaks {FORWARD_FORMAT_VERSION})",
                msg.version
            )));
        }
        Ok(msg)
    }
}

/// A follower's proposal on its way to the leader.
pub(crate) struct Forward {
    command: Command,
    reply: Reply<CommandResult>,
    stage: Stage,
}

enum Stage {
    /// Not in any leader's hands: sent (again) once a leader is known, from tick `not_before`.
    Waiting { not_before: u64 },
    /// Written to `leader`'s connection, to be proposed in `term` if at all.
    Sent { leader: u64, term: u64 },
}

/// Both sides' forwarding state, owned by the driver thread.
#[derive(Default)]
pub(crate) struct Forwarding {
    /// Follower side: requests by id.
    forwards: std::collections::HashMap<u64, Forward>,
    /// Follower side: answered by the leader, waiting for this node to apply `index`.
    awaiting_apply: Vec<(
        u64,
        Reply<CommandResult>,
        Result<CommandResult, CommandError>,
    )>,
    /// Leader side: proposals made for another node: `(node, request id, tick proposed)`.
    served: std::collections::HashMap<ProposalId, (u64, u64, u64)>,
}

impl Forwarding {
    /// Request ids come from [`crate::Peer::next_proposal`]: unique per incarnation, so a
    /// late answer meant for a previous process is never matched.
    pub(crate) fn new() -> Self {
        Forwarding::default()
    }
}

impl Driver {
    /// A `propose` this node cannot serve itself: queue it for the leader.
    pub(crate) fn forward(&mut self, command: Command, reply: Reply<CommandResult>) {
        self.enqueue_forward(command, reply, 0);
        self.pump_forwards();
    }

    fn enqueue_forward(&mut self, command: Command, reply: Reply<CommandResult>, not_before: u64) {
        if self.transport.is_none() {
            let _ = reply.send(Err(Error::NotLeader {
                leader: self.peer.leader(),
            }));
            return;
        }
        let id = self.peer.next_proposal();
        let f = &mut self.forwarding;
        let stage = Stage::Waiting { not_before };
        f.forwards.insert(
            id,
            Forward {
                command,
                reply,
                stage,
            },
        );
    }

    /// Sends waiting requests to the leader, or proposes them here if this node now leads.
    pub(crate) fn pump_forwards(&mut self) {
        let ticks = self.ticks;
        let ready: Vec<u64> = self
            .forwarding
            .forwards
            .iter()
            .filter(
                |(_, f)| matches!(f.stage, Stage::Waiting { not_before } if not_before <= ticks),
            )
            .map(|(&id, _)| id)
            .collect();
        if ready.is_empty() {
            return;
        }
        let Some(leader) = self.peer.leader() else {
            return;
        };
        let (me, term) = (self.peer.id(), self.peer.term());
        for old in ready {
            let Some(mut f) = self.forwarding.forwards.remove(&old) else {
                continue;
            };
            if self.peer.is_leader() {
                self.propose_local(f.command, f.reply);
                continue;
            }
            // Every attempt has its own id: a late answer to an earlier attempt (or a late
            // report that it was not sent) can never be taken for this one.
            let id = self.peer.next_proposal();
            let msg = ForwardMsg {
                version: FORWARD_FORMAT_VERSION,
                from: me,
                to: leader,
                body: ForwardBody::Request {
                    id,
                    term,
                    command: f.command.clone(),
                },
            };
            let sent = self.transport.as_ref().is_some_and(|t| t.forward(msg));
            f.stage = if sent {
                Stage::Sent { leader, term }
            } else {
                Stage::Waiting {
                    not_before: ticks + 1,
                }
            };
            self.forwarding.forwards.insert(id, f);
        }
    }

    /// Proposes on this node, the leader; if it stopped leading meanwhile, forwards instead.
    pub(crate) fn propose_local(&mut self, command: Command, reply: Reply<CommandResult>) {
        if !self.peer.is_leader() {
            return self.forward(command, reply);
        }
        match self.peer.propose(&command) {
            Ok(id) => {
                self.proposals.insert(id, (reply, Some(command)));
            }
            // raft-rs refused it (leadership moving): not in the log, so try again next tick.
            Err(Error::NotLeader { .. }) => {
                let not_before = self.ticks + 1;
                self.enqueue_forward(command, reply, not_before)
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The transport never wrote request `id` to `to`: it is safe to send it again.
    pub(crate) fn on_forward_unsent(&mut self, to: u64, id: u64) {
        let ticks = self.ticks;
        if let Some(f) = self.forwarding.forwards.get_mut(&id)
            && matches!(f.stage, Stage::Sent { leader, .. } if leader == to)
        {
            f.stage = Stage::Waiting {
                not_before: ticks + 1,
            };
        }
    }

    /// A forwarding message arrived.
    pub(crate) fn on_forward(&mut self, msg: ForwardMsg) {
        if msg.to != self.peer.id() {
            return;
        }
        match msg.body {
            ForwardBody::Request { id, term, command } => self.serve(msg.from, id, term, command),
            ForwardBody::Response { id, outcome } => self.on_response(msg.from, id, outcome),
        }
    }

    /// Leader side: propose a follower's command, or tell it this node does not lead.
    fn serve(&mut self, from: u64, id: u64, term: u64, command: Command) {
        let result = if self.peer.is_leader() && self.peer.term() == term {
            self.peer.propose_for(&command, from, id)
        } else {
            Err(Error::NotLeader {
                leader: self.peer.leader(),
            })
        };
        match result {
            Ok(pid) => {
                self.forwarding.served.insert(pid, (from, id, self.ticks));
            }
            Err(_) => {
                let leader = self.peer.leader();
                self.respond(from, id, ForwardOutcome::NotLeader { leader });
            }
        }
    }

    fn respond(&self, to: u64, id: u64, outcome: ForwardOutcome) {
        let msg = ForwardMsg {
            version: FORWARD_FORMAT_VERSION,
            from: self.peer.id(),
            to,
            body: ForwardBody::Response { id, outcome },
        };
        // A lost answer is harmless: the follower learns the outcome from its own log.
        if let Some(t) = &self.transport {
            t.forward(msg);
        }
    }

    /// Leader side: answers the follower, if `proposal` was made for one.
    pub(crate) fn resolve_served(&mut self, proposal: ProposalId, outcome: ForwardOutcome) {
        if let Some((from, id, _)) = self.forwarding.served.remove(&proposal) {
            self.respond(from, id, outcome);
        }
    }

    /// Follower side: the leader answered.
    fn on_response(&mut self, from: u64, id: u64, outcome: ForwardOutcome) {
        let ticks = self.ticks;
        let forwards = &mut self.forwarding.forwards;
        match forwards.get(&id) {
            Some(f) if matches!(f.stage, Stage::Sent { leader, .. } if leader == from) => {}
            _ => return,
        }
        match outcome {
            ForwardOutcome::Applied { index, result } => {
                let Some(f) = forwards.remove(&id) else {
                    return;
                };
                if self.peer.state().version >= index {
                    let _ = f.reply.send(result.map_err(Error::Rejected));
                } else {
                    self.forwarding
                        .awaiting_apply
                        .push((index, f.reply, result));
                }
            }
            // Certainly not applied: send it again once a leader is known (a tick later, so
            // a node that still believes in a former leader does not spin).
            ForwardOutcome::NotLeader { .. } | ForwardOutcome::Dropped => {
                if let Some(f) = forwards.get_mut(&id) {
                    f.stage = Stage::Waiting {
                        not_before: ticks + 1,
                    };
                }
            }
            // The leader lost track (a snapshot replaced its log): this node's own log still
            // tells, through `settle_forwards`.
            ForwardOutcome::Unknown => {}
        }
    }

    /// Follower side: answers the callers whose entries this node has now applied.
    pub(crate) fn resolve_awaiting_apply(&mut self) {
        if self.forwarding.awaiting_apply.is_empty() {
            return;
        }
        let applied = self.peer.state().version;
        let waiting = std::mem::take(&mut self.forwarding.awaiting_apply);
        for (index, reply, result) in waiting {
            if index <= applied {
                let _ = reply.send(result.map_err(Error::Rejected));
            } else {
                self.forwarding.awaiting_apply.push((index, reply, result));
            }
        }
    }

    /// Follower side, after each Ready: settles the requests this node has now seen applied,
    /// replaced by a snapshot, or passed over by a later term.
    pub(crate) fn settle_forwards(&mut self, originated: Vec<Applied>, snapshot_term: Option<u64>) {
        for a in originated {
            if let Some(f) = self.forwarding.forwards.remove(&a.proposal) {
                let _ = f.reply.send(a.outcome.map_err(Error::Rejected));
            }
        }
        let (ticks, applied_term) = (self.ticks, self.peer.applied_term());
        let mut unknown = Vec::new();
        for (&id, f) in self.forwarding.forwards.iter_mut() {
            let Stage::Sent { term, .. } = f.stage else {
                continue;
            };
            if snapshot_term.is_some_and(|t| t >= term) {
                // The entry may be inside the snapshot: its fate cannot be told.
                unknown.push(id);
            } else if applied_term > term {
                // Not applied before a later-term entry: never will be. Send it again.
                f.stage = Stage::Waiting { not_before: ticks };
            }
        }
        for id in unknown {
            if let Some(f) = self.forwarding.forwards.remove(&id) {
                let _ = f.reply.send(Err(Error::OutcomeUnknown));
            }
        }
        self.resolve_awaiting_apply();
        self.pump_forwards();
    }

    /// Once per tick: forget callers that gave up (the leader may still apply their command,
    /// as [`Error::Timeout`] says) and answers the leader could not deliver.
    pub(crate) fn tick_forwards(&mut self) {
        let ticks = self.ticks;
        let served_ttl = (self.config.request_timeout_ms / self.config.tick_ms.max(1)).max(1) * 2;
        let f = &mut self.forwarding;
        f.awaiting_apply.retain(|(_, reply, _)| !reply.is_closed());
        f.served
            .retain(|_, &mut (_, _, at)| ticks.saturating_sub(at) <= served_ttl);
        f.forwards.retain(|_, fw| !fw.reply.is_closed());
        self.pump_forwards();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_input_is_an_error() {
        let msg = ForwardMsg {
            version: FORWARD_FORMAT_VERSION,
            from: 2,
            to: 1,
            body: ForwardBody::Response {
                id: 7,
                outcome: ForwardOutcome::Applied {
                    index: 42,
                    result: Err(CommandError::TopicAlreadyExists("t".into())),
                },
            },
        };
        assert_eq!(ForwardMsg::decode(&msg.encode()).unwrap(), msg);
        assert!(ForwardMsg::decode(b"{\"version\":1").is_err());
        let mut other = msg.clone();
        other.version = 99;
        assert!(ForwardMsg::decode(&other.encode()).is_err());
    }
}
