//! `offsets TOPIC`: earliest/latest offsets per partition or the offset at a time (ListOffsets,
//! sent to each partition's leader), plus the partition lookup `produce` and `consume` share.

use std::collections::BTreeMap;

use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use serde_json::{Value, json};

use super::OffsetsArgs;
use super::topic::name;
use crate::client::Cluster;
use crate::error::{ToolError, check};
use crate::table::{Output, Table};

/// A partition and the broker that leads it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartitionLeader {
    pub partition: i32,
    pub leader: i32,
}

/// The partitions of `topic` (only `only` when not empty), sorted, with their leaders.
pub(super) async fn partitions(
    cluster: &mut Cluster,
    topic: &str,
    only: &[i32],
) -> Result<Vec<PartitionLeader>, ToolError> {
    let md = cluster.metadata(Some(&[topic.to_owned()]), false).await?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| ToolError::Usage(format!("no metadata for topic {topic}")))?;
    check(t.error_code, None, || format!("look up topic {topic}"))?;
    let mut out: Vec<PartitionLeader> = t
        .partitions
        .iter()
        .map(|p| PartitionLeader {
            partition: p.partition_index,
            leader: p.leader_id.0,
        })
        .collect();
    out.sort_by_key(|p| p.partition);
    for want in only {
        if !out.iter().any(|p| p.partition == *want) {
            return Err(ToolError::kafka(
                format!(
                    "topic {topic} has {} partitions; partition {want}",
                    out.len()
                ),
                3,
                None,
            ));
        }
    }
    if !only.is_empty() {
        out.retain(|p| only.contains(&p.partition));
    }
    Ok(out)
}

/// ListOffsets for `timestamp` (-2 earliest, -1 latest, else ms): partition → (offset, timestamp).
pub(super) async fn list_offsets(
    cluster: &mut Cluster,
    topic: &str,
    parts: &[PartitionLeader],
    timestamp: i64,
) -> Result<BTreeMap<i32, (i64, i64)>, ToolError> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in parts {
        by_leader.entry(p.leader).or_default().push(p.partition);
    }
    let mut out = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    ),
            ]);
        let resp = cluster.broker(leader).await?.send(&req, 7).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    format!("list offsets of {topic} partition {}", p.partition_index)
                })?;
                out.insert(p.partition_index, (p.offset, p.timestamp));
            }
        }
    }
    if let Some(p) = parts.iter().find(|p| !out.contains_key(&p.partition)) {
        return Err(ToolError::Protocol {
            addr: format!("broker {}", p.leader),
            detail: format!("ListOffsets answer lacks {topic} partition {}", p.partition),
        });
    }
    Ok(out)
}

pub(super) async fn run(cluster: &mut Cluster, args: &OffsetsArgs) -> Result<Output, ToolError> {
    let topic = &args.topic;
    let parts = partitions(cluster, topic, &args.partitions).await?;
    let mut rows = Vec::new();
    let table = match args.time {
        None => {
            let earliest = list_offsets(cluster, topic, &parts, -2).await?;
            let latest = list_offsets(cluster, topic, &parts, -1).await?;
            let mut table = Table::new(&["TOPIC", "PARTITION", "EARLIEST", "LATEST", "RECORDS"]);
            for p in &parts {
                let e = earliest.get(&p.partition).map_or(-1, |v| v.0);
                let l = latest.get(&p.partition).map_or(-1, |v| v.0);
                table.row([
                    topic.clone(),
                    p.partition.to_string(),
                    e.to_string(),
                    l.to_string(),
                    (l - e).to_string(),
                ]);
                rows.push(
                    json!({"topic": topic, "partition": p.partition, "earliest": e, "latest": l}),
                );
            }
            table
        }
        Some(ts) => {
            let found = list_offsets(cluster, topic, &parts, ts).await?;
            let mut table = Table::new(&["TOPIC", "PARTITION", "OFFSET", "TIMESTAMP"]);
            for p in &parts {
                let (o, t) = found.get(&p.partition).copied().unwrap_or((-1, -1));
                // -1: no record at or after the time.
                table.row([
                    topic.clone(),
                    p.partition.to_string(),
                    o.to_string(),
                    t.to_string(),
                ]);
                rows.push(
                    json!({"topic": topic, "partition": p.partition, "offset": o, "timestamp": t}),
                );
            }
            table
        }
    };
    Ok(Output::table(&table, Value::Array(rows)))
}
