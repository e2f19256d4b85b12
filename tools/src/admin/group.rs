//! `group list|describe|delete|reset-offsets`: consumer groups, asked of their coordinator
//! (FindCoordinator), with committed offsets (OffsetFetch) against log ends (ListOffsets).

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::{Value, json};

use super::offsets::{list_offsets, partitions};
use super::topic::name;
use super::{GroupCmd, ResetTo};
use crate::client::Cluster;
use crate::error::{ToolError, check};
use crate::table::{Output, Table};

/// Kafka's error for a group that still has members.
pub(crate) const NON_EMPTY_GROUP: i16 = 68;

const STATES: [&str; 5] = [
    "Empty",
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Dead",
];

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_owned()))
}

/// A state name as the broker spells it, matched without regard to case.
pub(super) fn canonical_state(s: &str) -> Result<&'static str, String> {
    STATES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(s))
        .copied()
        .ok_or_else(|| format!("unknown group state {s:?}; one of {}", STATES.join(", ")))
}

pub(super) async fn run(cluster: &mut Cluster, cmd: &GroupCmd) -> Result<Output, ToolError> {
    match cmd {
        GroupCmd::List { state } => list(cluster, *state).await,
        GroupCmd::Describe { group } => describe(cluster, group).await,
        GroupCmd::Delete { groups } => delete(cluster, groups).await,
        GroupCmd::ResetOffsets {
            group,
            topic,
            to,
            execute,
        } => reset(cluster, group, topic, to, *execute).await,
    }
}

async fn list(cluster: &mut Cluster, state: Option<&'static str>) -> Result<Output, ToolError> {
    // Every broker coordinates some groups: ask them all.
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for node in cluster.brokers().await? {
        let conn = cluster.broker(node).await?;
        let v = conn.version(kafka_protocol::messages::ApiKey::ListGroups, (0, 4))?;
        if state.is_some() && v < 4 {
            return Err(ToolError::Usage(format!(
                "--state needs ListGroups v4; broker {node} serves up to v{v}"
            )));
        }
        let req = ListGroupsRequest::default().with_states_filter(
            state
                .map(|s| vec![StrBytes::from_static_str(s)])
                .unwrap_or_default(),
        );
        let resp = conn.send(&req, 4).await?;
        check(resp.error_code, None, || {
            format!("list groups on broker {node}")
        })?;
        for g in resp.groups {
            let st = g.group_state.to_string();
            if state.is_some_and(|s| s != st) {
                continue;
            }
            groups.insert(g.group_id.0.to_string(), (st, g.protocol_type.to_string()));
        }
    }
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL_TYPE"]);
    let mut rows = Vec::new();
    for (g, (st, pt)) in &groups {
        table.row([g.as_str(), dash(st), dash(pt)]);
        rows.push(json!({"group": g, "state": st, "protocol_type": pt}));
    }
    Ok(Output::table(&table, Value::Array(rows)))
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// DescribeGroups for one group at its coordinator.
async fn describe_one(
    cluster: &mut Cluster,
    node: i32,
    group: &str,
) -> Result<DescribedGroup, ToolError> {
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    let resp = cluster.broker(node).await?.send(&req, 5).await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| ToolError::Protocol {
            addr: format!("broker {node}"),
            detail: "DescribeGroups answered without the group".into(),
        })?;
    let msg = g.error_message.as_ref().map(|m| m.to_string());
    check(g.error_code, msg.as_deref(), || {
        format!("describe group {group}")
    })?;
    Ok(g)
}

/// Committed offsets of `group` (topic → partition → offset), all topics or only `topic`.
async fn committed(
    cluster: &mut Cluster,
    node: i32,
    group: &str,
    topic: Option<(&str, Vec<i32>)>,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, ToolError> {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topic.map(|(t, parts)| {
            vec![
                OffsetFetchRequestTopic::default()
                    .with_name(name(t))
                    .with_partition_indexes(parts),
            ]
        }));
    // v8 moves everything into `groups`; v7 has all this tool needs.
    let resp = cluster.broker(node).await?.send(&req, 7).await?;
    check(resp.error_code, None, || {
        format!("fetch committed offsets of group {group}")
    })?;
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for t in &resp.topics {
        let tn = t.name.0.to_string();
        for p in &t.partitions {
            check(p.error_code, None, || {
                format!(
                    "fetch committed offset of group {group}, {tn} partition {}",
                    p.partition_index
                )
            })?;
            out.entry(tn.clone())
                .or_default()
                .insert(p.partition_index, p.committed_offset);
        }
    }
    Ok(out)
}

