//! The records a group coordinator writes to its `__consumer_offsets` partition, and their
//! decoding when the partition is loaded.
//!
//! The layout is Kafka's own (`OffsetCommitKey`/`OffsetCommitValue`,
//! `GroupMetadataKey`/`GroupMetadataValue` in Kafka's `group-coordinator` schemas), so the log
//! reads the same as a Kafka broker's. All integers are big-endian; a `string` is an `i16`
//! length followed by UTF-8 bytes (length -1 = null); `bytes` is an `i32` length then the bytes.
//!
//! ```text
//! record key   = OffsetCommitKey (version 1):   i16 version=1, string group, string topic,
//!                                               i32 partition
//!              | GroupMetadataKey (version 2):  i16 version=2, string group
//! record value = OffsetCommitValue (version 3): i16 version=3, i64 offset, i32 leader_epoch,
//!                                               string metadata, i64 commit_timestamp
//!              | GroupMetadataValue (version 3): i16 version=3, string protocol_type,
//!                                               i32 generation, string? protocol,
//!                                               string? leader, i64 current_state_timestamp,
//!                                               i32 member count (Sluice writes 0: members
//!                                               rejoin after a coordinator move)
//!              | null: a tombstone — the offset (or the whole group) was deleted.
//! ```
//!
//! Each record sits in its own RecordBatch v2 (magic 2, no compression, no producer id), one
//! append per commit carrying every partition's record, written with `acks=all` semantics: a
//! commit is acknowledged only after the pchannel synced it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Record,
    RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::GroupError;

/// One committed offset, as cached and as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the coordinator accepted the commit (ms since the epoch).
    pub commit_timestamp: i64,
}

/// The durable part of a group's metadata (written after every completed rebalance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// `consumer`, `connect`, ...
    pub protocol_type: String,
    /// The generation that completed.
    pub generation: i32,
    /// The selected protocol (assignor).
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the state was written.
    pub current_state_timestamp: i64,
}

/// A decoded record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// A commit (`Some`) or an offset deletion (`None`).
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The committed offset, or `None` for a tombstone.
        value: Option<OffsetEntry>,
    },
    /// A group's metadata (`Some`) or its deletion (`None`).
    Group {
        /// The group.
        group: String,
        /// The metadata, or `None` for a tombstone.
        value: Option<GroupMetadataValue>,
    },
}

pub(crate) fn put_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            let len = s.len().min(i16::MAX as usize);
            buf.put_i16(len as i16);
            buf.put_slice(&s.as_bytes()[..len]);
        }
        None => buf.put_i16(-1),
    }
}

pub(crate) fn get_string(buf: &mut Bytes) -> Result<Option<String>, GroupError> {
    if buf.remaining() < 2 {
        return Err(GroupError::CorruptRecord("string length"));
    }
    let len = buf.get_i16();
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(GroupError::CorruptRecord("string body"));
    }
    let bytes = buf.split_to(len);
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| GroupError::CorruptRecord("string is not UTF-8"))
}

fn get_i16(buf: &mut Bytes) -> Result<i16, GroupError> {
    (buf.remaining() >= 2)
        .then(|| buf.get_i16())
        .ok_or(GroupError::CorruptRecord("truncated i16"))
}

fn get_i32(buf: &mut Bytes) -> Result<i32, GroupError> {
    (buf.remaining() >= 4)
        .then(|| buf.get_i32())
        .ok_or(GroupError::CorruptRecord("truncated i32"))
}

fn get_i64(buf: &mut Bytes) -> Result<i64, GroupError> {
    (buf.remaining() >= 8)
        .then(|| buf.get_i64())
        .ok_or(GroupError::CorruptRecord("truncated i64"))
}

impl OffsetsRecord {
    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(1);
                put_string(&mut key, Some(group));
                put_string(&mut key, Some(topic));
                key.put_i32(*partition);
                let value = value.as_ref().map(|v| {
                    let mut buf = BytesMut::new();
                    buf.put_i16(3);
                    buf.put_i64(v.offset);
                    buf.put_i32(v.leader_epoch);
                    put_string(&mut buf, Some(&v.metadata));
                    buf.put_i64(v.commit_timestamp);
                    buf.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(2);
                put_string(&mut key, Some(group));
                let value = value.as_ref().map(|v| {
                    let mut buf = BytesMut::new();
                    buf.put_i16(3);
                    put_string(&mut buf, Some(&v.protocol_type));
                    buf.put_i32(v.generation);
                    put_string(&mut buf, v.protocol.as_deref());
                    put_string(&mut buf, v.leader.as_deref());
                    buf.put_i64(v.current_state_timestamp);
                    buf.put_i32(0);
                    buf.freeze()
                });
                (key.freeze(), value)
            }
        }
    }

    /// Decodes a key/value pair; versions Sluice does not know are an error (the record is
    /// skipped by the loader).
    pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<OffsetsRecord, GroupError> {
        let mut key = key;
        match get_i16(&mut key)? {
            0 | 1 => {
                let group = get_string(&mut key)?.unwrap_or_default();
                let topic = get_string(&mut key)?.unwrap_or_default();
                let partition = get_i32(&mut key)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        let version = get_i16(&mut v)?;
                        let offset = get_i64(&mut v)?;
                        let leader_epoch = if version >= 3 { get_i32(&mut v)? } else { -1 };
                        let metadata = get_string(&mut v)?.unwrap_or_default();
                        let commit_timestamp = get_i64(&mut v)?;
                        Some(OffsetEntry {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp,
                        })
                    }
                };
                Ok(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = get_string(&mut key)?.unwrap_or_default();
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        let _version = get_i16(&mut v)?;
                        let protocol_type = get_string(&mut v)?.unwrap_or_default();
                        let generation = get_i32(&mut v)?;
                        let protocol = get_string(&mut v)?;
                        let leader = get_string(&mut v)?;
                        let current_state_timestamp = get_i64(&mut v)?;
                        Some(GroupMetadataValue {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                            current_state_timestamp,
                        })
                    }
                };
                Ok(OffsetsRecord::Group { group, value })
            }
            _ => Err(GroupError::CorruptRecord("unknown key version")),
        }
    }
}

