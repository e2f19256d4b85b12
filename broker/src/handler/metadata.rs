//! Metadata: brokers, controller, and topics with their partitions' leaders, answered from the
//! applied Raft state. Unknown topics are created here when `auto.create.topics.enable` is on
//! and the client allows it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};
use sluice_raft::state::{MetadataState, TopicInfo};

use super::{route, str_bytes, validate_topic_name};
use crate::broker::Broker;

/// Answers a Metadata request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: MetadataRequest,
    log: &Logger,
) -> MetadataResponse {
    let version = header.api_version;
    let mut state = broker.cluster.state();
    let requested: Option<Vec<Requested>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => Requested::Name(name.to_string()),
                None => Requested::Id(t.topic_id),
            })
            .collect()
    });

    // Auto-creation: v4+ carries the client's allow_auto_topic_creation; older versions allow.
    let allow =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    if let (Some(requested), true) = (&requested, allow) {
        let missing: Vec<&str> = requested
            .iter()
            .filter_map(|r| match r {
                Requested::Name(n)
                    if !state.topics.contains_key(n) && validate_topic_name(n).is_ok() =>
                {
                    Some(n.as_str())
                }
                _ => None,
            })
            .collect();
        for name in missing {
            match broker
                .create_topic(
                    name,
                    broker.config.num_partitions as u32,
                    Default::default(),
                )
                .await
            {
                Ok(_) => {
                    info!(log, "auto-created topic"; "topic" => name, "partitions" => broker.config.num_partitions)
                }
                Err(e) => info!(log, "auto-creating topic failed"; "topic" => name, "error" => %e),
            }
        }
        state = broker.cluster.state();
    }

    let topics: Vec<MetadataResponseTopic> = match requested {
        None => state
            .topics
            .values()
            .map(|t| topic_entry(&state, t))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|r| {
                let found = match &r {
                    Requested::Name(n) => state.topics.get(n),
                    Requested::Id(id) => state.topic_by_id(id),
                };
                match (found, r) {
                    (Some(t), _) => topic_entry(&state, t),
                    (None, Requested::Name(n)) => {
                        let error = if validate_topic_name(&n).is_err() {
                            ResponseError::InvalidTopicException
                        } else if allow {
                            // Creation was proposed but this broker has not applied it yet.
                            ResponseError::LeaderNotAvailable
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(str_bytes(&n))))
                            .with_error_code(error.code())
                    }
                    (None, Requested::Id(id)) => MetadataResponseTopic::default()
                        .with_topic_id(id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                }
            })
            .collect(),
    };

    let brokers = broker
        .cluster
        .live_brokers(&state)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&broker.cluster.cluster_id(&state))))
        .with_controller_id(BrokerId(broker.cluster.controller_id()))
        .with_topics(topics)
}

enum Requested {
    Name(String),
    Id(uuid::Uuid),
}

fn topic_entry(state: &MetadataState, topic: &TopicInfo) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions.len() as i32)
        .map(|index| {
            let r = route(state, &topic.name, index).expect("partition of a listed topic");
            let (error, leader) = match r.leader {
                Some(id) => (0, id),
                None => (ResponseError::LeaderNotAvailable.code(), -1),
            };
            let replicas = if leader >= 0 {
                vec![BrokerId(leader)]
            } else {
                Vec::new()
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(r.leader_epoch)
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
