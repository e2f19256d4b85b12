//! OffsetDelete: removes a group's committed offsets of some partitions (tombstones in
//! `__consumer_offsets`), refused per topic while members are subscribed to it.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::group::GroupState;
use crate::group::offsets::OffsetsRecord;

/// Answers an OffsetDelete request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.to_string();
    let found = match broker.groups.home(broker, &group_id).await {
        Err(code) => Err(code),
        Ok(home) => broker
            .groups
            .get(&group_id)
            .filter(|h| !h.group.lock().is_blank())
            .map(|h| (home, h))
            .ok_or(ResponseError::GroupIdNotFound.code()),
    };
    let (home, handle) = match found {
        Ok(f) => f,
        Err(code) => {
            broker.count_error("OffsetDelete", code);
            return OffsetDeleteResponse::default().with_error_code(code);
        }
    };
    let _writes = handle.writes.lock().await;
    // (topic index, partition, error code), and the tombstones to write.
    let mut answers: Vec<(usize, i32, i16)> = Vec::new();
    let mut records = Vec::new();
    {
        let g = handle.group.lock();
        let subscribed = match g.state {
            GroupState::Empty if !g.has_members() => Some(Vec::new()),
            _ => g.subscribed_topics(),
        };
        for (t, topic) in request.topics.iter().enumerate() {
            let name = topic.name.to_string();
            let in_use = subscribed.as_ref().is_none_or(|s| s.contains(&name));
            for p in &topic.partitions {
                let code = if in_use {
                    ResponseError::GroupSubscribedToTopic.code()
                } else {
                    if g.offsets.contains_key(&(name.clone(), p.partition_index)) {
                        records.push(OffsetsRecord::Offset {
                            group: group_id.clone(),
                            topic: name.clone(),
                            partition: p.partition_index,
                            value: None,
                        });
                    }
                    0
                };
                answers.push((t, p.partition_index, code));
            }
        }
    }
    if !records.is_empty() {
        let _fence = match broker.groups.append(&home, &records).await {
            Ok(fence) => fence,
            Err(code) => {
                broker.count_error("OffsetDelete", code);
                return OffsetDeleteResponse::default().with_error_code(code);
            }
        };
        let mut g = handle.group.lock();
        for r in &records {
            if let OffsetsRecord::Offset {
                topic, partition, ..
            } = r
            {
                g.offsets.remove(&(topic.clone(), *partition));
            }
        }
    }
    let mut topics: Vec<OffsetDeleteResponseTopic> = request
        .topics
        .iter()
        .map(|t| OffsetDeleteResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, p, code) in answers {
        if code != 0 {
            broker.count_error("OffsetDelete", code);
        }
        topics[t].partitions.push(
            OffsetDeleteResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code),
        );
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
