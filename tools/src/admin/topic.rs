//! `topic create|list|describe|alter|delete|add-partitions`.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use super::TopicCmd;
use super::config;
use crate::client::Cluster;
use crate::error::{ToolError, check};
use crate::table::{Output, Table};

const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TIMEOUT_MS: i32 = 30_000;

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub(super) async fn run(cluster: &mut Cluster, cmd: &TopicCmd) -> Result<Output, ToolError> {
    match cmd {
        TopicCmd::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
            validate_only,
        } => {
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(TIMEOUT_MS)
                .with_validate_only(*validate_only)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(name(topic))
                        .with_num_partitions(partitions.unwrap_or(-1))
                        .with_replication_factor(replication_factor.unwrap_or(-1))
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(StrBytes::from_string(k.clone()))
                                        .with_value(Some(StrBytes::from_string(v.clone())))
                                })
                                .collect(),
                        ),
                ]);
            let resp = cluster.any().send(&req, 7).await?;
            let Some(r) = resp.topics.first() else {
                return Err(ToolError::Usage(
                    "CreateTopics answered without a result".into(),
                ));
            };
            if r.error_code == TOPIC_ALREADY_EXISTS && *if_not_exists {
                return Ok(Output::message(
                    format!("topic {topic} exists already"),
                    json!({"topic": topic, "created": false}),
                ));
            }
            let msg = r.error_message.as_ref().map(|m| m.as_str());
            check(r.error_code, msg, || format!("create topic {topic}"))?;
            let verb = if *validate_only {
                "would create"
            } else {
                "created"
            };
            Ok(Output::message(
                format!("{verb} topic {topic} ({} partitions)", r.num_partitions),
                json!({
                    "topic": topic,
                    "created": !validate_only,
                    "topic_id": r.topic_id.to_string(),
                    "partitions": r.num_partitions,
                    "replication_factor": r.replication_factor,
                }),
            ))
        }
        TopicCmd::List { exclude_internal } => {
            let md = cluster.metadata(None, false).await?;
            let mut topics: Vec<&MetadataResponseTopic> = md
                .topics
                .iter()
                .filter(|t| !(*exclude_internal && t.is_internal))
                .collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            let mut table = Table::new(&["TOPIC", "PARTITIONS", "INTERNAL", "TOPIC_ID"]);
            let mut rows = Vec::new();
            for t in topics {
                let n = topic_str(t);
                table.row([
                    n.clone(),
                    t.partitions.len().to_string(),
                    t.is_internal.to_string(),
                    t.topic_id.to_string(),
                ]);
                rows.push(json!({
                    "topic": n,
                    "partitions": t.partitions.len(),
                    "internal": t.is_internal,
                    "topic_id": t.topic_id.to_string(),
                }));
            }
            Ok(Output::table(&table, Value::Array(rows)))
        }
        TopicCmd::Describe { topics } => describe(cluster, topics).await,
        TopicCmd::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                return Err(ToolError::Usage(
                    "nothing to alter: pass --partitions, --config or --delete-config".into(),
                ));
            }
            let mut changes = Vec::new();
            if let Some(total) = partitions {
                create_partitions(cluster, topic, *total, false).await?;
                changes.push(format!("partitions={total}"));
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let target = config::Target::topic(topic);
                config::alter(cluster, &target, configs, delete_configs).await?;
                changes.extend(configs.iter().map(|(k, v)| format!("{k}={v}")));
                changes.extend(delete_configs.iter().map(|k| format!("-{k}")));
            }
            Ok(Output::message(
                format!("altered topic {topic}: {}", changes.join(", ")),
                json!({"topic": topic, "partitions": partitions,
                       "set": configs.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                       "deleted": delete_configs}),
            ))
        }
        TopicCmd::Delete { topics, if_exists } => {
            let req = DeleteTopicsRequest::default().with_timeout_ms(TIMEOUT_MS);
            let v = cluster
                .any()
                .version(kafka_protocol::messages::ApiKey::DeleteTopics, (0, 6))?;
            // v6 names topics in `topics` (name or id); older versions in `topic_names`.
            let req = if v >= 6 {
                req.with_topics(
                    topics
                        .iter()
                        .map(|t| DeleteTopicState::default().with_name(Some(name(t))))
                        .collect(),
                )
            } else {
                req.with_topic_names(topics.iter().map(|t| name(t)).collect())
            };
            let resp = cluster.any().send(&req, 6).await?;
            let mut deleted = Vec::new();
            let mut missing = Vec::new();
            let mut failure = None;
            for r in &resp.responses {
                let t = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                if r.error_code == UNKNOWN_TOPIC_OR_PARTITION && *if_exists {
                    missing.push(t);
                    continue;
                }
                let msg = r.error_message.as_ref().map(|m| m.as_str());
                match check(r.error_code, msg, || format!("delete topic {t}")) {
                    Ok(()) => deleted.push(t),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            if let Some(e) = failure {
                // Deletion is per topic: say what did happen before the error.
                if !deleted.is_empty() {
                    eprintln!("deleted {}", deleted.join(", "));
                }
                return Err(e);
            }
            let mut text = format!("deleted {}", join_or_none(&deleted));
            if !missing.is_empty() {
                text.push_str(&format!("; did not exist: {}", missing.join(", ")));
            }
            Ok(Output::message(
                text,
                json!({"deleted": deleted, "missing": missing}),
            ))
        }
        TopicCmd::AddPartitions {
            topic,
            count,
            validate_only,
        } => {
            let md = cluster
                .metadata(Some(std::slice::from_ref(topic)), false)
                .await?;
            let t = md
                .topics
                .first()
                .ok_or_else(|| ToolError::Usage("no metadata".into()))?;
            check(t.error_code, None, || format!("describe topic {topic}"))?;
            let before = t.partitions.len() as i32;
            let total = before + count;
            create_partitions(cluster, topic, total, *validate_only).await?;
            let verb = if *validate_only { "would grow" } else { "grew" };
            Ok(Output::message(
                format!("{verb} topic {topic} from {before} to {total} partitions"),
                json!({"topic": topic, "before": before, "after": total, "validate_only": validate_only}),
            ))
        }
    }
}

