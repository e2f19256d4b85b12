//! CreateTopics: validates names, partition counts, replication factors and configs, then
//! proposes each topic to the metadata Raft group; `validate_only` stops after validation.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};

use super::{str_bytes, validate_topic_name};
use crate::broker::{Broker, CreateTopicError};
use crate::topic_config::{self, TOPIC_CONFIGS, TopicConfig};

/// Answers a CreateTopics request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: CreateTopicsRequest,
    log: &Logger,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut seen = std::collections::HashSet::new();
    for topic in &request.topics {
        let name = topic.name.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome: Result<(u32, BTreeMap<String, String>), (ResponseError, String)> = (|| {
            if !seen.insert(name.clone()) {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("topic {name} is listed twice"),
                ));
            }
            validate_topic_name(&name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
            if !topic.assignments.is_empty() {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    "manual replica assignment is not supported: partitions are placed on pchannels".into(),
                ));
            }
            let partitions = match topic.num_partitions {
                -1 => broker.config.num_partitions,
                n if n >= 1 => n,
                n => {
                    return Err((
                        ResponseError::InvalidPartitions,
                        format!("number of partitions must be at least 1, got {n}"),
                    ));
                }
            };
            match topic.replication_factor {
                -1 | 1 => {}
                n => {
                    return Err((
                        ResponseError::InvalidReplicationFactor,
                        format!(
                            "replication factor {n} is not available: Sluice runs replication factor 1 today"
                        ),
                    ));
                }
            }
            let mut configs = BTreeMap::new();
            for c in &topic.configs {
                let key = c.name.to_string();
                let Some(value) = c.value.as_ref().map(|v| v.to_string()) else {
                    continue;
                };
                topic_config::validate(&broker.config, &key, &value)
                    .map_err(|m| (ResponseError::InvalidConfig, m))?;
                configs.insert(key, value);
            }
            Ok((partitions as u32, configs))
        })(
        );
        match outcome {
            Err((error, message)) => {
                result = result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message)));
                broker.count_error("CreateTopics", error.code());
            }
            Ok((partitions, configs)) => {
                let created = if request.validate_only {
                    if broker.cluster.state().topics.contains_key(&name) {
                        Err(CreateTopicError::AlreadyExists)
                    } else {
                        Ok(uuid::Uuid::nil())
                    }
                } else {
                    broker
                        .create_topic(&name, partitions, configs.clone())
                        .await
                };
                match created {
                    Ok(topic_id) => {
                        if !request.validate_only {
                            info!(log, "topic created"; "topic" => &name, "partitions" => partitions, "topic_id" => %topic_id);
                        }
                        result = result.with_topic_id(topic_id);
                        if header.api_version >= 5 {
                            result = result
                                .with_num_partitions(partitions as i32)
                                .with_replication_factor(1)
                                .with_configs(Some(describe_configs(broker, &configs)));
                        }
                    }
                    Err(e) => {
                        let code = e.error_code();
                        broker.count_error("CreateTopics", code);
                        result = result
                            .with_error_code(code)
                            .with_error_message(Some(str_bytes(&e.to_string())));
                    }
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn describe_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIGS
        .iter()
        .filter_map(|spec| {
            let (value, is_override) = TopicConfig::describe(&broker.config, overrides, spec.name)?;
            // Config sources as in DescribeConfigs: 1 = topic override, 5 = broker default.
            Some(
                CreatableTopicConfigs::default()
                    .with_name(str_bytes(spec.name))
                    .with_value(Some(str_bytes(&value)))
                    .with_config_source(if is_override { 1 } else { 5 }),
            )
        })
        .collect()
}
