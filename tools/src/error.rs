//! The tools' error type: what went wrong, what to do about it, and the exit code scripts see.

use kafka_protocol::ResponseError;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code when the broker answered with a Kafka error code.
pub const EXIT_KAFKA: i32 = 1;
/// Exit code for bad usage, an unreachable broker or an unreadable answer.
pub const EXIT_USAGE: i32 = 2;

/// Why a tool command failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The broker could not be reached, or the connection broke.
    #[error("cannot talk to {addr}: {detail}")]
    Connection {
        /// The `host:port` tried.
        addr: String,
        /// What the socket said.
        detail: String,
    },
    /// The broker answered, but not in a way the client can read.
    #[error("unexpected answer from {addr}: {detail}")]
    Protocol {
        /// The broker.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// The broker refused the request with a Kafka error code.
    #[error("{context}: {} ({code}){}", error_name(*code), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// What was being done ("create topic orders").
        context: String,
        /// The Kafka error code.
        code: i16,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
}

impl ToolError {
    /// A Kafka error from a response's error code and optional message.
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<String>) -> Self {
        ToolError::Kafka {
            context: context.into(),
            code,
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Kafka { .. } => EXIT_KAFKA,
            _ => EXIT_USAGE,
        }
    }

    /// A sentence on what to do next, when there is an obvious one.
    pub fn hint(&self) -> Option<String> {
        match self {
            ToolError::Connection { addr, .. } => Some(format!(
                "check that a broker listens on {addr}, or pass --bootstrap-server HOST:PORT"
            )),
            ToolError::Kafka { code, .. } => kafka_hint(*code).map(str::to_owned),
            _ => None,
        }
    }
}

/// Checks a response error code: `Ok` for 0, a [`ToolError::Kafka`] otherwise.
pub fn check(
    code: i16,
    message: Option<&str>,
    context: impl FnOnce() -> String,
) -> Result<(), ToolError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ToolError::kafka(
            context(),
            code,
            message.map(str::to_owned),
        ))
    }
}

/// Kafka's name of an error code, as Java's `Errors` enum spells it (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => screaming_snake(&e.to_string()),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn kafka_hint(code: i16) -> Option<&'static str> {
    Some(match code {
        1 => "the offset is outside the log; see `sluice-admin offsets TOPIC` for the valid range",
        3 => "the topic or partition does not exist; see `sluice-admin topic list`",
        7 => "the request timed out on the broker; retry, or raise --timeout-ms",
        10 => "the record is larger than the broker's message.max.bytes",
        17 => "topic names use only ASCII letters, digits, '.', '_' and '-' (at most 249)",
        36 => "the topic exists already; pass --if-not-exists to accept that",
        37 => "a topic's partition count can only grow; see `sluice-admin topic describe TOPIC`",
        38 => "Sluice keeps one replica per partition today; leave --replication-factor out",
        40 => {
            "see `sluice-admin config describe --topic TOPIC --all` for the keys and their values"
        }
        35 => "the broker does not serve the version this tool needs",
        14..=16 => "the group coordinator is moving or loading; retry in a moment",
        68 => {
            "the group still has members; stop its consumers first (see `sluice-admin group describe GROUP`)"
        }
        69 => "no such group; see `sluice-admin group list`",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_java_errors_enum() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn exit_codes_separate_kafka_errors_from_usage() {
        assert_eq!(ToolError::kafka("x", 3, None).exit_code(), EXIT_KAFKA);
        assert_eq!(ToolError::Usage("bad".into()).exit_code(), EXIT_USAGE);
        let conn = ToolError::Connection {
            addr: "h:1".into(),
            detail: "refused".into(),
        };
        assert_eq!(conn.exit_code(), EXIT_USAGE);
        assert!(conn.hint().unwrap().contains("--bootstrap-server"));
    }

    #[test]
    fn kafka_error_message_names_code_and_context() {
        let e = ToolError::kafka(
            "create topic t",
            36,
            Some("Topic 't' already exists.".into()),
        );
        assert_eq!(
            e.to_string(),
            "create topic t: TOPIC_ALREADY_EXISTS (36): Topic 't' already exists."
        );
        assert!(e.hint().unwrap().contains("--if-not-exists"));
    }
}
