//! OffsetCommit: validates the member and generation (member epoch in a consumer group), writes one record per partition to the
//! group's `__consumer_offsets` partition, and answers once that write is durable; only then
//! does the in-memory cache (which answers OffsetFetch) change. Commits of one group arriving
//! together share one append's fsync (`group::commit_queue`).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::group::commit_queue::{self, CommitTurn};
use crate::group::offsets::{OffsetEntry, OffsetsRecord};
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
    let state = broker.cluster.state();
    // (topic index, partition, error code or the entry to write)
    let mut planned: Vec<(usize, i32, Result<OffsetEntry, i16>)> = Vec::new();
    let group_error = match broker.groups.home(broker, &group_id).await {
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
    let now = now_ms();
    for (t, topic) in request.topics.iter().enumerate() {
        let known = state.topics.get(topic.name.as_str());
        for p in &topic.partitions {
            let entry = match &group_error {
                Err(code) => Err(*code),
                Ok(_)
                    if known.is_none_or(|info| {
                        usize::try_from(p.partition_index)
                            .map_or(true, |i| i >= info.partitions.len())
                    }) =>
                {
                    Err(ResponseError::UnknownTopicOrPartition.code())
                }
                Ok(_)
                    if p.committed_metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES) =>
                {
                    Err(ResponseError::OffsetMetadataTooLarge.code())
                }
                Ok(_) => Ok(OffsetEntry {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    commit_timestamp: now,
                }),
            };
            planned.push((t, p.partition_index, entry));
        }
    }
    if let Ok((home, handle)) = &group_error {
        let records: Vec<OffsetsRecord> = planned
            .iter()
            .filter_map(|(t, p, e)| {
                e.as_ref().ok().map(|entry| OffsetsRecord::Offset {
                    group: group_id.clone(),
                    topic: request.topics[*t].name.to_string(),
                    partition: *p,
                    value: Some(entry.clone()),
                })
            })
            .collect();
        if !records.is_empty()
            && let Err(code) =
                commit_queue::commit(&broker.groups, home, handle, records, turn).await
        {
            for (_, _, e) in planned.iter_mut() {
                if e.is_ok() {
                    *e = Err(code);
                }
            }
        }
    }
    let mut topics: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| OffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, p, e) in planned {
        let code = e.err().unwrap_or(0);
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
