//! `cluster status`: the brokers and the controller (DescribeCluster) and the metadata quorum
//! (DescribeQuorum on `__cluster_metadata`, as `kafka-metadata-quorum describe` shows it):
//! leader, term (leader epoch), high watermark, and each voter's log end offset and lag.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeQuorumRequest, DescribeQuorumResponse,
};
use serde_json::json;

use super::topic::name;
use crate::client::Cluster;
use crate::error::{ToolError, check};
use crate::table::{Output, Table};

/// The topic KRaft (and Sluice) describe the metadata quorum as.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// NOT_LEADER_OR_FOLLOWER: asked during an election; retried.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const RETRIES: u32 = 40;
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// One broker: from DescribeCluster when alive, else from the quorum's node list.
#[derive(Debug, Clone, PartialEq)]
struct BrokerRow {
    id: i32,
    endpoint: Option<(String, i32)>,
    rack: Option<String>,
    alive: bool,
}

pub(super) async fn status(cluster: &mut Cluster) -> Result<Output, ToolError> {
    let resp = cluster
        .any()
        .send(&DescribeClusterRequest::default(), 1)
        .await?;
    let msg = resp.error_message.as_ref().map(|m| m.to_string());
    check(resp.error_code, msg.as_deref(), || {
        "describe cluster".into()
    })?;
    let mut brokers: BTreeMap<i32, BrokerRow> = resp
        .brokers
        .iter()
        .map(|b| {
            let row = BrokerRow {
                id: b.broker_id.0,
                endpoint: Some((b.host.to_string(), b.port)),
                rack: b.rack.as_ref().map(|r| r.to_string()),
                alive: true,
            };
            (row.id, row)
        })
        .collect();
    let controller = resp.controller_id.0;
    let quorum = describe_quorum(cluster).await?;
    let q = &quorum.topics[0].partitions[0];
    // Voters DescribeCluster left out are down; KIP-853's node list still has their endpoint.
    for v in &q.current_voters {
        brokers.entry(v.replica_id.0).or_insert_with(|| BrokerRow {
            id: v.replica_id.0,
            endpoint: quorum
                .nodes
                .iter()
                .find(|n| n.node_id == v.replica_id)
                .and_then(|n| n.listeners.first())
                .map(|l| (l.host.to_string(), i32::from(l.port))),
            rack: None,
            alive: false,
        });
    }

    let mut text = format!(
        "Cluster: {}  Controller: {}\n\n",
        resp.cluster_id.as_str(),
        dash_id(controller)
    );
    let mut table = Table::new(&["BROKER", "HOST:PORT", "RACK", "ALIVE"]);
    let mut bjson = Vec::new();
    for b in brokers.values() {
        table.row([
            b.id.to_string(),
            b.endpoint
                .as_ref()
                .map_or("-".to_owned(), |(h, p)| format!("{h}:{p}")),
            b.rack.clone().unwrap_or_else(|| "-".into()),
            if b.alive { "yes" } else { "no" }.to_owned(),
        ]);
        bjson.push(json!({
            "id": b.id,
            "host": b.endpoint.as_ref().map(|(h, _)| h),
            "port": b.endpoint.as_ref().map(|(_, p)| p),
            "rack": b.rack,
            "alive": b.alive,
        }));
    }
    text.push_str(&table.render());

    let now = now_ms();
    let leader_end = q
        .current_voters
        .iter()
        .find(|v| v.replica_id == q.leader_id)
        .map(|v| v.log_end_offset);
    text.push_str(&format!(
        "\nRaft: leader {}  term {}  high watermark {}\n\n",
        dash_id(q.leader_id.0),
        q.leader_epoch,
        q.high_watermark
    ));
    let mut voters = Table::new(&[
        "VOTER",
        "ROLE",
        "LOG_END_OFFSET",
        "LAG",
        "LAST_FETCH",
        "LAST_CAUGHT_UP",
    ]);
    let mut vjson = Vec::new();
    let mut sorted: Vec<&ReplicaState> = q.current_voters.iter().collect();
    sorted.sort_by_key(|v| v.replica_id.0);
    for v in sorted {
        let is_leader = v.replica_id == q.leader_id;
        let lag = lag(leader_end, v.log_end_offset);
        voters.row([
            v.replica_id.0.to_string(),
            if is_leader { "leader" } else { "follower" }.to_owned(),
            known(v.log_end_offset),
            lag.map_or("-".into(), |l| l.to_string()),
            ago(now, v.last_fetch_timestamp),
            ago(now, v.last_caught_up_timestamp),
        ]);
        vjson.push(json!({
            "id": v.replica_id.0,
            "leader": is_leader,
            "log_end_offset": v.log_end_offset,
            "lag": lag,
            "last_fetch_timestamp": v.last_fetch_timestamp,
            "last_caught_up_timestamp": v.last_caught_up_timestamp,
        }));
    }
    text.push_str(&voters.render());
    let json = json!({
        "cluster_id": resp.cluster_id.as_str(),
        "controller": controller,
        "brokers": bjson,
        "raft": {
            "leader": q.leader_id.0,
            "term": q.leader_epoch,
            "high_watermark": q.high_watermark,
            "voters": vjson,
            "observers": q.observers.iter().map(|o| o.replica_id.0).collect::<Vec<_>>(),
        },
    });
    Ok(Output { text, json })
}

