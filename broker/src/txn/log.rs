//! The records the transaction coordinator writes to its `__transaction_state` partition, in
//! Kafka's layout (`TransactionLogKey` / `TransactionLogValue` version 0), so the log reads the
//! same as a Kafka broker's. Integers are big-endian; a `string` is an `i16` length then UTF-8.
//!
//! ```text
//! record key   = i16 version=0, string transactional_id
//! record value = i16 version=0, i64 producer_id, i16 producer_epoch, i32 timeout_ms,
//!                i8 status, i32 topic count (-1 = null) × { string topic, i32 count × i32 },
//!                i64 last_update_timestamp_ms, i64 start_timestamp_ms
//!              | null: the transactional id expired.
//! ```
//!
//! Each record sits in its own RecordBatch v2, appended with `acks=all` semantics: a state
//! change is acted on only once it is durable.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TxnMetadata, TxnStatus};
use crate::group::GroupError;
use crate::group::offsets::{decode_records, encode_records, get_string, put_string};

/// One record of `__transaction_state`: the latest state of a transactional id, or its
/// tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The transactional id.
    pub transactional_id: String,
    /// Its state; `None` once it expired.
    pub value: Option<TxnMetadata>,
}

fn truncated() -> GroupError {
    GroupError::CorruptRecord("truncated __transaction_state record")
}

fn need(buf: &Bytes, n: usize) -> Result<(), GroupError> {
    if buf.remaining() < n {
        Err(truncated())
    } else {
        Ok(())
    }
}

impl TxnRecord {
    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        key.put_i16(0);
        put_string(&mut key, Some(&self.transactional_id));
        let value = self.value.as_ref().map(|t| {
            let mut v = BytesMut::new();
            v.put_i16(0);
            v.put_i64(t.producer_id);
            v.put_i16(t.producer_epoch);
            v.put_i32(t.timeout_ms);
            v.put_i8(t.status as i8);
            let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
            for (topic, partition) in &t.partitions {
                match topics.last_mut() {
                    Some((name, ids)) if *name == topic.as_str() => ids.push(*partition),
                    _ => topics.push((topic, vec![*partition])),
                }
            }
            v.put_i32(topics.len() as i32);
            for (topic, ids) in topics {
                put_string(&mut v, Some(topic));
                v.put_i32(ids.len() as i32);
                for id in ids {
                    v.put_i32(id);
                }
            }
            v.put_i64(t.last_update_ms);
            v.put_i64(t.start_ms);
            v.freeze()
        });
        (key.freeze(), value)
    }

    /// Decodes a record's key and value.
    pub fn decode(mut key: Bytes, value: Option<Bytes>) -> Result<TxnRecord, GroupError> {
        need(&key, 2)?;
        if key.get_i16() != 0 {
            return Err(GroupError::CorruptRecord(
                "unknown transaction log key version",
            ));
        }
        let transactional_id = get_string(&mut key)?.ok_or_else(truncated)?;
        let Some(mut v) = value else {
            return Ok(TxnRecord {
                transactional_id,
                value: None,
            });
        };
        need(&v, 2 + 8 + 2 + 4 + 1 + 4)?;
        let version = v.get_i16();
        if version != 0 {
            return Err(GroupError::CorruptRecord(
                "unknown transaction log value version",
            ));
        }
        let producer_id = v.get_i64();
        let producer_epoch = v.get_i16();
        let timeout_ms = v.get_i32();
        let status = TxnStatus::from_i8(v.get_i8())
            .ok_or(GroupError::CorruptRecord("unknown transaction status"))?;
        let topics = v.get_i32();
        let mut partitions = BTreeSet::new();
        for _ in 0..topics.max(0) {
            let topic = get_string(&mut v)?.ok_or_else(truncated)?;
            need(&v, 4)?;
            let count = v.get_i32();
            for _ in 0..count.max(0) {
                need(&v, 4)?;
                partitions.insert((topic.clone(), v.get_i32()));
            }
        }
        need(&v, 16)?;
        let last_update_ms = v.get_i64();
        let start_ms = v.get_i64();
        Ok(TxnRecord {
            value: Some(TxnMetadata {
                transactional_id: transactional_id.clone(),
                producer_id,
                producer_epoch,
                timeout_ms,
                status,
                partitions,
                last_update_ms,
                start_ms,
            }),
            transactional_id,
        })
    }
}

/// Encodes records as batches for the log.
pub fn encode_batches(records: &[TxnRecord], timestamp: i64) -> Result<Vec<Bytes>, GroupError> {
    let pairs: Vec<_> = records.iter().map(TxnRecord::encode).collect();
    encode_records(&pairs, timestamp, None)
}

/// Decodes every record of one stored batch.
pub fn decode_batch(batch: &Bytes) -> Result<Vec<TxnRecord>, GroupError> {
    decode_records(batch, TxnRecord::decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMetadata {
        TxnMetadata {
            transactional_id: "tx-1".into(),
            producer_id: 4001,
            producer_epoch: 7,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 3),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 1_700_000_000_500,
            start_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn records_round_trip_through_batches() {
        let records = vec![
            TxnRecord {
                transactional_id: "tx-1".into(),
                value: Some(sample()),
            },
            TxnRecord {
                transactional_id: "tx-2".into(),
                value: None,
            },
        ];
        let batches = encode_batches(&records, 5).unwrap();
        let decoded: Vec<TxnRecord> = batches
            .iter()
            .flat_map(|b| decode_batch(b).unwrap())
            .collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn value_matches_kafka_layout_and_truncation_is_an_error() {
        let (key, value) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(sample()),
        }
        .encode();
        assert_eq!(&key[..], &[0, 0, 0, 1, b't']);
        let value = value.unwrap();
        // version 0, producer id, epoch, timeout, status Ongoing = 1.
        assert_eq!(&value[..2], &[0, 0]);
        assert_eq!(&value[2..10], &4001i64.to_be_bytes());
        assert_eq!(&value[10..12], &7i16.to_be_bytes());
        assert_eq!(&value[12..16], &60_000i32.to_be_bytes());
        assert_eq!(value[16], 1);
        for cut in 0..value.len() {
            assert!(TxnRecord::decode(key.clone(), Some(value.slice(..cut))).is_err());
        }
    }
}
