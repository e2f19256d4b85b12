//! Kafka request handlers, one module per API: each takes its decoded request and returns its
//! response. Failures that concern one partition go into that partition's error code.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod fetch_session;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ResponseError;
use sluice_raft::state::{AssignmentState, MetadataState};

use crate::broker::Broker;

/// Where one partition lives and who serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The partition's vchannel.
    pub vchannel: u64,
    /// The pchannel holding it.
    pub pchannel: u32,
    /// The broker owning the pchannel, when it is assigned.
    pub leader: Option<i32>,
    /// The pchannel's term: the partition's leader epoch.
    pub leader_epoch: i32,
}

impl Route {
    /// KIP-320: a request that names the leader epoch it expects gets FENCED_LEADER_EPOCH when
    /// that epoch is older than the partition's and UNKNOWN_LEADER_EPOCH when it is newer; -1
    /// skips the check.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), i16> {
        if current_leader_epoch < 0 || current_leader_epoch == self.leader_epoch {
            Ok(())
        } else if current_leader_epoch < self.leader_epoch {
            Err(ResponseError::FencedLeaderEpoch.code())
        } else {
            Err(ResponseError::UnknownLeaderEpoch.code())
        }
    }
}

/// Finds a partition of a topic in the metadata, or the Kafka error that says why not.
pub fn route(state: &MetadataState, topic: &str, partition: i32) -> Result<Route, i16> {
    let info = state
        .topics
        .get(topic)
        .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| info.partitions.get(i))
        .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
    let pchannel = state.pchannels.get(p.pchannel as usize);
    let leader = pchannel.and_then(|pc| match pc.state {
        AssignmentState::Assigned | AssignmentState::Assigning => pc.broker_id,
        AssignmentState::Uninitialized | AssignmentState::Unavailable => None,
    });
    Ok(Route {
        vchannel: p.vchannel,
        pchannel: p.pchannel,
        leader,
        leader_epoch: pchannel.map_or(-1, |pc| i32::try_from(pc.term).unwrap_or(i32::MAX)),
    })
}

/// The error for a partition whose pchannel is not open on this broker.
pub fn not_here(route: &Route) -> i16 {
    match route.leader {
        None => ResponseError::LeaderNotAvailable.code(),
        Some(_) => ResponseError::NotLeaderOrFollower.code(),
    }
}

/// Whether this broker serves the partition's pchannel right now.
pub fn local_wal(
    broker: &Broker,
    route: &Route,
) -> Result<std::sync::Arc<crate::streaming::Wal>, i16> {
    if route.leader != Some(broker.node_id()) {
        return Err(not_here(route));
    }
    broker
        .streaming
        .wal(route.pchannel)
        .ok_or(ResponseError::NotLeaderOrFollower.code())
}

/// A `StrBytes` from a `&str`.
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Kafka's topic-name rule: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epochs_are_checked_as_kip_320_says() {
        let r = Route {
            vchannel: 1,
            pchannel: 0,
            leader: Some(1),
            leader_epoch: 5,
        };
        assert_eq!(r.check_leader_epoch(-1), Ok(()));
        assert_eq!(r.check_leader_epoch(5), Ok(()));
        assert_eq!(
            r.check_leader_epoch(4),
            Err(ResponseError::FencedLeaderEpoch.code())
        );
        assert_eq!(
            r.check_leader_epoch(6),
            Err(ResponseError::UnknownLeaderEpoch.code())
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