/// DescribeQuorum for partition 0 of `__cluster_metadata`, retried while there is no leader.
async fn describe_quorum(cluster: &mut Cluster) -> Result<DescribeQuorumResponse, ToolError> {
    let conn = cluster.any();
    conn.version(ApiKey::DescribeQuorum, (0, 2))?;
    let req = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(name(METADATA_TOPIC))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let mut attempts = 0;
    loop {
        let resp = conn.send(&req, 2).await?;
        let msg = resp.error_message.as_ref().map(|m| m.to_string());
        check(resp.error_code, msg.as_deref(), || {
            "describe the metadata quorum".into()
        })?;
        let Some(p) = resp
            .topics
            .first()
            .filter(|t| t.topic_name.as_str() == METADATA_TOPIC)
            .and_then(|t| t.partitions.first())
        else {
            return Err(ToolError::Protocol {
                addr: conn.addr().to_owned(),
                detail: format!("DescribeQuorum answered without {METADATA_TOPIC} partition 0"),
            });
        };
        if p.error_code == NOT_LEADER_OR_FOLLOWER && attempts < RETRIES {
            attempts += 1;
            tokio::time::sleep(RETRY_DELAY).await;
            continue;
        }
        let msg = p.error_message.as_ref().map(|m| m.to_string());
        check(p.error_code, msg.as_deref(), || {
            "describe the metadata quorum".into()
        })?;
        return Ok(resp);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn dash_id(id: i32) -> String {
    if id < 0 { "-".into() } else { id.to_string() }
}

fn known(v: i64) -> String {
    if v < 0 { "-".into() } else { v.to_string() }
}

/// The leader's log end offset minus the voter's, when both are known.
fn lag(leader_end: Option<i64>, end: i64) -> Option<i64> {
    match leader_end {
        Some(l) if l >= 0 && end >= 0 => Some((l - end).max(0)),
        _ => None,
    }
}

/// `now - ts` as "N ms ago"; `-` when the broker does not know (-1).
fn ago(now: i64, ts: i64) -> String {
    if ts < 0 {
        "-".into()
    } else {
        format!("{} ms ago", (now - ts).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_needs_both_ends() {
        assert_eq!(lag(Some(10), 7), Some(3));
        assert_eq!(lag(Some(10), 12), Some(0));
        assert_eq!(lag(Some(10), -1), None);
        assert_eq!(lag(None, 3), None);
    }

    #[test]
    fn times_print_as_ages() {
        assert_eq!(ago(1_000, 900), "100 ms ago");
        assert_eq!(ago(1_000, -1), "-");
        assert_eq!(ago(1_000, 1_005), "0 ms ago");
        assert_eq!(dash_id(-1), "-");
        assert_eq!(known(-1), "-");
    }
}
