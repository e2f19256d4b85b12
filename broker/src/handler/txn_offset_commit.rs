//! TxnOffsetCommit: offsets a transactional producer commits for a consumer group
//! (`sendOffsetsToTransaction`). Written to the group's `__consumer_offsets` partition as
//! transactional batches of the producer and kept pending: they become the group's committed
//! offsets only when the transaction's commit marker reaches that partition.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use sluice_protocol::RequestHeader;

use super::offset_commit::{CommitKind, commit, commit_partitions};
use crate::broker::Broker;

/// Answers a TxnOffsetCommit request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let group = match broker.groups.home(broker, &group_id).await {
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
    let commits = commit_partitions!(request.topics);
    let kind = CommitKind::Transactional {
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
    };
    let codes = commit(broker, &group_id, group, &commits, kind).await;
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, p, code) in codes {
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