/// The partitions a member was assigned, from the consumer protocol's assignment bytes.
fn decode_assignment(raw: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if raw.len() < 2 {
        return None;
    }
    let mut buf = raw.clone();
    let version = buf.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    )
}

async fn describe(cluster: &mut Cluster, group: &str) -> Result<Output, ToolError> {
    let node = cluster.coordinator(group).await?;
    let g = describe_one(cluster, node, group).await?;
    let offsets = committed(cluster, node, group, None).await?;
    let state = g.group_state.to_string();
    let mut text = format!(
        "Group: {group}  State: {state}  ProtocolType: {}  Protocol: {}  Coordinator: {node}  Members: {}\n\n",
        dash(&g.protocol_type),
        dash(&g.protocol_data),
        g.members.len()
    );
    let mut members = Table::new(&["MEMBER_ID", "CLIENT_ID", "HOST", "ASSIGNMENT"]);
    let mut mjson = Vec::new();
    for m in &g.members {
        let consumer = g.protocol_type.as_str() == "consumer";
        let assignment = if consumer {
            decode_assignment(&m.member_assignment)
        } else {
            None
        };
        let shown = match &assignment {
            None => "-".to_owned(),
            Some(a) if a.is_empty() => "-".to_owned(),
            Some(a) => a
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{t}:{}", ps.join(","))
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        members.row([
            m.member_id.to_string(),
            dash(&m.client_id).to_owned(),
            dash(&m.client_host).to_owned(),
            shown,
        ]);
        mjson.push(json!({
            "member_id": m.member_id.to_string(),
            "group_instance_id": m.group_instance_id.as_ref().map(|s| s.to_string()),
            "client_id": m.client_id.to_string(),
            "host": m.client_host.to_string(),
            "assignment": assignment.map(|a| a.into_iter()
                .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
                .collect::<Vec<_>>()),
        }));
    }
    if !g.members.is_empty() {
        text.push_str(&members.render());
        text.push('\n');
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT_OFFSET",
        "LOG_END_OFFSET",
        "LAG",
    ]);
    let mut ojson = Vec::new();
    for (topic, parts) in &offsets {
        let leaders = partitions(cluster, topic, &[]).await?;
        let leaders: Vec<_> = leaders
            .into_iter()
            .filter(|p| parts.contains_key(&p.partition))
            .collect();
        let ends = list_offsets(cluster, topic, &leaders, -1).await?;
        for (&p, &current) in parts {
            let end = ends.get(&p).map(|v| v.0);
            let lag = match (current, end) {
                (c, Some(e)) if c >= 0 => Some((e - c).max(0)),
                _ => None,
            };
            let show = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
            table.row([
                topic.clone(),
                p.to_string(),
                show((current >= 0).then_some(current)),
                show(end),
                show(lag),
            ]);
            ojson.push(json!({
                "topic": topic,
                "partition": p,
                "current_offset": (current >= 0).then_some(current),
                "log_end_offset": end,
                "lag": lag,
            }));
        }
    }
    text.push_str(&table.render());
    Ok(Output {
        text,
        json: json!({
            "group": group,
            "state": state,
            "protocol_type": g.protocol_type.to_string(),
            "protocol": g.protocol_data.to_string(),
            "coordinator": node,
            "members": mjson,
            "offsets": ojson,
        }),
    })
}