async fn create_partitions(
    cluster: &mut Cluster,
    topic: &str,
    total: i32,
    validate_only: bool,
) -> Result<(), ToolError> {
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_validate_only(validate_only)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(total),
        ]);
    let resp = cluster.any().send(&req, 3).await?;
    for r in &resp.results {
        let msg = r.error_message.as_ref().map(|m| m.as_str());
        check(r.error_code, msg, || {
            format!("grow topic {topic} to {total} partitions")
        })?;
    }
    Ok(())
}

async fn describe(cluster: &mut Cluster, topics: &[String]) -> Result<Output, ToolError> {
    let md = cluster
        .metadata((!topics.is_empty()).then_some(topics), false)
        .await?;
    let mut sorted: Vec<&MetadataResponseTopic> = md.topics.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut text = String::new();
    let mut out = Vec::new();
    for t in sorted {
        let topic = topic_str(t);
        check(t.error_code, None, || format!("describe topic {topic}"))?;
        let overrides = config::describe(cluster, &config::Target::topic(&topic), false).await?;
        let cfg: Vec<String> = overrides
            .iter()
            .map(|c| format!("{}={}", c.name, c.shown_value()))
            .collect();
        text.push_str(&format!(
            "Topic: {topic}  TopicId: {}  Partitions: {}  Configs: {}\n",
            t.topic_id,
            t.partitions.len(),
            if cfg.is_empty() {
                "-".to_owned()
            } else {
                cfg.join(",")
            }
        ));
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        let mut table = Table::new(&["PARTITION", "LEADER", "LEADER_EPOCH", "REPLICAS", "ISR"]);
        let mut pjson = Vec::new();
        for p in parts {
            let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                v.iter()
                    .map(|b| b.0.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            table.row([
                p.partition_index.to_string(),
                p.leader_id.0.to_string(),
                p.leader_epoch.to_string(),
                ids(&p.replica_nodes),
                ids(&p.isr_nodes),
            ]);
            pjson.push(json!({
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "error_code": p.error_code,
            }));
        }
        text.push_str(&table.render());
        text.push('\n');
        out.push(json!({
            "topic": topic,
            "topic_id": t.topic_id.to_string(),
            "internal": t.is_internal,
            "partitions": pjson,
            "configs": overrides.iter().map(|c| (c.name.clone(), json!(c.value))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    Ok(Output {
        text,
        json: Value::Array(out),
    })
}

pub(super) fn topic_str(t: &MetadataResponseTopic) -> String {
    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()
}

fn join_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        items.join(", ")
    }
}
