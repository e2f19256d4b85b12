//! Errors: this crate's `DecodeError`/`EncodeError`, and Kafka's error codes as `i16`.

use kafka_protocol::messages::ApiKey;

pub use kafka_protocol::ResponseError;

/// A Kafka error code as it travels on the wire.
pub type ErrorCode = i16;

/// The "no error" code.
pub const NONE: ErrorCode = 0;

/// Kafka error codes the broker uses often, as plain `i16` constants.
///
/// Every other code is available through [`ResponseError::code`].
pub mod code {
    use super::ErrorCode;
    /// UNKNOWN_SERVER_ERROR.
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = -1;
    /// OFFSET_OUT_OF_RANGE.
    pub const OFFSET_OUT_OF_RANGE: ErrorCode = 1;
    /// CORRUPT_MESSAGE (a batch failed its CRC or size checks).
    pub const CORRUPT_MESSAGE: ErrorCode = 2;
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = 3;
    /// NOT_LEADER_OR_FOLLOWER.
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = 6;
    /// MESSAGE_TOO_LARGE.
    pub const MESSAGE_TOO_LARGE: ErrorCode = 10;
    /// COORDINATOR_NOT_AVAILABLE.
    pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = 15;
    /// NOT_COORDINATOR.
    pub const NOT_COORDINATOR: ErrorCode = 16;
    /// INVALID_TOPIC_EXCEPTION.
    pub const INVALID_TOPIC_EXCEPTION: ErrorCode = 17;
    /// INVALID_REQUIRED_ACKS.
    pub const INVALID_REQUIRED_ACKS: ErrorCode = 21;
    /// INVALID_TIMESTAMP.
    pub const INVALID_TIMESTAMP: ErrorCode = 32;
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: ErrorCode = 35;
    /// TOPIC_ALREADY_EXISTS.
    pub const TOPIC_ALREADY_EXISTS: ErrorCode = 36;
    /// INVALID_PARTITIONS.
    pub const INVALID_PARTITIONS: ErrorCode = 37;
    /// INVALID_REPLICATION_FACTOR.
    pub const INVALID_REPLICATION_FACTOR: ErrorCode = 38;
    /// INVALID_REQUEST.
    pub const INVALID_REQUEST: ErrorCode = 42;
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT.
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: ErrorCode = 43;
    /// INVALID_CONFIG.
    pub const INVALID_CONFIG: ErrorCode = 40;
    /// UNKNOWN_TOPIC_ID.
    pub const UNKNOWN_TOPIC_ID: ErrorCode = 100;
}

/// Returns the wire code of a Kafka error, `0` for `None`.
pub fn error_code(error: Option<ResponseError>) -> ErrorCode {
    error.map_or(NONE, |e| e.code())
}

/// Why a request could not be turned into a typed message.
///
/// Only framing errors and unsupported versions end a connection; the broker
/// maps the rest to a log line and a closed connection too, since Kafka's own
/// broker cannot answer a request it could not parse.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The 4-byte size prefix announced more than the configured limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The size the prefix announced.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The 4-byte size prefix was negative.
    #[error("negative frame size {size}")]
    NegativeFrameSize {
        /// The size the prefix announced.
        size: i32,
    },
    /// The frame ended before the fixed part of the request header.
    #[error("request header truncated: {len} bytes")]
    TruncatedHeader {
        /// The frame length.
        len: usize,
    },
    /// The request header's client id or tagged fields are malformed.
    #[error("malformed request header (correlation id {correlation_id}): {reason}")]
    MalformedHeader {
        /// The correlation id, which the fixed header part always yields.
        correlation_id: i32,
        /// What was wrong.
        reason: &'static str,
    },
    /// The API key is not one Kafka defines.
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The key as read off the wire.
        api_key: i16,
        /// The correlation id, so the broker can answer or log before closing.
        correlation_id: i32,
    },
    /// The API exists but this version is not served (or not served by this table).
    #[error("unsupported version {api_version} of {api_key:?} (correlation id {correlation_id})")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The requested version.
        api_version: i16,
        /// The correlation id.
        correlation_id: i32,
    },
    /// The body is truncated or malformed for its key and version.
    #[error(
        "malformed {api_key:?} v{api_version} body (correlation id {correlation_id}): {reason}"
    )]
    MalformedBody {
        /// The API.
        api_key: ApiKey,
        /// The version.
        api_version: i16,
        /// The correlation id.
        correlation_id: i32,
        /// What was wrong (the decoder's message).
        reason: String,
    },
}

impl DecodeError {
    /// The correlation id of the failed request, when the header got that far.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            DecodeError::MalformedHeader { correlation_id, .. }
            | DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::MalformedBody { correlation_id, .. } => Some(*correlation_id),
            _ => None,
        }
    }

    /// For an ApiVersions request of an unsupported version: its correlation id.
    ///
    /// Clients send their newest ApiVersions version first and downgrade on
    /// UNSUPPORTED_VERSION, so this request must be answered (KIP-511), with a
    /// v0 body from [`crate::ApiVersionTable::unsupported_version_response`].
    /// Every other decode error ends the connection.
    pub fn api_versions_fallback(&self) -> Option<i32> {
        match self {
            DecodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            } => Some(*correlation_id),
            _ => None,
        }
    }

    /// The Kafka error code closest to this failure (for logs and metrics).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownApiKey { .. } => {
                code::UNSUPPORTED_VERSION
            }
            _ => code::INVALID_REQUEST,
        }
    }
}

/// Why a response could not be encoded: a broker bug, never network input.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// `kafka-protocol` refused the message, e.g. a field set that the
    /// version does not have (build responses from `Default::default()`).
    #[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
    Message {
        /// The API.
        api_key: ApiKey,
        /// The response version.
        api_version: i16,
        /// The encoder's message.
        reason: String,
    },
    /// The response does not fit the 4-byte size prefix.
    #[error("response of {size} bytes does not fit a frame")]
    TooLarge {
        /// The encoded size.
        size: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(
            ResponseError::UnsupportedVersion.code(),
            code::UNSUPPORTED_VERSION
        );
        assert_eq!(ResponseError::CorruptMessage.code(), code::CORRUPT_MESSAGE);
        assert_eq!(
            ResponseError::NotLeaderOrFollower.code(),
            code::NOT_LEADER_OR_FOLLOWER
        );
        assert_eq!(ResponseError::InvalidRequest.code(), code::INVALID_REQUEST);
        assert_eq!(ResponseError::UnknownTopicId.code(), code::UNKNOWN_TOPIC_ID);
        assert_eq!(ResponseError::InvalidConfig.code(), code::INVALID_CONFIG);
        assert_eq!(error_code(None), 0);
        assert_eq!(error_code(Some(ResponseError::MessageTooLarge)), 10);
    }

    #[test]
    fn fallback_only_for_api_versions() {
        let e = DecodeError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            api_version: 9,
            correlation_id: 5,
        };
        assert_eq!(e.api_versions_fallback(), Some(5));
        let e = DecodeError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            api_version: 2,
            correlation_id: 5,
        };
        assert_eq!(e.api_versions_fallback(), None);
        assert_eq!(e.correlation_id(), Some(5));
        assert_eq!(e.error_code(), code::UNSUPPORTED_VERSION);
    }
}
