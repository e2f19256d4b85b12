//! DeleteTopics: by name (v0–5) or by topic id (v6+), through the metadata Raft group. The
//! vchannels of a deleted topic are dropped by every pchannel owner as it applies the change.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};
use sluice_raft::command::Command;

use super::str_bytes;
use crate::broker::{Broker, metadata_error_code};

/// Answers a DeleteTopics request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: DeleteTopicsRequest,
    log: &Logger,
) -> DeleteTopicsResponse {
    // v0-5 list names; v6+ list (name or id) pairs.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if header.api_version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, topic_id) in targets {
        let state = broker.cluster.state();
        let found = match &name {
            Some(n) => state.topics.get(n),
            None => state.topic_by_id(&topic_id),
        };
        let mut result = DeletableTopicResult::default().with_topic_id(topic_id);
        if header.api_version < 6 || name.is_some() {
            result = result.with_name(name.as_deref().map(|n| TopicName(str_bytes(n))));
        }
        let Some(topic) = found else {
            let error = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            broker.count_error("DeleteTopics", error.code());
            responses.push(result.with_error_code(error.code()));
            continue;
        };
        let (topic_name, id) = (topic.name.clone(), topic.topic_id);
        result = result
            .with_topic_id(id)
            .with_name(Some(TopicName(str_bytes(&topic_name))));
        match broker
            .cluster
            .propose(Command::DeleteTopic {
                name: topic_name.clone(),
            })
            .await
        {
            Ok(_) => info!(log, "topic deleted"; "topic" => &topic_name, "topic_id" => %id),
            Err(e) => {
                let code = metadata_error_code(&e);
                broker.count_error("DeleteTopics", code);
                result = result.with_error_code(code);
                if header.api_version >= 5 {
                    result = result.with_error_message(Some(str_bytes(&e.to_string())));
                }
            }
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
