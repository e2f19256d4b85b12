//! The metadata state machine: cluster id, brokers, topics, placement, assignment and
//! producer ids, versioned by the Raft index of the last applied entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Command, CommandError, CommandResult};
use crate::placement;

/// Largest producer-id block one command may allocate.
pub const MAX_PRODUCER_ID_BLOCK: u32 = 1 << 20;
/// How many assignment changes each pchannel remembers.
pub const ASSIGNMENT_HISTORY_LEN: usize = 16;
/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 100_000;

/// The replicated metadata. `version` is the Raft index of the last applied entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    /// Raft index of the last applied entry.
    pub version: u64,
    /// Set by `InitCluster`.
    pub cluster: Option<ClusterInfo>,
    /// Registered brokers by broker id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name. Shared (copy on write) so that publishing a new state version after a
    /// command that does not touch topics, such as a heartbeat, does not copy them.
    pub topics: Arc<BTreeMap<String, TopicInfo>>,
    /// Topic names by topic id.
    pub topic_ids: Arc<BTreeMap<Uuid, String>>,
    /// One entry per pchannel of the pool, indexed by pchannel id.
    pub pchannels: Vec<PChannelInfo>,
    /// Next vchannel id to hand out; vchannel ids are never reused.
    pub next_vchannel: u64,
    /// Next producer id to hand out.
    pub next_producer_id: i64,
    /// Raft voters' addresses, as recorded by membership changes.
    pub raft_peers: BTreeMap<u64, String>,
}

/// Cluster-wide constants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Kafka's `cluster.id`.
    pub cluster_id: Uuid,
    /// Size of the pchannel pool.
    pub pchannels: u32,
}

/// A Kafka listener a broker advertises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: u16,
}

/// A registered broker and its liveness lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Kafka broker id.
    pub broker_id: i32,
    /// Identifies one run of the broker process.
    pub incarnation_id: Uuid,
    /// Advertised listeners.
    pub listeners: Vec<Listener>,
    /// Rack, if any.
    pub rack: Option<String>,
    /// Lease length in milliseconds.
    pub lease_ms: i64,
    /// Proposer clock of the last registration or heartbeat.
    pub last_heartbeat_ms: i64,
}

impl BrokerInfo {
    /// Whether the lease still runs at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.last_heartbeat_ms.saturating_add(self.lease_ms)
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Topic id.
    pub topic_id: Uuid,
    /// Topic name.
    pub name: String,
    /// Partitions in partition order.
    pub partitions: Vec<PartitionInfo>,
    /// Per-topic configs.
    pub configs: BTreeMap<String, String>,
}

/// One partition: its vchannel and the pchannel holding it (the placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// The vchannel id.
    pub vchannel: u64,
    /// The pchannel holding the vchannel.
    pub pchannel: u32,
}

/// Lifecycle of a pchannel's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentState {
    /// Never assigned.
    Uninitialized,
    /// Assigned at a new term; the new owner has not confirmed yet.
    Assigning,
    /// The owner serves the pchannel at this term.
    Assigned,
    /// No owner can serve it.
    Unavailable,
}

/// One step of a pchannel's assignment history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentChange {
    /// Term after the change.
    pub term: u64,
    /// Owner after the change.
    pub broker_id: Option<i32>,
    /// State after the change.
    pub state: AssignmentState,
    /// Metadata version of the change.
    pub version: u64,
}

/// A pchannel's assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PChannelInfo {
    /// The pchannel id.
    pub pchannel: u32,
    /// Current owner.
    pub broker_id: Option<i32>,
    /// Grows on every change; the leader epoch of every partition on this pchannel.
    pub term: u64,
    /// Current state.
    pub state: AssignmentState,
    /// Most recent changes, oldest first, at most [`ASSIGNMENT_HISTORY_LEN`].
    pub history: Vec<AssignmentChange>,
    /// Number of vchannels placed here.
    pub vchannels: u32,
}

impl MetadataState {
    /// The topic with this id.
    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicInfo> {
        self.topic_ids
            .get(topic_id)
            .and_then(|n| self.topics.get(n))
    }

