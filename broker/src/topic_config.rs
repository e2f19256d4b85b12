//! Per-topic configuration: which Kafka topic configs Sluice honours, their validation, and the
//! effective values (topic override, else the broker default).

use std::collections::BTreeMap;

use crate::config::Config;

/// A topic config Sluice accepts, and where its default comes from.
pub struct TopicConfigSpec {
    /// Kafka's key.
    pub name: &'static str,
    /// What it does in Sluice.
    pub doc: &'static str,
}

/// Topic configs that can be set on create and altered.
pub const TOPIC_CONFIGS: &[TopicConfigSpec] = &[
    TopicConfigSpec {
        name: "retention.ms",
        doc: "time retention; -1 keeps data forever",
    },
    TopicConfigSpec {
        name: "retention.bytes",
        doc: "size retention per partition; -1 is unlimited",
    },
    TopicConfigSpec {
        name: "max.message.bytes",
        doc: "largest record batch accepted",
    },
    TopicConfigSpec {
        name: "message.timestamp.type",
        doc: "CreateTime or LogAppendTime",
    },
    TopicConfigSpec {
        name: "cleanup.policy",
        doc: "delete (compaction is not supported)",
    },
    TopicConfigSpec {
        name: "segment.bytes",
        doc: "segments belong to pchannels: only the broker's log.segment.bytes is accepted",
    },
];

/// The effective configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `retention.ms`; `None` keeps data forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`; `None` is unlimited.
    pub retention_bytes: Option<i64>,
    /// `max.message.bytes`.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms` (Kafka's default: unlimited).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (Kafka 4's default: one hour).
    pub timestamp_after_max_ms: i64,
}

/// Kafka 4's default of `message.timestamp.after.max.ms` (KIP-937).
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 3_600_000;

impl TopicConfig {
    /// Topic overrides over broker defaults. Overrides were validated when they were set.
    pub fn effective(broker: &Config, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let int = |key: &str| overrides.get(key).and_then(|v| v.parse::<i64>().ok());
        TopicConfig {
            retention_ms: match int("retention.ms") {
                Some(ms) => (ms >= 0).then_some(ms),
                None => broker.retention_ms,
            },
            retention_bytes: match int("retention.bytes") {
                Some(b) => (b >= 0).then_some(b),
                None => broker.retention_bytes,
            },
            max_message_bytes: int("max.message.bytes")
                .map_or(broker.message_max_bytes as usize, |b| b.max(0) as usize),
            log_append_time: overrides
                .get("message.timestamp.type")
                .is_some_and(|v| v == "LogAppendTime"),
            timestamp_before_max_ms: int("message.timestamp.before.max.ms").unwrap_or(i64::MAX),
            timestamp_after_max_ms: int("message.timestamp.after.max.ms")
                .unwrap_or(DEFAULT_TIMESTAMP_AFTER_MAX_MS),
        }
    }

    /// The value of `key` as DescribeConfigs reports it, and whether it is a topic override.
    pub fn describe(
        broker: &Config,
        overrides: &BTreeMap<String, String>,
        key: &str,
    ) -> Option<(String, bool)> {
        if let Some(v) = overrides.get(key) {
            return Some((v.clone(), true));
        }
        let effective = TopicConfig::effective(broker, overrides);
        let value = match key {
            "retention.ms" => effective.retention_ms.unwrap_or(-1).to_string(),
            "retention.bytes" => effective.retention_bytes.unwrap_or(-1).to_string(),
            "max.message.bytes" => effective.max_message_bytes.to_string(),
            "message.timestamp.type" => "CreateTime".to_string(),
            "cleanup.policy" => "delete".to_string(),
            "message.timestamp.before.max.ms" => effective.timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => effective.timestamp_after_max_ms.to_string(),
            "segment.bytes" => broker.segment_bytes.to_string(),
            _ => return None,
        };
        Some((value, false))
    }
}

/// Checks one topic config; the error says what is wrong in words a user can act on.
pub fn validate(broker: &Config, key: &str, value: &str) -> Result<(), String> {
    let int = || {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{key} must be an integer, got {value:?}"))
    };
    match key {
        "retention.ms" | "retention.bytes" => {
            if int()? < -1 {
                return Err(format!("{key} must be -1 or more"));
            }
        }
        "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
            if int()? < 0 {
                return Err(format!("{key} must not be negative"));
            }
        }
        "max.message.bytes" => {
            if int()? < 0 {
                return Err("max.message.bytes must not be negative".into());
            }
        }
        "message.timestamp.type" => {
            if value != "CreateTime" && value != "LogAppendTime" {
                return Err("message.timestamp.type must be CreateTime or LogAppendTime".into());
            }
        }
        "cleanup.policy" => {
            if value != "delete" {
                return Err(format!(
                    "cleanup.policy={value} is not supported: Sluice does not compact logs"
                ));
            }
        }
        "segment.bytes" => {
            if int()? != broker.segment_bytes as i64 {
                return Err(format!(
                    "segment.bytes cannot be set per topic: segments belong to pchannels shared by many topics (the broker's log.segment.bytes is {})",
                    broker.segment_bytes
                ));
            }
        }
        _ => return Err(format!("topic config {key} is not supported by Sluice")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_broker_defaults() {
        let broker = Config::default();
        let mut overrides = BTreeMap::new();
        assert_eq!(
            TopicConfig::effective(&broker, &overrides).retention_ms,
            broker.retention_ms
        );
        overrides.insert("retention.ms".to_string(), "-1".to_string());
        overrides.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let c = TopicConfig::effective(&broker, &overrides);
        assert_eq!(c.retention_ms, None);
        assert!(c.log_append_time);
        assert_eq!(
            TopicConfig::describe(&broker, &overrides, "retention.ms"),
            Some(("-1".into(), true))
        );
        assert_eq!(
            TopicConfig::describe(&broker, &overrides, "max.message.bytes"),
            Some((broker.message_max_bytes.to_string(), false))
        );
    }

    #[test]
    fn unsupported_configs_are_refused_with_a_reason() {
        let broker = Config::default();
        assert!(validate(&broker, "retention.ms", "1000").is_ok());
        assert!(validate(&broker, "retention.ms", "-2").is_err());
        assert!(
            validate(&broker, "cleanup.policy", "compact")
                .unwrap_err()
                .contains("compact")
        );
        assert!(
            validate(&broker, "segment.bytes", "1024")
                .unwrap_err()
                .contains("pchannels")
        );
        assert!(
            validate(&broker, "flush.ms", "1")
                .unwrap_err()
                .contains("not supported")
        );
    }
}
