//! OffsetCommit: validates the member and generation (member epoch in a consumer group), writes
//! one record per partition to the group's `__consumer_offsets` partition, and answers once that
//! write is durable; only then does the in-memory cache (which answers OffsetFetch) change.
//! Commits of one group arriving together share one append's fsync (`group::commit_queue`).
//! TxnOffsetCommit shares the validation, keeping its offsets pending until the transaction ends.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use std::sync::Arc;

use crate::broker::Broker;
use crate::group::commit_queue::{self, CommitTurn};
use crate::group::offsets::{OffsetEntry, OffsetsRecord};
use crate::group::{GroupHandle, GroupState, Home};
use crate::streaming::wal::now_ms;

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Answers an OffsetCommit request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: OffsetCommitRequest,
    turn: CommitTurn,
) -> OffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let group = match broker.groups.home(broker, &group_id).await {
        Err(code) => Err(code),
        Ok(home) => {
            let handle = broker.groups.get_or_create(&group_id, &home);
            let checked = handle.group.lock().check_offset_commit(
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
                header.api_version,
            );
            checked.map(|()| (home, handle))
        }
    };
    let commits = commit_partitions!(request.topics);
    let codes = commit(broker, &group_id, group, &commits, CommitKind::Plain(turn)).await;
    let mut topics: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| OffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, p, code) in codes {
        if code != 0 {
            broker.count_error("OffsetCommit", code);
        }
        topics[t].partitions.push(
            OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code),
        );
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// The topics of an OffsetCommit or TxnOffsetCommit request (their partition structs differ in
/// type only) as `(topic, partitions)`.
macro_rules! commit_partitions {
    ($topics:expr) => {
        $topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| $crate::handler::offset_commit::CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    })
                    .collect::<Vec<_>>();
                (t.name.to_string(), partitions)
            })
            .collect::<Vec<_>>()
    };
}
pub(crate) use commit_partitions;

/// One partition's offset in an OffsetCommit or TxnOffsetCommit.
pub struct CommitPartition {
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<String>,
}

/// Whether offsets count at once or when their transaction commits.
pub enum CommitKind {
    /// OffsetCommit: committed once durable, written in the connection's order.
    Plain(CommitTurn),
    /// TxnOffsetCommit: pending until the producer's transaction ends with a commit marker.
    Transactional {
        /// The producer.
        producer_id: i64,
        /// Its epoch (a fenced producer's write is refused).
        producer_epoch: i16,
    },
}

/// Validates each partition, writes the valid ones to the group's `__consumer_offsets`
/// partition (durably) and then updates the cache. `group` is the group's home and handle
/// after the caller's member checks, or their error. Returns (topic index, partition, error
/// code) in request order.
pub async fn commit(
    broker: &Broker,
    group_id: &str,
    group: Result<(Home, Arc<GroupHandle>), i16>,
    topics: &[(String, Vec<CommitPartition>)],
    kind: CommitKind,
) -> Vec<(usize, i32, i16)> {
    let state = broker.cluster.state();
    let now = now_ms();
    let mut planned: Vec<(usize, i32, Result<OffsetEntry, i16>)> = Vec::new();
    for (t, (topic, partitions)) in topics.iter().enumerate() {
        let known = state.topics.get(topic.as_str());
        for p in partitions {
            let exists = known.is_some_and(|info| {
                usize::try_from(p.partition).is_ok_and(|i| i < info.partitions.len())
            });
            let entry = match &group {
                Err(code) => Err(*code),
                Ok(_) if !exists => Err(ResponseError::UnknownTopicOrPartition.code()),
                Ok(_)
                    if p.metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES) =>
                {
                    Err(ResponseError::OffsetMetadataTooLarge.code())
                }
                Ok(_) => Ok(OffsetEntry {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata: p.metadata.clone().unwrap_or_default(),
                    commit_timestamp: now,
                }),
            };
            planned.push((t, p.partition, entry));
        }
    }
    if let Ok((home, handle)) = &group {
        let records: Vec<OffsetsRecord> = planned
            .iter()
            .filter_map(|(t, p, e)| {
                e.as_ref().ok().map(|entry| OffsetsRecord::Offset {
                    group: group_id.to_string(),
                    topic: topics[*t].0.clone(),
                    partition: *p,
                    value: Some(entry.clone()),
                })
            })
            .collect();
        if !records.is_empty() {
            let written = match kind {
                CommitKind::Plain(turn) => {
                    commit_queue::commit(&broker.groups, home, handle, records, turn).await
                }
                CommitKind::Transactional {
                    producer_id,
                    producer_epoch,
                } => commit_txn(broker, home, handle, &records, producer_id, producer_epoch).await,
            };
            if let Err(code) = written {
                for (_, _, e) in planned.iter_mut() {
                    if e.is_ok() {
                        *e = Err(code);
                    }
                }
            }
        }
    }
    planned
        .into_iter()
        .map(|(t, p, e)| (t, p, e.err().unwrap_or(0)))
        .collect()
}

/// Writes a TxnOffsetCommit's records as the producer's transactional batches and, once
/// durable, keeps them pending in the group until the transaction ends.
async fn commit_txn(
    broker: &Broker,
    home: &Home,
    handle: &GroupHandle,
    records: &[OffsetsRecord],
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(), i16> {
    let _writes = handle.writes.lock().await;
    // DeleteGroups removed the group while this commit waited: Kafka answers
    // COORDINATOR_NOT_AVAILABLE so the client looks the group up again and retries.
    if handle.group.lock().state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable.code());
    }
    let _fence = broker
        .groups
        .append_txn(home, records, producer_id, producer_epoch)
        .await?;
    let mut group = handle.group.lock();
    let pending = group.pending_txn_offsets.entry(producer_id).or_default();
    for record in records {
        if let OffsetsRecord::Offset {
            topic,
            partition,
            value: Some(entry),
            ..
        } = record
        {
            pending.insert((topic.clone(), *partition), entry.clone());
        }
    }
    Ok(())
}
