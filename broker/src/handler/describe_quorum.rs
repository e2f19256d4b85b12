//! DescribeQuorum (KIP-595, KIP-836, KIP-853): the metadata Raft group described as KRaft
//! describes its quorum, as partition 0 of `__cluster_metadata`: leader id, leader epoch (the
//! Raft term), high watermark (the commit index), and each voter's log end offset (its matched
//! index) with the times it last answered the leader and last did so caught up.
//!
//! As Kafka's `KafkaRaftClient`: a request that does not name exactly that partition gets
//! UNKNOWN_TOPIC_OR_PARTITION on every partition it names, and a node that does not lead
//! answers NOT_LEADER_OR_FOLLOWER. Every Sluice broker is a voter, so a follower first forwards
//! a client's request to the leader, as a Kafka broker forwards it to the active controller;
//! the Java AdminClient sends it to whichever broker it picks.

use std::time::Duration;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use slog::{Logger, debug};
use sluice_protocol::{RequestHeader, ResponseError};
use sluice_raft::RaftStatus;

use super::str_bytes;
use crate::broker::Broker;
use crate::interbroker::{self, PeerConnection};
use crate::streaming::wal::now_ms;

/// The topic KRaft names its metadata log by.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// How long a follower waits for the leader's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a DescribeQuorum request, forwarding it to the Raft leader when this broker follows.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: DescribeQuorumRequest,
    log: &Logger,
) -> DescribeQuorumResponse {
    let version = header.api_version;
    if !names_the_metadata_partition(&request) {
        return unknown_partitions(&request);
    }
    let status = broker.cluster.raft_status();
    if status.is_leader {
        return describe(broker, &status, version);
    }
    if !interbroker::from_peer(header.client_id.as_deref())
        && let Some(addr) = leader_address(broker, &status)
    {
        match forward(&addr, &request, version).await {
            Ok(response) => return response,
            Err(e) => {
                debug!(log, "forwarding DescribeQuorum to the Raft leader failed"; "leader" => addr, "error" => %e)
            }
        }
    }
    not_leader(&status)
}

fn names_the_metadata_partition(request: &DescribeQuorumRequest) -> bool {
    matches!(&request.topics[..], [t] if t.topic_name.as_str() == METADATA_TOPIC
        && matches!(&t.partitions[..], [p] if p.partition_index == 0))
}

