//! OffsetFetch: committed offsets from the coordinator's cache (rebuilt from
//! `__consumer_offsets` when the partition is loaded). v1–v7 ask for one group, v8 for many,
//! v9 names the consumer-group member asking; a null topic list means every partition the
//! group has committed.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use sluice_protocol::RequestHeader;

use super::str_bytes;
use crate::broker::Broker;
use crate::group::offsets::OffsetEntry;

/// One partition's answer: (partition, entry if committed, error code).
type PartitionAnswer = (i32, Option<OffsetEntry>, i16);

/// Answers an OffsetFetch request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let version = header.api_version;
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in &request.groups {
            let wanted = g.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let member = (g.member_id.as_deref(), g.member_epoch);
            let (code, answers) = fetch(
                broker,
                g.group_id.as_str(),
                member,
                wanted,
                request.require_stable,
            )
            .await;
            let topics = answers
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(str_bytes(&topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, entry, code)| {
                                    let (offset, epoch, metadata) = values(entry);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(&metadata)))
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(code)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    let require_stable = version >= 7 && request.require_stable;
    let (code, answers) = fetch(
        broker,
        request.group_id.as_str(),
        (None, -1),
        wanted,
        require_stable,
    )
    .await;
    let topics = answers
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, entry, partition_code)| {
                            let (offset, epoch, metadata) = values(entry);
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(&metadata)))
                                // v1 has no top-level error: the group's error goes into
                                // every partition.
                                .with_error_code(if version < 2 && code != 0 {
                                    code
                                } else {
                                    partition_code
                                });
                            if version >= 5 {
                                r = r.with_committed_leader_epoch(epoch);
                            }
                            r
                        })
                        .collect(),
                )
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response = response.with_error_code(code);
    }
    response
}

fn values(entry: Option<OffsetEntry>) -> (i64, i32, String) {
    match entry {
        Some(e) => (e.offset, e.leader_epoch, e.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The group-level error code and, per topic, each partition's answer. `member` (v9+) names
/// the consumer-group member asking, checked as Kafka does. With `require_stable` (KIP-447,
/// read_committed consumers) a partition with offsets pending in an open transaction gets
/// UNSTABLE_OFFSET_COMMIT, and the client asks again.
async fn fetch(
    broker: &Broker,
    group_id: &str,
    member: (Option<&str>, i32),
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> (i16, BTreeMap<String, Vec<PartitionAnswer>>) {
    let mut out: BTreeMap<String, Vec<PartitionAnswer>> = BTreeMap::new();
    let code = match broker.groups.home(broker, group_id).await {
        Err(code) => code,
        Ok(_) => broker.groups.get(group_id).map_or(0, |h| {
            let checked = h.group.lock().check_offset_fetch(member.0, member.1);
            checked.err().unwrap_or(0)
        }),
    };
    if code != 0 {
        broker.count_error("OffsetFetch", code);
        for (topic, partitions) in wanted.unwrap_or_default() {
            let entry = out.entry(topic).or_default();
            entry.extend(partitions.into_iter().map(|p| (p, None, code)));
        }
        return (code, out);
    }
    let handle = broker.groups.get(group_id);
    let group = handle.as_ref().map(|h| h.group.lock());
    match wanted {
        Some(wanted) => {
            for (topic, partitions) in wanted {
                let entry = out.entry(topic.clone()).or_default();
                for p in partitions {
                    let key = (topic.clone(), p);
                    let unstable = require_stable
                        && group.as_ref().is_some_and(|g| {
                            g.pending_txn_offsets.values().any(|o| o.contains_key(&key))
                        });
                    if unstable {
                        entry.push((
                            p,
                            None,
                            sluice_protocol::ResponseError::UnstableOffsetCommit.code(),
                        ));
                        continue;
                    }
                    let committed = group.as_ref().and_then(|g| g.offsets.get(&key).cloned());
                    entry.push((p, committed, 0));
                }
            }
        }
        None => {
            if let Some(g) = &group {
                for ((topic, p), committed) in &g.offsets {
                    out.entry(topic.clone())
                        .or_default()
                        .push((*p, Some(committed.clone()), 0));
                }
            }
            for partitions in out.values_mut() {
                partitions.sort_by_key(|(p, _, _)| *p);
            }
        }
    }
    (code, out)
}
