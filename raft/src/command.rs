//! The versioned command set of the metadata state machine, its results and its rejections.
//!
//! Commands travel through the Raft log as JSON inside an [`Envelope`] carrying
//! [`COMMAND_FORMAT_VERSION`]; every field a command's outcome depends on (ids, clocks) is
//! chosen by the proposer, so applying it is deterministic on every node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::{AssignmentState, Listener};

/// Format version written in every command envelope.
pub const COMMAND_FORMAT_VERSION: u32 = 1;

/// A change to the cluster metadata, proposed through Raft and applied on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Create the cluster: its id and its fixed pchannel pool. Applied once.
    InitCluster {
        /// The cluster id (Kafka's `cluster.id`).
        cluster_id: Uuid,
        /// Size of the pchannel pool, fixed for the life of the cluster.
        pchannels: u32,
    },
    /// Register (or re-register) a broker and start its liveness lease.
    RegisterBroker {
        /// Kafka broker id.
        broker_id: i32,
        /// Changes on every broker process start, so a restart is visible.
        incarnation_id: Uuid,
        /// Advertised listeners.
        listeners: Vec<Listener>,
        /// Rack, if configured.
        rack: Option<String>,
        /// Proposer's wall clock, milliseconds since the Unix epoch.
        now_ms: i64,
        /// Lease length: the broker is live until `now_ms + lease_ms` unless it heartbeats.
        lease_ms: i64,
    },
    /// Extend a registered broker's lease.
    BrokerHeartbeat {
        /// Kafka broker id.
        broker_id: i32,
        /// Must match the registered incarnation.
        incarnation_id: Uuid,
        /// Proposer's wall clock, milliseconds since the Unix epoch.
        now_ms: i64,
    },
    /// Remove a broker (controlled shutdown or decommission).
    UnregisterBroker {
        /// Kafka broker id.
        broker_id: i32,
    },
    /// Create a topic; its partitions are placed on pchannels inside apply.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Topic id chosen by the proposer.
        topic_id: Uuid,
        /// Number of partitions (≥ 1).
        partitions: u32,
        /// Per-topic configs (Kafka key names).
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic and its placement.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Grow a topic to `total_partitions` partitions.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// The new total partition count.
        total_partitions: u32,
    },
    /// Set and remove per-topic configs.
    AlterTopicConfigs {
        /// Topic name.
        name: String,
        /// Configs to set.
        set: BTreeMap<String, String>,
        /// Configs to remove.
        delete: Vec<String>,
    },
    /// Move a pchannel to a broker: state ASSIGNING with a new term (fences the old owner).
    AssignPChannel {
        /// The pchannel.
        pchannel: u32,
        /// The new owner.
        broker_id: i32,
        /// The term the proposer saw; the command is rejected if it changed since.
        expected_term: u64,
    },
    /// The new owner opened the pchannel: ASSIGNING → ASSIGNED at the same term.
    ConfirmPChannel {
        /// The pchannel.
        pchannel: u32,
        /// The term being confirmed.
        term: u64,
    },
    /// The owner is gone and no broker can take the pchannel: UNAVAILABLE with a new term.
    MarkPChannelUnavailable {
        /// The pchannel.
        pchannel: u32,
        /// The term the proposer saw.
        expected_term: u64,
    },
    /// Allocate a block of producer ids (KIP-730).
    AllocateProducerIds {
        /// The broker asking.
        broker_id: i32,
        /// Number of ids (1 ..= [`crate::state::MAX_PRODUCER_ID_BLOCK`]).
        block_size: u32,
    },
    /// Does nothing; used to measure the pipeline and to probe leadership.
    Noop,
}

/// The outcome of an applied command that the state machine accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CommandResult {
    /// Accepted, nothing to report.
    Done,
    /// The cluster was initialized.
    ClusterInitialized {
        /// Its id.
        cluster_id: Uuid,
    },
    /// A topic was created, or partitions were added: the new partitions' placement.
    PartitionsCreated {
        /// The topic id.
        topic_id: Uuid,
        /// `(partition, vchannel, pchannel)` for each new partition.
        placement: Vec<(u32, u64, u32)>,
    },
    /// A pchannel's assignment changed.
    PChannelUpdated {
        /// The pchannel.
        pchannel: u32,
        /// Its term now.
        term: u64,
        /// Its state now.
        state: AssignmentState,
    },
    /// A block of producer ids, `first_producer_id .. first_producer_id + size`.
    ProducerIds {
        /// The first id of the block.
        first_producer_id: i64,
        /// Number of ids in the block.
        size: u32,
    },
    /// A voter was added or removed.
    MembershipChanged {
        /// The voters after the change.
        voters: Vec<u64>,
    },
}

/// Why the state machine rejected a command. Rejections are deterministic: every node
/// rejects the same entry the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The cluster has not been initialized yet.
    #[error("cluster not initialized")]
    NotInitialized,
    /// `InitCluster` on an initialized cluster.
    #[error("cluster already initialized")]
    AlreadyInitialized,
    /// A topic with that name or id exists.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// Partition count out of range.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// Invalid topic name or config.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No such broker, or a stale incarnation.
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    /// No such pchannel.
    #[error("unknown pchannel {0}")]
    UnknownPChannel(u32),
    /// The pchannel's term moved on since the proposer looked.
    #[error("stale term for pchannel {pchannel}: expected {expected}, current {current}")]
    StaleTerm {
        /// The pchannel.
        pchannel: u32,
        /// Term in the command.
        expected: u64,
        /// Term in the state.
        current: u64,
    },
    /// A Raft entry whose payload this version cannot decode.
    #[error("undecodable command: {0}")]
    Undecodable(String),
    /// A membership change raft-rs refused.
    #[error("invalid membership change: {0}")]
    InvalidMembership(String),
}

/// The on-log form of a command.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// [`COMMAND_FORMAT_VERSION`] at the time of writing.
    pub v: u32,
    /// The command.
    pub cmd: Command,
}

impl Command {
    /// Encodes the command for a Raft entry.
    pub fn encode(&self) -> Vec<u8> {
        let env = EnvelopeRef {
            v: COMMAND_FORMAT_VERSION,
            cmd: self,
        };
        serde_json::to_vec(&env).expect("commands always serialize")
    }

    /// Decodes a Raft entry's payload; never panics on bad input.
    pub fn decode(data: &[u8]) -> Result<Command, CommandError> {
        let env: Envelope =
            serde_json::from_slice(data).map_err(|e| CommandError::Undecodable(e.to_string()))?;
        if env.v != COMMAND_FORMAT_VERSION {
            return Err(CommandError::Undecodable(format!(
                "command format version {} (this build reads {})",
                env.v, COMMAND_FORMAT_VERSION
            )));
        }
        Ok(env.cmd)
    }
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    cmd: &'a Command,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let cmd = Command::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(7),
            partitions: 3,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        };
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        assert!(matches!(
            Command::decode(b"\xff\x00garbage"),
            Err(CommandError::Undecodable(_))
        ));
        assert!(matches!(
            Command::decode(br#"{"v":99,"cmd":{"type":"noop"}}"#),
            Err(CommandError::Undecodable(_))
        ));
    }
}
