//! TxnOffsetCommit: offsets a transactional producer commits for a consumer group
//! (`sendOffsetsToTransaction`). Written to the group's `__consumer_offsets` partition as
//! transactional batches of the producer and kept pending: they become the group's committed
//! offsets only when the transaction's commit marker reaches that partition.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::group::GroupState;
use crate::group::offsets::{OffsetEntry, OffsetsRecord};
use crate::streaming::wal::now_ms;

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Answers a TxnOffsetCommit request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let producer_id = request.producer_id.0;
    let state = broker.cluster.state();
    let group_error = match broker.groups.home(broker, &group_id).await {
        Err(code) => Err(code),
        Ok(home) => {
            let handle = broker.groups.get_or_create(&group_id, &home);
            // v3+ carries the consumer's generation (KIP-447), checked like OffsetCommit's; a
            // producer without the consumer's group metadata sends none and is not checked.
            let identified = request.generation_id >= 0
                || !request.member_id.is_empty()
                || request.group_instance_id.is_some();
            let checked = if header.api_version >= 3 && identified {
                handle.group.lock().check_commit(
                    request.member_id.as_str(),
                    request.group_instance_id.as_deref(),
                    request.generation_id,
                )
            } else {
                Ok(())
            };
            checked.map(|()| (home, handle))
        }
    };
    let now = now_ms();
    let mut planned: Vec<(usize, i32, Result<OffsetEntry, i16>)> = Vec::new();
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
        if !records.is_empty() {
            let _writes = handle.writes.lock().await;
            let written = if handle.group.lock().state == GroupState::Dead {
                Err(ResponseError::CoordinatorNotAvailable.code())
            } else {
                broker
                    .groups
                    .append_txn(home, &records, producer_id, request.producer_epoch)
                    .await
            };
            let mut group = handle.group.lock();
            for (t, p, e) in planned.iter_mut() {
                let Ok(entry) = e else { continue };
                match &written {
                    Ok(_fence) => {
                        let key = (request.topics[*t].name.to_string(), *p);
                        group
                            .pending_txn_offsets
                            .entry(producer_id)
                            .or_default()
                            .insert(key, entry.clone());
                    }
                    Err(code) => *e = Err(*code),
                }
            }
        }
    }
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, p, e) in planned {
        let code = e.err().unwrap_or(0);
        if code != 0 {
            broker.count_error("TxnOffsetCommit", code);
        }
        topics[t].partitions.push(
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code),
        );
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
