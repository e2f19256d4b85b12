//! `config describe|set|delete` for topic and broker resources (DescribeConfigs,
//! IncrementalAlterConfigs).

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use super::{ConfigCmd, Resource};
use crate::client::{Cluster, Connection};
use crate::error::{ToolError, check};
use crate::table::{Output, Table};

/// ConfigResource.Type TOPIC.
const RESOURCE_TOPIC: i8 = 2;
/// ConfigResource.Type BROKER.
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations (KIP-339).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// DescribeConfigs `config_source` of a built-in default.
const SOURCE_DEFAULT: i8 = 5;
/// Sources that are overrides: dynamic topic, dynamic broker, dynamic broker default.
const OVERRIDE_SOURCES: [i8; 3] = [1, 2, 3];

/// A config resource: a topic, or a broker by id.
pub(super) struct Target {
    resource_type: i8,
    name: String,
    broker: Option<i32>,
}

impl Target {
    /// The configs of topic `topic`.
    pub(super) fn topic(topic: &str) -> Self {
        Target {
            resource_type: RESOURCE_TOPIC,
            name: topic.to_owned(),
            broker: None,
        }
    }

    /// The configs of broker `id`.
    pub(super) fn broker(id: i32) -> Self {
        Target {
            resource_type: RESOURCE_BROKER,
            name: id.to_string(),
            broker: Some(id),
        }
    }

    async fn resolve(cluster: &mut Cluster, resource: &Resource) -> Result<Self, ToolError> {
        if let Some(topic) = &resource.topic {
            return Ok(Target::topic(topic));
        }
        let id = match resource.broker.flatten() {
            Some(id) => id,
            None => {
                let md = cluster.metadata(Some(&[]), false).await?;
                let bootstrap = cluster.any().addr().to_owned();
                let by_addr = md
                    .brokers
                    .iter()
                    .find(|b| format!("{}:{}", b.host.as_str(), b.port) == bootstrap);
                match (md.brokers.len(), by_addr) {
                    (1, _) => md.brokers[0].node_id.0,
                    (_, Some(b)) => b.node_id.0,
                    _ => {
                        return Err(ToolError::Usage(
                            "several brokers: name one with --broker ID".into(),
                        ));
                    }
                }
            }
        };
        Ok(Target::broker(id))
    }

    fn label(&self) -> String {
        match self.broker {
            Some(id) => format!("broker {id}"),
            None => format!("topic {}", self.name),
        }
    }

    /// Broker configs are answered by that broker; topic configs by any.
    async fn connection<'a>(
        &self,
        cluster: &'a mut Cluster,
    ) -> Result<&'a mut Connection, ToolError> {
        match self.broker {
            Some(id) => {
                cluster.metadata(Some(&[]), false).await?;
                cluster.broker(id).await
            }
            None => Ok(cluster.any()),
        }
    }
}

/// One config as DescribeConfigs reports it.
pub(super) struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
}

impl ConfigEntry {
    /// The value as printed: sensitive values hidden, null as `null`.
    pub(super) fn shown_value(&self) -> String {
        match (&self.value, self.sensitive) {
            (_, true) => "(sensitive)".to_owned(),
            (Some(v), false) => v.clone(),
            (None, false) => "null".to_owned(),
        }
    }
}

/// The name the Java AdminClient gives a config source.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        SOURCE_DEFAULT => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// The configs of `target`: every one, or only overrides.
pub(super) async fn describe(
    cluster: &mut Cluster,
    target: &Target,
    all: bool,
) -> Result<Vec<ConfigEntry>, ToolError> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(target.resource_type)
            .with_resource_name(StrBytes::from_string(target.name.clone()))
            .with_configuration_keys(None),
    ]);
    let resp = target.connection(cluster).await?.send(&req, 4).await?;
    let mut entries = Vec::new();
    for r in &resp.results {
        let msg = r.error_message.as_ref().map(|m| m.as_str());
        check(r.error_code, msg, || {
            format!("describe configs of {}", target.label())
        })?;
        for c in &r.configs {
            if !all && !OVERRIDE_SOURCES.contains(&c.config_source) {
                continue;
            }
            entries.push(ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: c.config_source,
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Sets and removes configs of `target` in one IncrementalAlterConfigs request.
pub(super) async fn alter(
    cluster: &mut Cluster,
    target: &Target,
    set: &[(String, String)],
    delete: &[String],
) -> Result<(), ToolError> {
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(OP_SET)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.clone()))
            .with_config_operation(OP_DELETE)
            .with_value(None)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(target.resource_type)
            .with_resource_name(StrBytes::from_string(target.name.clone()))
            .with_configs(configs),
    ]);
    let resp = target.connection(cluster).await?.send(&req, 1).await?;
    for r in &resp.responses {
        let msg = r.error_message.as_ref().map(|m| m.as_str());
        check(r.error_code, msg, || {
            format!("alter configs of {}", target.label())
        })?;
    }
    Ok(())
}

pub(super) async fn run(cluster: &mut Cluster, cmd: &ConfigCmd) -> Result<Output, ToolError> {
    match cmd {
        ConfigCmd::Describe { resource, all } => {
            let target = Target::resolve(cluster, resource).await?;
            let entries = describe(cluster, &target, *all).await?;
            let mut table = Table::new(&["NAME", "VALUE", "SOURCE", "READ_ONLY"]);
            let mut rows = Vec::new();
            for e in &entries {
                table.row([
                    e.name.clone(),
                    e.shown_value(),
                    source_name(e.source).to_owned(),
                    e.read_only.to_string(),
                ]);
                rows.push(json!({
                    "name": e.name,
                    "value": if e.sensitive { Value::Null } else { json!(e.value) },
                    "source": source_name(e.source),
                    "read_only": e.read_only,
                    "sensitive": e.sensitive,
                }));
            }
            let mut out =
                Output::table(&table, json!({"resource": target.label(), "configs": rows}));
            if entries.is_empty() && !all {
                out.text = format!(
                    "{} has no config overrides (--all shows every config)\n",
                    target.label()
                );
            }
            Ok(out)
        }
        ConfigCmd::Set { resource, configs } => {
            let target = Target::resolve(cluster, resource).await?;
            alter(cluster, &target, configs, &[]).await?;
            let shown: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Ok(Output::message(
                format!("updated {}: {}", target.label(), shown.join(", ")),
                json!({"resource": target.label(),
                       "set": configs.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()}),
            ))
        }
        ConfigCmd::Delete { resource, keys } => {
            let target = Target::resolve(cluster, resource).await?;
            alter(cluster, &target, &[], keys).await?;
            Ok(Output::message(
                format!("removed from {}: {}", target.label(), keys.join(", ")),
                json!({"resource": target.label(), "deleted": keys}),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_use_java_admin_names() {
        assert_eq!(source_name(1), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(source_name(SOURCE_DEFAULT), "DEFAULT_CONFIG");
        assert_eq!(source_name(42), "UNKNOWN");
    }

    #[test]
    fn sensitive_values_are_hidden() {
        let e = ConfigEntry {
            name: "p".into(),
            value: Some("s3cret".into()),
            source: 1,
            read_only: false,
            sensitive: true,
        };
        assert_eq!(e.shown_value(), "(sensitive)");
        let e = ConfigEntry {
            sensitive: false,
            value: None,
            ..e
        };
        assert_eq!(e.shown_value(), "null");
    }
}
