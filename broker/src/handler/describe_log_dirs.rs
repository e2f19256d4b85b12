//! DescribeLogDirs: one log dir per pchannel this broker serves (its directory,
//! `<log.dirs>/pchannels/pchannel-NNNN`), listing the partitions placed on it with their bytes.
//! The placement of partitions on pchannels is thus visible to any Kafka admin client.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use log_store::VChannelId;
use sluice_protocol::RequestHeader;

use super::{route, str_bytes};
use crate::broker::Broker;

/// Answers a DescribeLogDirs request for the pchannels served here.
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
    let mut wals = broker.streaming.wals();
    wals.sort_by_key(|w| w.pchannel);
    // pchannel → topic → partitions with their sizes.
    let mut placed: BTreeMap<u32, BTreeMap<&str, Vec<DescribeLogDirsPartition>>> = BTreeMap::new();
    for (name, partitions) in &wanted {
        let Some(info) = state.topics.get(name) else {
            continue;
        };
        let indexes = partitions
            .clone()
            .unwrap_or_else(|| (0..info.partitions.len() as i32).collect());
        for index in indexes {
            let Ok(r) = route(&state, name, index) else {
                continue;
            };
            let Some(wal) = wals.iter().find(|w| w.pchannel == r.pchannel) else {
                continue;
            };
            if r.leader != Some(broker.node_id()) {
                continue;
            }
            let size = wal
                .log
                .vchannel_state(VChannelId(r.vchannel))
                .map_or(0, |s| s.payload_bytes as i64);
            placed
                .entry(r.pchannel)
                .or_default()
                .entry(name.as_str())
                .or_default()
                .push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(size),
                );
        }
    }
    let results = wals
        .iter()
        .map(|wal| {
            let dir = wal.log.dir();
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            let topics = placed
                .remove(&wal.pchannel)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(partitions)
                })
                .collect();
            DescribeLogDirsResult::default()
                .with_log_dir(str_bytes(&dir.display().to_string()))
                .with_topics(topics)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}