/// Encodes records as RecordBatch v2 batches, one record per batch.
pub fn encode_batches(records: &[OffsetsRecord], timestamp: i64) -> Result<Vec<Bytes>, GroupError> {
    let pairs: Vec<_> = records.iter().map(OffsetsRecord::encode).collect();
    encode_records(&pairs, timestamp, None)
}

/// Encodes offsets committed inside a transaction (TxnOffsetCommit): transactional batches of
/// the producer, without sequence numbers; they count once the transaction's commit marker
/// follows them.
pub fn encode_txn_batches(
    records: &[OffsetsRecord],
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Vec<Bytes>, GroupError> {
    let pairs: Vec<_> = records.iter().map(OffsetsRecord::encode).collect();
    encode_records(&pairs, timestamp, Some((producer_id, producer_epoch)))
}

/// Encodes key/value records as RecordBatch v2 batches, one record per batch; transactional
/// batches of `producer` when given.
pub(crate) fn encode_records(
    records: &[(Bytes, Option<Bytes>)],
    timestamp: i64,
    producer: Option<(i64, i16)>,
) -> Result<Vec<Bytes>, GroupError> {
    let mut out = Vec::with_capacity(records.len());
    for (key, value) in records {
        let (producer_id, producer_epoch) = producer.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
        let record = Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp,
            key: Some(key.clone()),
            value: value.clone(),
            headers: IndexMap::new(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            std::iter::once(&record),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| GroupError::Encode(e.to_string()))?;
        out.push(buf.freeze());
    }
    Ok(out)
}

/// Decodes every record of one stored batch.
pub fn decode_batch(batch: &Bytes) -> Result<Vec<OffsetsRecord>, GroupError> {
    decode_records(batch, OffsetsRecord::decode)
}

/// Decodes the keyed data records of one stored batch with `decode` (control records and
/// records without a key carry nothing for a coordinator).
pub(crate) fn decode_records<T>(
    batch: &Bytes,
    decode: impl Fn(Bytes, Option<Bytes>) -> Result<T, GroupError>,
) -> Result<Vec<T>, GroupError> {
    let set = RecordBatchDecoder::decode(&mut batch.clone())
        .map_err(|e| GroupError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(set.records.len());
    for record in set.records {
        if record.control {
            continue;
        }
        let Some(key) = record.key else { continue };
        out.push(decode(key, record.value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_group_records_round_trip_through_batches() {
        let records = vec![
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(OffsetEntry {
                    offset: 42,
                    leader_epoch: 3,
                    metadata: "meta".into(),
                    commit_timestamp: 1234,
                }),
            },
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 8,
                value: None,
            },
            OffsetsRecord::Group {
                group: "g".into(),
                value: Some(GroupMetadataValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: None,
                    current_state_timestamp: 99,
                }),
            },
        ];
        let batches = encode_batches(&records, 1000).unwrap();
        assert_eq!(batches.len(), 3);
        let decoded: Vec<OffsetsRecord> = batches
            .iter()
            .flat_map(|b| decode_batch(b).unwrap())
            .collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn offset_key_matches_kafka_layout() {
        let (key, _) = OffsetsRecord::Offset {
            group: "ab".into(),
            topic: "t".into(),
            partition: 1,
            value: None,
        }
        .encode();
        assert_eq!(&key[..], &[0, 1, 0, 2, b'a', b'b', 0, 1, b't', 0, 0, 0, 1]);
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let (key, value) = OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(OffsetEntry {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 0,
            }),
        }
        .encode();
        let value = value.unwrap();
        for cut in 0..value.len() {
            assert!(OffsetsRecord::decode(key.clone(), Some(value.slice(..cut))).is_err());
        }
        assert!(OffsetsRecord::decode(key.slice(..3), None).is_err());
    }
}
