//! CreatePartitions: grows a topic; new partitions are placed on pchannels by the metadata
//! state machine. Shrinking is refused, as in Kafka.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};
use sluice_raft::command::Command;

use super::str_bytes;
use crate::broker::{Broker, metadata_error_code};

/// Answers a CreatePartitions request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: CreatePartitionsRequest,
    log: &Logger,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let current = broker
            .cluster
            .state()
            .topics
            .get(&name)
            .map(|t| t.partitions.len() as i32);
        let refused = match current {
            None => Some((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
            Some(_) if topic.assignments.as_ref().is_some_and(|a| !a.is_empty()) => Some((
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignment is not supported: partitions are placed on pchannels"
                    .to_string(),
            )),
            Some(n) if topic.count < n => Some((
                ResponseError::InvalidPartitions,
                format!(
                    "topic {name} has {n} partitions; the count cannot shrink to {}",
                    topic.count
                ),
            )),
            Some(n) if topic.count == n => Some((
                ResponseError::InvalidPartitions,
                format!("topic {name} already has {n} partitions"),
            )),
            Some(_) => None,
        };
        if let Some((error, message)) = refused {
            broker.count_error("CreatePartitions", error.code());
            results.push(
                result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message))),
            );
            continue;
        }
        if request.validate_only {
            results.push(result);
            continue;
        }
        let command = Command::CreatePartitions {
            name: name.clone(),
            total_partitions: topic.count as u32,
        };
        match broker.cluster.propose(command).await {
            Ok(_) => {
                info!(log, "partitions created"; "topic" => &name, "partitions" => topic.count);
                results.push(result);
            }
            Err(e) => {
                let code = metadata_error_code(&e);
                broker.count_error("CreatePartitions", code);
                results.push(
                    result
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(&e.to_string()))),
                );
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
