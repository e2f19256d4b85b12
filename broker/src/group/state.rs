//! One classic group's state: its members, generation, selected protocol, leader, the
//! committed-offset cache, and the answers waiting for a rebalance to complete.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use slog::Logger;
use sluice_protocol::ResponseError;
use tokio::sync::oneshot;

use super::consumer::ConsumerGroup;
use super::heartbeat_hold::HeldHeartbeat;
use super::offsets::OffsetEntry;

/// The classic group states (Kafka's `ClassicGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// A rebalance started: members are (re)joining.
    PreparingRebalance,
    /// Every member joined; waiting for the leader's assignment (SyncGroup).
    CompletingRebalance,
    /// Members hold their assignments and heartbeat.
    Stable,
    /// The group was deleted (or its coordinator moved away).
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The answer to one JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    /// Kafka error code.
    pub error_code: i16,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id (assigned by the coordinator).
    pub member_id: String,
    /// For the leader: every member with its metadata for the selected protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// A static leader that rejoined without a rebalance must not assign again (v9).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    /// An error answer for `member_id`.
    pub fn error(code: i16, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error_code: code,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// The answer to one SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Kafka error code.
    pub error_code: i16,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncOutcome {
    /// An error answer.
    pub fn error(code: i16) -> SyncOutcome {
        SyncOutcome {
            error_code: code,
            ..SyncOutcome::default()
        }
    }
}

/// One member of a group.
pub struct Member {
    /// The coordinator-assigned id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address, as far as the broker knows it.
    pub client_host: String,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` for the Java consumer: how long a rebalance waits for it.
    pub rebalance_timeout: Duration,
    /// `consumer`, `connect`, ...
    pub protocol_type: String,
    /// Supported protocols (assignors), in the member's order of preference, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment the leader gave this member in the current generation.
    pub assignment: Bytes,
    /// The member's JoinGroup waiting for the rebalance to complete.
    pub join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    /// The member's SyncGroup waiting for the leader's assignment.
    pub sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// When the member expires unless it heartbeats (or joins) again.
    pub heartbeat_deadline: Instant,
    /// The member's Heartbeat held open while the group is Stable (see `heartbeat_hold.rs`).
    pub held_heartbeat: Option<HeldHeartbeat>,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether the member supports every protocol in `names`... or at least one of them.
    pub fn supports_any(&self, names: &[String]) -> bool {
        self.protocols.iter().any(|(n, _)| names.contains(n))
    }
}

/// A group and its committed offsets: a classic group, or a consumer group (KIP-848) when
/// `consumer` is set (see `group_type.rs`).
pub struct Group {
    /// The group id.
    pub group_id: String,
    /// The `__consumer_offsets` partition holding it.
    pub partition: i32,
    /// The current state.
    pub state: GroupState,
    /// The generation: grows by one on every completed rebalance.
    pub generation: i32,
    /// The members' protocol type, once any member joined.
    pub protocol_type: Option<String>,
    /// The protocol selected at the last rebalance.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// Members in join order (the first one becomes leader when none is left).
    pub members: IndexMap<String, Member>,
    /// `group.instance.id` → member id of static members.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they expire.
    pub pending: HashMap<String, Instant>,
    /// When the running rebalance completes even if members are missing.
    pub rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits at least until then for more members.
    pub initial_delay_until: Option<Instant>,
    /// Members that must revoke partitions after a round that started the next one at once and
    /// have not collected their assignment yet (see `cooperative.rs`).
    pub assignments_due: HashSet<String>,
    /// Numbers held heartbeats, so a hold that ends clears only itself.
    pub holds: u64,
    /// Committed offsets by (topic, partition).
    pub offsets: HashMap<(String, i32), OffsetEntry>,
    /// Offsets committed inside open transactions (TxnOffsetCommit), by producer id; they move
    /// to `offsets` when the transaction's commit marker is written, and vanish on abort.
    pub pending_txn_offsets: HashMap<i64, HashMap<(String, i32), OffsetEntry>>,
    /// The consumer-protocol state when this is a consumer group.
    pub consumer: Option<ConsumerGroup>,
    /// Logger with the group id.
    pub log: Logger,
}

impl Group {
    /// A new empty group.
    pub fn new(group_id: &str, partition: i32, log: &Logger) -> Group {
        Group {
            group_id: group_id.to_string(),
            partition,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            assignments_due: HashSet::new(),
            holds: 0,
            offsets: HashMap::new(),
            pending_txn_offsets: HashMap::new(),
            consumer: None,
            log: log.new(slog::o!("group" => group_id.to_string())),
        }
    }

    /// Protocols every member supports, in the first member's order.
    pub fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Kafka's `selectProtocol`: every member votes for its most preferred candidate; the
    /// candidate with the most votes wins (ties go to the first member's preference).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n))
                && let Some(v) = votes.iter_mut().find(|(c, _)| c == name)
            {
                v.1 += 1;
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c)
    }

    /// Whether a joining member's protocols fit the group (Kafka's `supportsProtocols`).
    pub fn accepts_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self
            .members
            .values()
            .any(|m| m.protocol_type != protocol_type)
        {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Whether every member has a JoinGroup waiting and no handed-out member id is outstanding.
    pub fn all_members_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// The longest rebalance timeout among the members.
    pub fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the group has nothing worth keeping: no members, offsets or metadata.
    pub fn is_blank(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
            && self.pending_txn_offsets.is_empty()
            && self.protocol_type.is_none()
            && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    /// Settles the offsets a producer's transaction committed in this group.
    pub fn settle_txn(&mut self, producer_id: i64, commit: bool) {
        if let Some(pending) = self.pending_txn_offsets.remove(&producer_id)
            && commit
        {
            self.offsets.extend(pending);
        }
    }

    /// Topics the members subscribed to: a consumer group's subscriptions, or a classic group's
    /// from the `consumer` protocol's subscription metadata (`ConsumerProtocolSubscription`:
    /// i16 version, array of topic strings, ...).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if let Some(c) = &self.consumer {
            return Some(c.subscribed_topics().into_iter().collect());
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(parse_subscription(&m.metadata(protocol))?);
        }
        Some(topics)
    }
}

/// The topics of a `ConsumerProtocolSubscription`; `None` when it does not parse.
pub fn parse_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let take = |buf: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if buf.len() < n {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        *buf = tail;
        Some(head.to_vec())
    };
    let _version = take(&mut buf, 2)?;
    let count = i32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
        let name = take(&mut buf, usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(name).ok()?);
    }
    Some(topics)
}

/// `ResponseError` code shorthand.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline: Instant::now(),
            held_heartbeat: None,
        }
    }

    #[test]
    fn protocol_selection_takes_the_most_voted_common_protocol() {
        let log = Logger::root(slog::Discard, slog::o!());
        let mut g = Group::new("g", 0, &log);
        g.members
            .insert("a".into(), member("a", &["range", "roundrobin", "sticky"]));
        g.members
            .insert("b".into(), member("b", &["sticky", "range"]));
        g.members
            .insert("c".into(), member("c", &["sticky", "range"]));
        assert_eq!(g.candidate_protocols(), vec!["range", "sticky"]);
        assert_eq!(g.select_protocol().as_deref(), Some("sticky"));
        assert!(!g.accepts_protocols("consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(g.accepts_protocols("consumer", &[("range".into(), Bytes::new())]));
        assert!(!g.accepts_protocols("connect", &[("range".into(), Bytes::new())]));
    }

    #[test]
    fn subscription_topics_parse_and_garbage_does_not() {
        let mut buf = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0xff];
        assert_eq!(
            parse_subscription(&buf),
            Some(vec!["a".into(), "bc".into()])
        );
        buf.truncate(9);
        assert_eq!(parse_subscription(&buf), None);
        assert_eq!(parse_subscription(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }
}
