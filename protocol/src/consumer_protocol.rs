//! The consumer protocol's embedded messages: the subscription a classic-group member puts in
//! its JoinGroup protocol metadata and the assignment the leader hands each member through
//! SyncGroup (`ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`, KIP-429's owned
//! partitions included). The group protocol carries them as opaque bytes; they are walked for
//! bounds before `kafka-protocol` decodes them, as requests are (see [`crate::bounds`]).

use bytes::Bytes;
use kafka_protocol::protocol::Decodable;

use crate::bounds::{self, BoundsError, Field, Kind};

pub use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};

/// The newest version of both messages; newer ones are read as this one, as the Java client's
/// `ConsumerProtocol.checkSubscriptionVersion` does (later versions only append fields).
pub const LATEST_VERSION: i16 = 3;

/// Why an embedded consumer-protocol message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerProtocolError {
    /// Fewer than the two bytes of the version.
    #[error("no version")]
    NoVersion,
    /// A negative version.
    #[error("unsupported version {0}")]
    NegativeVersion(i16),
    /// A count or length that does not fit the bytes.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    /// `kafka-protocol` refused the bytes.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// `TopicPartition` of both messages: a topic name and its partition ids.
#[rustfmt::skip]
const TOPIC_PARTITION: &[Field] = &[
    Field { kind: Kind::String, min: 0, max: 32767, tag: -1 },
    Field { kind: Kind::Array(&Kind::Int32), min: 0, max: 32767, tag: -1 },
];

/// Kafka's `ConsumerProtocolSubscription.json`, versions 0-3, never flexible.
#[rustfmt::skip]
const SUBSCRIPTION: &[Field] = &[
    // Topics
    Field { kind: Kind::Array(&Kind::String), min: 0, max: 32767, tag: -1 },
    // UserData
    Field { kind: Kind::Bytes, min: 0, max: 32767, tag: -1 },
    // OwnedPartitions
    Field { kind: Kind::Array(&Kind::Struct(TOPIC_PARTITION)), min: 1, max: 32767, tag: -1 },
    // GenerationId
    Field { kind: Kind::Int32, min: 2, max: 32767, tag: -1 },
    // RackId
    Field { kind: Kind::String, min: 3, max: 32767, tag: -1 },
];

/// Kafka's `ConsumerProtocolAssignment.json`, versions 0-3, never flexible.
#[rustfmt::skip]
const ASSIGNMENT: &[Field] = &[
    // AssignedPartitions
    Field { kind: Kind::Array(&Kind::Struct(TOPIC_PARTITION)), min: 0, max: 32767, tag: -1 },
    // UserData
    Field { kind: Kind::Bytes, min: 0, max: 32767, tag: -1 },
];

/// Decodes a member's subscription (JoinGroup protocol metadata of protocol type `consumer`).
pub fn decode_subscription(
    bytes: &Bytes,
) -> Result<ConsumerProtocolSubscription, ConsumerProtocolError> {
    decode(bytes, SUBSCRIPTION)
}

/// Decodes a member's assignment (a SyncGroup assignment of protocol type `consumer`).
pub fn decode_assignment(
    bytes: &Bytes,
) -> Result<ConsumerProtocolAssignment, ConsumerProtocolError> {
    decode(bytes, ASSIGNMENT)
}

fn decode<M: Decodable>(
    bytes: &Bytes,
    fields: &'static [Field],
) -> Result<M, ConsumerProtocolError> {
    let Some(head) = bytes.get(..2) else {
        return Err(ConsumerProtocolError::NoVersion);
    };
    let version = i16::from_be_bytes([head[0], head[1]]);
    if version < 0 {
        return Err(ConsumerProtocolError::NegativeVersion(version));
    }
    let version = version.min(LATEST_VERSION);
    let mut body = bytes.slice(2..);
    // Trailing bytes are fields of a newer version (or padding): ignored, as Kafka does.
    bounds::check_fields(fields, version, false, &body)?;
    M::decode(&mut body, version).map_err(|e| ConsumerProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTp;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTp;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    fn topic(name: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(name))
    }

    fn encoded<M: Encodable>(message: &M, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        message.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    fn subscription() -> ConsumerProtocolSubscription {
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")])
            .with_owned_partitions(vec![
                OwnedTp::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![0, 3, 7]),
            ])
            .with_generation_id(4)
    }

    #[test]
    fn every_version_round_trips_and_newer_versions_read_as_the_latest() {
        let s = subscription().with_rack_id(Some(StrBytes::from_static_str("r1")));
        for v in 0..=3 {
            let got = decode_subscription(&encoded(&s, v)).unwrap();
            assert_eq!(got.topics, s.topics, "v{v}");
            let owned: Vec<i32> = got
                .owned_partitions
                .iter()
                .flat_map(|t| t.partitions.clone())
                .collect();
            assert_eq!(owned, if v >= 1 { vec![0, 3, 7] } else { vec![] }, "v{v}");
        }
        // A v5 subscription with a field appended after RackId.
        let mut newer = BytesMut::from(&encoded(&s, 3)[..]);
        newer[..2].copy_from_slice(&5i16.to_be_bytes());
        newer.put_i32(99);
        assert_eq!(decode_subscription(&newer.freeze()).unwrap(), s);

        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTp::default()
                .with_topic(topic("orders"))
                .with_partitions(vec![1, 2]),
        ]);
        for v in 0..=3 {
            assert_eq!(decode_assignment(&encoded(&a, v)).unwrap(), a, "v{v}");
        }
    }

    #[test]
    fn refuses_short_negative_and_oversized_input() {
        assert_eq!(
            decode_assignment(&Bytes::new()),
            Err(ConsumerProtocolError::NoVersion)
        );
        assert_eq!(
            decode_assignment(&Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 0])),
            Err(ConsumerProtocolError::NegativeVersion(-1))
        );
        // Assignment v0 announcing 2^31-1 topics in ten bytes: refused before any allocation.
        let huge = Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a', 0]);
        assert!(matches!(
            decode_assignment(&huge),
            Err(ConsumerProtocolError::Bounds(
                BoundsError::CountTooLarge { .. }
            ))
        ));
        // Owned partitions of one topic announcing 2^31-1 partition ids.
        let mut owned = BytesMut::new();
        owned.put_i16(1);
        owned.put_i32(0); // topics
        owned.put_i32(-1); // user data: null
        owned.put_i32(1); // owned partitions: one topic
        owned.put_i16(1);
        owned.put_u8(b't');
        owned.put_i32(i32::MAX);
        owned.put_i32(0);
        assert!(matches!(
            decode_subscription(&owned.freeze()),
            Err(ConsumerProtocolError::Bounds(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let bytes = Bytes::from(bytes);
            let _ = decode_subscription(&bytes);
            let _ = decode_assignment(&bytes);
        }
    }
}