fn unknown_partitions(request: &DescribeQuorumRequest) -> DescribeQuorumResponse {
    let code = ResponseError::UnknownTopicOrPartition.code();
    let topics = request
        .topics
        .iter()
        .map(|t| {
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_leader_id(BrokerId(-1))
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(topics)
}

fn singleton(partition: PartitionData) -> Vec<TopicData> {
    vec![
        TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![partition]),
    ]
}

fn not_leader(status: &RaftStatus) -> DescribeQuorumResponse {
    let partition = PartitionData::default()
        .with_error_code(ResponseError::NotLeaderOrFollower.code())
        .with_error_message(Some(str_bytes(
            "this node does not lead the metadata quorum and could not reach the leader",
        )))
        .with_leader_id(BrokerId(node_id(status.leader)))
        .with_leader_epoch(epoch(status.term));
    DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(singleton(partition))
}

/// The leader's answer, from its Raft status.
fn describe(broker: &Broker, status: &RaftStatus, version: i16) -> DescribeQuorumResponse {
    let now = now_ms();
    let voters = status
        .voters
        .iter()
        .map(|&id| {
            let progress = status.progress.iter().find(|p| p.node_id == id);
            let mut replica = ReplicaState::default()
                .with_replica_id(BrokerId(node_id(Some(id))))
                .with_log_end_offset(progress.map_or(-1, |p| p.matched as i64));
            if version >= 1 {
                // KIP-836: the leader reports no fetch time for itself and `now` as caught up.
                let (fetched, caught_up) = if id == status.node_id {
                    (-1, now)
                } else {
                    (
                        progress.and_then(|p| p.last_contact_ms).unwrap_or(-1),
                        progress.and_then(|p| p.last_caught_up_ms).unwrap_or(-1),
                    )
                };
                replica = replica
                    .with_last_fetch_timestamp(fetched)
                    .with_last_caught_up_timestamp(caught_up);
            }
            replica
        })
        .collect();
    let partition = PartitionData::default()
        .with_error_message(None)
        .with_leader_id(BrokerId(node_id(Some(status.node_id))))
        .with_leader_epoch(epoch(status.term))
        .with_high_watermark(status.commit as i64)
        .with_current_voters(voters);
    let mut response = DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(singleton(partition));
    if version >= 2 {
        response = response.with_nodes(nodes(broker, status));
    }
    response
}

/// KIP-853's nodes: each voter with the Kafka listener its broker registered.
fn nodes(broker: &Broker, status: &RaftStatus) -> Vec<Node> {
    let state = broker.cluster.state();
    status
        .voters
        .iter()
        .map(|&id| {
            let listeners = i32::try_from(id)
                .ok()
                .and_then(|id| state.brokers.get(&id))
                .map(|b| {
                    b.listeners
                        .iter()
                        .map(|l| {
                            Listener::default()
                                .with_name(str_bytes(&l.name))
                                .with_host(str_bytes(&l.host))
                                .with_port(l.port)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Node::default()
                .with_node_id(BrokerId(node_id(Some(id))))
                .with_listeners(listeners)
        })
        .collect()
}

fn leader_address(broker: &Broker, status: &RaftStatus) -> Option<String> {
    let leader = i32::try_from(status.leader?).ok()?;
    let state = broker.cluster.state();
    let l = state.brokers.get(&leader)?.listeners.first()?;
    Some(format!("{}:{}", l.host, l.port))
}

async fn forward(
    addr: &str,
    request: &DescribeQuorumRequest,
    version: i16,
) -> Result<DescribeQuorumResponse, interbroker::PeerError> {
    let mut conn = PeerConnection::connect(addr, FORWARD_TIMEOUT).await?;
    conn.send(request, version).await
}

fn node_id(id: Option<u64>) -> i32 {
    id.and_then(|id| i32::try_from(id).ok()).unwrap_or(-1)
}

fn epoch(term: u64) -> i32 {
    i32::try_from(term).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_quorum_request::{
        PartitionData as RequestPartition, TopicData as RequestTopic,
    };

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            RequestTopic::default()
                .with_topic_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| RequestPartition::default().with_partition_index(p))
                        .collect(),
                ),
        ])
    }

    #[test]
    fn only_partition_zero_of_the_metadata_topic_is_described() {
        assert!(names_the_metadata_partition(&request(METADATA_TOPIC, &[0])));
        assert!(!names_the_metadata_partition(&request(
            METADATA_TOPIC,
            &[1]
        )));
        assert!(!names_the_metadata_partition(&request(
            METADATA_TOPIC,
            &[0, 1]
        )));
        assert!(!names_the_metadata_partition(&request("orders", &[0])));
        assert!(!names_the_metadata_partition(
            &DescribeQuorumRequest::default()
        ));
        let r = unknown_partitions(&request("orders", &[0, 3]));
        let parts = &r.topics[0].partitions;
        assert_eq!(r.topics[0].topic_name.as_str(), "orders");
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.partition_index, p.error_code))
                .collect::<Vec<_>>(),
            vec![(0, 3), (3, 3)]
        );
    }

    #[test]
    fn a_follower_without_a_leader_answers_not_leader() {
        let status = RaftStatus {
            node_id: 2,
            term: 7,
            ..RaftStatus::default()
        };
        let r = not_leader(&status);
        let p = &r.topics[0].partitions[0];
        assert_eq!(r.topics[0].topic_name.as_str(), METADATA_TOPIC);
        assert_eq!((p.partition_index, p.error_code), (0, 6));
        assert_eq!((p.leader_id, p.leader_epoch), (BrokerId(-1), 7));
        // Every version encodes it.
        for v in 0..=2 {
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(&r, &mut buf, v).unwrap();
        }
    }
}
