//! AlterConfigs (legacy, whole-set) and IncrementalAlterConfigs (KIP-339): topic config
//! changes validated against what Sluice honours and applied through the metadata Raft group.
//! Broker configs come from the config file and are read-only here.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};
use sluice_raft::command::Command;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::{Broker, metadata_error_code};
use crate::topic_config;

/// What to change in one topic's overrides.
struct Change {
    set: BTreeMap<String, String>,
    delete: Vec<String>,
}

/// Answers a legacy AlterConfigs request: the given configs replace all of the topic's overrides.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: AlterConfigsRequest,
    log: &Logger,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in &request.resources {
        let name = resource.resource_name.to_string();
        let outcome = match check_resource(broker, resource.resource_type, &name) {
            Err(e) => Err(e),
            Ok(current) => {
                let mut set = BTreeMap::new();
                let mut problem = None;
                for c in &resource.configs {
                    let key = c.name.to_string();
                    if let Some(value) = c.value.as_ref().map(|v| v.to_string()) {
                        if let Err(m) = topic_config::validate(&broker.config, &key, &value) {
                            problem = Some((ResponseError::InvalidConfig, m));
                        }
                        set.insert(key, value);
                    }
                }
                match problem {
                    Some(p) => Err(p),
                    None => {
                        let delete = current
                            .keys()
                            .filter(|k| !set.contains_key(*k))
                            .cloned()
                            .collect();
                        apply(
                            broker,
                            &name,
                            Change { set, delete },
                            request.validate_only,
                            log,
                        )
                        .await
                    }
                }
            }
        };
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        if let Err((error, message)) = outcome {
            broker.count_error("AlterConfigs", error.code());
            out = out
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&message)));
        }
        responses.push(out);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Answers an IncrementalAlterConfigs request: SET and DELETE per key (APPEND and SUBTRACT
/// apply to list configs; the only one, `cleanup.policy`, has the single value `delete`).
pub async fn handle_incremental(
    broker: &Broker,
    _header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
    log: &Logger,
) -> IncrementalAlterConfigsResponse {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let mut responses = Vec::new();
    for resource in &request.resources {
        let name = resource.resource_name.to_string();
        let outcome = match check_resource(broker, resource.resource_type, &name) {
            Err(e) => Err(e),
            Ok(_) => {
                let mut change = Change {
                    set: BTreeMap::new(),
                    delete: Vec::new(),
                };
                let mut problem = None;
                for c in &resource.configs {
                    let key = c.name.to_string();
                    match (c.config_operation, c.value.as_ref().map(|v| v.to_string())) {
                        (SET, Some(value)) => {
                            if let Err(m) = topic_config::validate(&broker.config, &key, &value) {
                                problem = Some((ResponseError::InvalidConfig, m));
                            }
                            change.set.insert(key, value);
                        }
                        (SET, None) => {
                            problem = Some((
                                ResponseError::InvalidConfig,
                                format!("SET {key} needs a value"),
                            ))
                        }
                        (DELETE, _) => {
                            if topic_config::TOPIC_CONFIGS.iter().all(|s| s.name != key) {
                                problem = Some((
                                    ResponseError::InvalidConfig,
                                    format!("topic config {key} is not supported by Sluice"),
                                ));
                            }
                            change.delete.push(key);
                        }
                        (op, _) => {
                            problem = Some((
                                ResponseError::InvalidConfig,
                                format!(
                                    "operation {op} on {key}: APPEND and SUBTRACT apply to list configs, which Sluice does not have"
                                ),
                            ))
                        }
                    }
                }
                match problem {
                    Some(p) => Err(p),
                    None => apply(broker, &name, change, request.validate_only, log).await,
                }
            }
        };
        let mut out = IncrementalResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        if let Err((error, message)) = outcome {
            broker.count_error("IncrementalAlterConfigs", error.code());
            out = out
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&message)));
        }
        responses.push(out);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The topic's current overrides, or why the resource cannot be altered.
fn check_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    match resource_type {
        RESOURCE_TOPIC => broker
            .cluster
            .state()
            .topics
            .get(name)
            .map(|t| t.configs.clone())
            .ok_or((ResponseError::UnknownTopicOrPartition, format!("topic {name} does not exist"))),
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest,
            "broker configs are read-only at run time: set them in the config file, SLUICE_* variables or flags".into(),
        )),
        _ => Err((ResponseError::InvalidRequest, "only TOPIC config resources can be altered".into())),
    }
}

async fn apply(
    broker: &Broker,
    name: &str,
    change: Change,
    validate_only: bool,
    log: &Logger,
) -> Result<(), (ResponseError, String)> {
    if validate_only {
        return Ok(());
    }
    let command = Command::AlterTopicConfigs {
        name: name.to_string(),
        set: change.set.clone(),
        delete: change.delete.clone(),
    };
    match broker.cluster.propose(command).await {
        Ok(_) => {
            info!(log, "topic configs altered"; "topic" => name, "set" => ?change.set, "deleted" => ?change.delete);
            Ok(())
        }
        Err(e) => Err((
            ResponseError::try_from_code(metadata_error_code(&e))
                .unwrap_or(ResponseError::UnknownServerError),
            e.to_string(),
        )),
    }
}