async fn delete(cluster: &mut Cluster, groups: &[String]) -> Result<Output, ToolError> {
    let mut deleted = Vec::new();
    let mut failure = None;
    for group in groups {
        let result = async {
            let node = cluster.coordinator(group).await?;
            let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
            let resp = cluster.broker(node).await?.send(&req, 2).await?;
            for r in &resp.results {
                check(r.error_code, None, || format!("delete group {group}"))?;
            }
            Ok::<(), ToolError>(())
        }
        .await;
        match result {
            Ok(()) => deleted.push(group.clone()),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        if !deleted.is_empty() {
            eprintln!("deleted {}", deleted.join(", "));
        }
        return Err(e);
    }
    Ok(Output::message(
        format!("deleted {}", deleted.join(", ")),
        json!({"deleted": deleted}),
    ))
}

async fn reset(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    to: &ResetTo,
    execute: bool,
) -> Result<Output, ToolError> {
    let node = cluster.coordinator(group).await?;
    let g = describe_one(cluster, node, group).await?;
    if !g.members.is_empty() {
        return Err(ToolError::kafka(
            format!("reset offsets of group {group}"),
            NON_EMPTY_GROUP,
            Some(format!(
                "the group is {} with {} member(s); offsets can only be reset while it is inactive",
                g.group_state.as_str(),
                g.members.len()
            )),
        ));
    }
    let parts = partitions(cluster, topic, &[]).await?;
    let ids: Vec<i32> = parts.iter().map(|p| p.partition).collect();
    let current = committed(cluster, node, group, Some((topic, ids)))
        .await?
        .remove(topic)
        .unwrap_or_default();
    let earliest = list_offsets(cluster, topic, &parts, -2).await?;
    let latest = list_offsets(cluster, topic, &parts, -1).await?;
    let at = match to.to_datetime {
        Some(ts) => Some(list_offsets(cluster, topic, &parts, ts).await?),
        None => None,
    };
    let mut plan = Vec::new();
    for p in &parts {
        let lo = earliest.get(&p.partition).map_or(0, |v| v.0);
        let hi = latest.get(&p.partition).map_or(0, |v| v.0);
        let new = if to.to_earliest {
            lo
        } else if to.to_latest {
            hi
        } else if let Some(n) = to.to_offset {
            // As Kafka's tool does: an offset outside the log moves to its nearest end.
            n.clamp(lo, hi)
        } else {
            // No record at or after the time: the log end.
            let found = at.as_ref().and_then(|m| m.get(&p.partition)).map(|v| v.0);
            found.filter(|&o| o >= 0).unwrap_or(hi)
        };
        let cur = current.get(&p.partition).copied().filter(|&c| c >= 0);
        plan.push((p.partition, cur, new));
    }
    if execute {
        let req = OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_retention_time_ms(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(
                        plan.iter()
                            .map(|&(p, _, new)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(new)
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    ),
            ]);
        let resp = cluster.broker(node).await?.send(&req, 8).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    format!(
                        "commit offset of group {group}, {topic} partition {}",
                        p.partition_index
                    )
                })?;
            }
        }
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT_OFFSET", "NEW_OFFSET"]);
    let mut rows = Vec::new();
    for &(p, cur, new) in &plan {
        table.row([
            topic.to_owned(),
            p.to_string(),
            cur.map_or("-".to_owned(), |c| c.to_string()),
            new.to_string(),
        ]);
        rows.push(
            json!({"topic": topic, "partition": p, "current_offset": cur, "new_offset": new}),
        );
    }
    let mut text = table.render();
    text.push_str(&if execute {
        format!("committed the new offsets for group {group}\n")
    } else {
        "dry run: nothing committed; pass --execute to commit the new offsets\n".to_owned()
    });
    Ok(Output {
        text,
        json: json!({"group": group, "topic": topic, "executed": execute, "partitions": rows}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignments_decode_from_consumer_protocol_bytes() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(name("t"))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).unwrap();
        assert_eq!(
            decode_assignment(&buf.freeze()),
            Some(vec![("t".to_owned(), vec![0, 2])])
        );
        assert_eq!(decode_assignment(&Bytes::new()), None);
    }

    #[test]
    fn states_match_without_case() {
        assert_eq!(canonical_state("stable"), Ok("Stable"));
        assert_eq!(canonical_state("EMPTY"), Ok("Empty"));
        assert!(canonical_state("running").is_err());
    }
}
