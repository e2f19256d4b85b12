//! ConsumerGroupHeartbeat (KIP-848): a consumer-protocol member joins, heartbeats, reconciles
//! its assignment or leaves; the answer carries its epoch, its assignment when it changed, and
//! how often to heartbeat.

use std::net::SocketAddr;
use std::time::Instant;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::consumer::heartbeat::validate;
use crate::group::consumer::{self, HeartbeatError, HeartbeatRequest, Settings};

/// The consumer-group settings of this broker's configuration.
pub fn settings(broker: &Broker) -> Settings {
    Settings {
        session_timeout: broker.config.group_consumer_session_timeout,
        assignors: broker.config.group_consumer_assignors.clone(),
    }
}

/// Answers a ConsumerGroupHeartbeat request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let settings = settings(broker);
    let group_id = request.group_id.to_string();
    let heartbeat = decode(header, request, peer);
    let result = match validate(&group_id, &heartbeat, &settings) {
        Err(e) => Err(e),
        Ok(()) => match broker.groups.home(broker, &group_id).await {
            Err(code) => Err(HeartbeatError {
                code,
                message: String::new(),
            }),
            Ok(home) => {
                // Only a join creates the group; any other epoch on an unknown group is from a
                // member the coordinator forgot (it restarted or moved): it must rejoin.
                let handle = if heartbeat.member_epoch == 0 {
                    Some(broker.groups.get_or_create(&group_id, &home))
                } else {
                    broker.groups.get(&group_id)
                };
                match handle {
                    None => Err(HeartbeatError::new(
                        ResponseError::UnknownMemberId,
                        format!("Group {group_id} has no member {}.", heartbeat.member_id),
                    )),
                    Some(handle) => {
                        let topics = broker.cluster.state().topics.clone();
                        handle.group.lock().consumer_heartbeat(
                            heartbeat,
                            &topics,
                            &settings,
                            Instant::now(),
                        )
                    }
                }
            }
        },
    };
    match result {
        Ok(ok) => {
            let interval = broker.config.group_consumer_heartbeat_interval.as_millis();
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(&ok.member_id)))
                .with_member_epoch(ok.member_epoch)
                .with_heartbeat_interval_ms(i32::try_from(interval).unwrap_or(i32::MAX))
                .with_assignment(ok.assignment.map(encode_assignment))
        }
        Err(e) => {
            broker.count_error("ConsumerGroupHeartbeat", e.code);
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code)
                .with_error_message((!e.message.is_empty()).then(|| str_bytes(&e.message)))
        }
    }
}

fn decode(
    header: &RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
    peer: SocketAddr,
) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned: request.topic_partitions.map(|topics| {
            let mut owned = consumer::Assignment::new();
            for t in topics {
                owned.entry(t.topic_id).or_default().extend(t.partitions);
            }
            owned
        }),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        // Kafka reports the member's address as InetAddress.toString() does.
        client_host: format!("/{}", peer.ip()),
    }
}

fn encode_assignment(assignment: consumer::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        assignment
            .into_iter()
            .map(|(topic_id, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions.into_iter().collect())
            })
            .collect(),
    )
}
