//! DescribeConfigs: topic configs (overrides and the broker defaults behind them) and the
//! broker's own configuration, read-only.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use super::str_bytes;
use crate::broker::Broker;
use crate::config::KEYS;
use crate::topic_config::{TOPIC_CONFIGS, TopicConfig};

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource types.
pub const RESOURCE_BROKER: i8 = 4;
/// Config sources (DescribeConfigs v1+).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// The broker key a topic config falls back to, as Kafka names its synonyms.
fn broker_synonym(topic_key: &str) -> Option<&'static str> {
    Some(match topic_key {
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "max.message.bytes" => "message.max.bytes",
        "segment.bytes" => "log.segment.bytes",
        _ => return None,
    })
}

/// Answers a DescribeConfigs request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let state = broker.cluster.state();
    let version = header.api_version;
    let wanted = |keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>, name: &str| {
        keys.as_ref()
            .is_none_or(|k| k.is_empty() || k.iter().any(|x| x.as_str() == name))
    };
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = state.topics.get(resource.resource_name.as_str()) else {
                        return out
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes("topic does not exist")));
                    };
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|spec| wanted(&resource.configuration_keys, spec.name))
                        .filter_map(|spec| {
                            let (value, is_override) =
                                TopicConfig::describe(&broker.config, &topic.configs, spec.name)?;
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(spec.name))
                                .with_value(Some(str_bytes(&value)))
                                .with_config_source(if is_override {
                                    SOURCE_TOPIC
                                } else {
                                    SOURCE_DEFAULT
                                });
                            if version >= 1 && request.include_synonyms {
                                let mut synonyms = Vec::new();
                                if is_override {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(spec.name))
                                            .with_value(Some(str_bytes(&value)))
                                            .with_source(SOURCE_TOPIC),
                                    );
                                }
                                if let Some(key) = broker_synonym(spec.name) {
                                    let default = TopicConfig::describe(
                                        &broker.config,
                                        &Default::default(),
                                        spec.name,
                                    )
                                    .map(|(v, _)| v);
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(key))
                                            .with_value(default.as_deref().map(str_bytes))
                                            .with_source(SOURCE_DEFAULT),
                                    );
                                }
                                entry = entry.with_synonyms(synonyms);
                            }
                            if version >= 3 && request.include_documentation {
                                entry = entry.with_documentation(Some(str_bytes(spec.doc)));
                            }
                            Some(entry)
                        })
                        .collect();
                    out.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let me = broker.node_id().to_string();
                    if !resource.resource_name.is_empty() && resource.resource_name.as_str() != me {
                        return out
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(
                                "this broker describes only its own configuration",
                            )));
                    }
                    let rendered = broker.config.render();
                    let configs = rendered
                        .lines()
                        .filter_map(|line| line.split_once(" = "))
                        .filter(|(k, _)| wanted(&resource.configuration_keys, k))
                        .map(|(k, v)| {
                            let value = v.trim_matches('"').to_string();
                            let default = KEYS.iter().find(|s| s.name == k).map(|s| s.default);
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(&value)))
                                .with_read_only(true)
                                .with_config_source(if default == Some(value.as_str()) {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_STATIC_BROKER
                                });
                            if version >= 3 && request.include_documentation {
                                let doc = KEYS.iter().find(|s| s.name == k).map(|s| s.doc);
                                entry = entry.with_documentation(doc.map(str_bytes));
                            }
                            entry
                        })
                        .collect();
                    out.with_configs(configs)
                }
                _ => out
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(
                        "only TOPIC and BROKER config resources are supported",
                    ))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