    /// Brokers whose lease runs at `now_ms`.
    pub fn live_brokers(&self, now_ms: i64) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(move |b| b.is_live(now_ms))
    }

    /// Applies one committed command at Raft index `index`. Deterministic: the same state and
    /// command give the same result on every node. The version moves even on rejection.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<CommandResult, CommandError> {
        self.version = self.version.max(index);
        match cmd {
            Command::InitCluster {
                cluster_id,
                pchannels,
            } => self.init_cluster(*cluster_id, *pchannels),
            Command::RegisterBroker {
                broker_id,
                incarnation_id,
                listeners,
                rack,
                now_ms,
                lease_ms,
            } => {
                if *lease_ms <= 0 {
                    return Err(CommandError::InvalidRequest("lease_ms must be > 0".into()));
                }
                self.brokers.insert(
                    *broker_id,
                    BrokerInfo {
                        broker_id: *broker_id,
                        incarnation_id: *incarnation_id,
                        listeners: listeners.clone(),
                        rack: rack.clone(),
                        lease_ms: *lease_ms,
                        last_heartbeat_ms: *now_ms,
                    },
                );
                Ok(CommandResult::Done)
            }
            Command::BrokerHeartbeat {
                broker_id,
                incarnation_id,
                now_ms,
            } => match self.brokers.get_mut(broker_id) {
                Some(b) if b.incarnation_id == *incarnation_id => {
                    b.last_heartbeat_ms = b.last_heartbeat_ms.max(*now_ms);
                    Ok(CommandResult::Done)
                }
                _ => Err(CommandError::UnknownBroker(*broker_id)),
            },
            Command::UnregisterBroker { broker_id } => self
                .brokers
                .remove(broker_id)
                .map(|_| CommandResult::Done)
                .ok_or(CommandError::UnknownBroker(*broker_id)),
            Command::CreateTopic {
                name,
                topic_id,
                partitions,
                configs,
            } => self.create_topic(name, *topic_id, *partitions, configs),
            Command::DeleteTopic { name } => self.delete_topic(name),
            Command::CreatePartitions {
                name,
                total_partitions,
            } => self.create_partitions(name, *total_partitions),
            Command::AlterTopicConfigs { name, set, delete } => {
                let topic = Arc::make_mut(&mut self.topics)
                    .get_mut(name)
                    .ok_or_else(|| CommandError::UnknownTopic(name.clone()))?;
                for key in delete {
                    topic.configs.remove(key);
                }
                topic
                    .configs
                    .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(CommandResult::Done)
            }
            Command::AssignPChannel {
                pchannel,
                broker_id,
                expected_term,
            } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(CommandError::UnknownBroker(*broker_id));
                }
                self.move_pchannel(
                    *pchannel,
                    *expected_term,
                    Some(*broker_id),
                    AssignmentState::Assigning,
                )
            }
            Command::ConfirmPChannel { pchannel, term } => {
                let version = self.version;
                let p = self.pchannel_mut(*pchannel)?;
                if p.term != *term || p.state != AssignmentState::Assigning {
                    return Err(CommandError::StaleTerm {
                        pchannel: *pchannel,
                        expected: *term,
                        current: p.term,
                    });
                }
                p.state = AssignmentState::Assigned;
                p.record(version);
                Ok(p.updated())
            }
            Command::MarkPChannelUnavailable {
                pchannel,
                expected_term,
            } => self.move_pchannel(
                *pchannel,
                *expected_term,
                None,
                AssignmentState::Unavailable,
            ),
            Command::AllocateProducerIds {
                broker_id,
                block_size,
            } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(CommandError::UnknownBroker(*broker_id));
                }
                if *block_size == 0 || *block_size > MAX_PRODUCER_ID_BLOCK {
                    return Err(CommandError::InvalidRequest(format!(
                        "producer id block size {block_size}"
                    )));
                }
                let first = self.next_producer_id;
                self.next_producer_id += i64::from(*block_size);
                Ok(CommandResult::ProducerIds {
                    first_producer_id: first,
                    size: *block_size,
                })
            }
            Command::Noop => Ok(CommandResult::Done),
        }
    }

    fn init_cluster(
        &mut self,
        cluster_id: Uuid,
        pchannels: u32,
    ) -> Result<CommandResult, CommandError> {
        if self.cluster.is_some() {
            return Err(CommandError::AlreadyInitialized);
        }
        if pchannels == 0 || pchannels > 65_536 {
            return Err(CommandError::InvalidRequest(format!(
                "pchannels {pchannels}"
            )));
        }
        self.cluster = Some(ClusterInfo {
            cluster_id,
            pchannels,
        });
        self.pchannels = (0..pchannels)
            .map(|pchannel| PChannelInfo {
                pchannel,
                broker_id: None,
                term: 0,
                state: AssignmentState::Uninitialized,
                history: Vec::new(),
                vchannels: 0,
            })
            .collect();
        Ok(CommandResult::ClusterInitialized { cluster_id })
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<CommandResult, CommandError> {
        if self.cluster.is_none() {
            return Err(CommandError::NotInitialized);
        }
        validate_topic_name(name)?;
        if self.topics.contains_key(name) || self.topic_ids.contains_key(&topic_id) {
            return Err(CommandError::TopicAlreadyExists(name.to_owned()));
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(CommandError::InvalidPartitions(format!("{partitions}")));
        }
        Arc::make_mut(&mut self.topics).insert(
            name.to_owned(),
            TopicInfo {
                topic_id,
                name: name.to_owned(),
                partitions: Vec::new(),
                configs: configs.clone(),
            },
        );
        Arc::make_mut(&mut self.topic_ids).insert(topic_id, name.to_owned());
        self.create_partitions(name, partitions)
    }

    fn create_partitions(&mut self, name: &str, total: u32) -> Result<CommandResult, CommandError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| CommandError::UnknownTopic(name.to_owned()))?;
        let existing = topic.partitions.len() as u32;
        if total <= existing || total > MAX_PARTITIONS {
            return Err(CommandError::InvalidPartitions(format!(
                "topic {name} has {existing} partitions, asked for {total}"
            )));
        }
        let used: Vec<u32> = topic.partitions.iter().map(|p| p.pchannel).collect();
        let loads: Vec<u32> = self.pchannels.iter().map(|p| p.vchannels).collect();
        let chosen = placement::place(&loads, &used, (total - existing) as usize);
        let mut placed = Vec::with_capacity(chosen.len());
        let mut new_partitions = Vec::with_capacity(chosen.len());
        for (i, pchannel) in chosen.into_iter().enumerate() {
            let vchannel = self.next_vchannel;
            self.next_vchannel += 1;
            self.pchannels[pchannel as usize].vchannels += 1;
            new_partitions.push(PartitionInfo { vchannel, pchannel });
            placed.push((existing + i as u32, vchannel, pchannel));
        }
        let topic = Arc::make_mut(&mut self.topics)
            .get_mut(name)
            .expect("checked above");
        topic.partitions.extend(new_partitions);
        Ok(CommandResult::PartitionsCreated {
            topic_id: topic.topic_id,
            placement: placed,
        })
    }

    fn delete_topic(&mut self, name: &str) -> Result<CommandResult, CommandError> {
        let topic = Arc::make_mut(&mut self.topics)
            .remove(name)
            .ok_or_else(|| CommandError::UnknownTopic(name.to_owned()))?;
        Arc::make_mut(&mut self.topic_ids).remove(&topic.topic_id);
        for p in &topic.partitions {
            let pc = &mut self.pchannels[p.pchannel as usize];
            pc.vchannels = pc.vchannels.saturating_sub(1);
        }
        Ok(CommandResult::Done)
    }

    fn pchannel_mut(&mut self, pchannel: u32) -> Result<&mut PChannelInfo, CommandError> {
        self.pchannels
            .get_mut(pchannel as usize)
            .ok_or(CommandError::UnknownPChannel(pchannel))
    }

    fn move_pchannel(
        &mut self,
        pchannel: u32,
        expected_term: u64,
        broker_id: Option<i32>,
        state: AssignmentState,
    ) -> Result<CommandResult, CommandError> {
        let version = self.version;
        let p = self.pchannel_mut(pchannel)?;
        if p.term != expected_term {
            return Err(CommandError::StaleTerm {
                pchannel,
                expected: expected_term,
                current: p.term,
            });
        }
        p.term += 1;
        p.broker_id = broker_id;
        p.state = state;
        p.record(version);
        Ok(p.updated())
    }
}

impl PChannelInfo {
    fn record(&mut self, version: u64) {
        if self.history.len() == ASSIGNMENT_HISTORY_LEN {
            self.history.remove(0);
        }
        self.history.push(AssignmentChange {
            term: self.term,
            broker_id: self.broker_id,
            state: self.state,
            version,
        });
    }

    fn updated(&self) -> CommandResult {
        CommandResult::PChannelUpdated {
            pchannel: self.pchannel,
            term: self.term,
            state: self.state,
        }
    }
}

/// Kafka's rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn validate_topic_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CommandError::InvalidRequest(format!(
            "invalid topic name {name:?}"
        )))
    }
}
