//! DescribeLogDirs: the one data directory and the bytes each partition holds in it.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use log_store::VChannelId;
use sluice_protocol::RequestHeader;

use super::{local_wal, route, str_bytes};
use crate::broker::Broker;

/// Answers a DescribeLogDirs request for the partitions served here.
pub fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let state = broker.cluster.state();
    let wanted: BTreeMap<String, Option<Vec<i32>>> = match &request.topics {
        None => state.topics.keys().map(|t| (t.clone(), None)).collect(),
        Some(topics) => topics
            .iter()
            .map(|t| (t.topic.to_string(), Some(t.partitions.clone())))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, partitions) in wanted {
        let Some(info) = state.topics.get(&name) else {
            continue;
        };
        let indexes = partitions.unwrap_or_else(|| (0..info.partitions.len() as i32).collect());
        let partitions: Vec<DescribeLogDirsPartition> = indexes
            .into_iter()
            .filter_map(|index| {
                let route = route(&state, &name, index).ok()?;
                let wal = local_wal(broker, &route).ok()?;
                let size = wal
                    .log
                    .vchannel_state(VChannelId(route.vchannel))
                    .map_or(0, |s| s.payload_bytes as i64);
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(size),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = broker
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![
        DescribeLogDirsResult::default()
            .with_log_dir(str_bytes(&dir.display().to_string()))
            .with_topics(topics),
    ])
}
