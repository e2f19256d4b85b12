//! Validate stage: every batch is a well-formed RecordBatch v2 whose CRC-32C matches, within
//! the size limit, with a record count that agrees with its offset delta (Kafka's
//! LogValidator checks the same before assigning offsets).

use bytes::Bytes;
use sluice_protocol::batch::{BatchError, BatchIter, MAGIC_V2};

use super::AppendError;

/// The batches of one partition's `records`, each a zero-copy slice of the request.
#[derive(Debug, Default)]
pub struct ValidatedBatches {
    /// The batches in order.
    pub batches: Vec<Bytes>,
    /// Total records.
    pub records: u64,
}

/// What a partition accepts, from its topic's effective configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max.message.bytes`.
    pub max_batch_bytes: usize,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp may be.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime timestamp may be.
    pub after_max_ms: i64,
    /// The broker's clock, ms since the epoch.
    pub now_ms: i64,
}

/// Splits `records` into validated batches.
///
/// Timestamps are checked from the batch header, as far as it tells: the max timestamp bounds
/// every record from above; the base timestamp stands in for the earliest (Kafka's validator
/// walks every record; a producer writes records in time order, so they agree in practice).
pub fn validate(records: &Bytes, limits: &Limits) -> Result<ValidatedBatches, AppendError> {
    let max_batch_bytes = limits.max_batch_bytes;
    let mut out = ValidatedBatches::default();
    let mut pos = 0usize;
    for batch in BatchIter::new(records).with_max_batch_size(max_batch_bytes) {
        let batch = batch.map_err(|e| match e {
            BatchError::TooLarge { size, limit } => AppendError::TooLarge { size, limit },
            BatchError::UnsupportedMagic { magic } => AppendError::UnsupportedMagic(magic),
            other => AppendError::Corrupt(other.to_string()),
        })?;
        if batch.magic() != MAGIC_V2 {
            return Err(AppendError::UnsupportedMagic(batch.magic()));
        }
        if !batch.verify_crc() {
            return Err(AppendError::Corrupt(format!(
                "CRC-32C mismatch: header says {:#010x}, computed {:#010x}",
                batch.crc(),
                batch.computed_crc()
            )));
        }
        let count = batch.record_count();
        if count <= 0 || i64::from(count) != i64::from(batch.last_offset_delta()) + 1 {
            return Err(AppendError::Corrupt(format!(
                "record count {count} does not match last offset delta {}",
                batch.last_offset_delta()
            )));
        }
        if !batch.is_log_append_time() {
            if batch.max_timestamp() > limits.now_ms.saturating_add(limits.after_max_ms) {
                return Err(AppendError::InvalidTimestamp(format!(
                    "timestamp {} is more than message.timestamp.after.max.ms={} ahead of the broker's clock",
                    batch.max_timestamp(),
                    limits.after_max_ms
                )));
            }
            if batch.base_timestamp() >= 0
                && batch.base_timestamp() < limits.now_ms.saturating_sub(limits.before_max_ms)
            {
                return Err(AppendError::InvalidTimestamp(format!(
                    "timestamp {} is more than message.timestamp.before.max.ms={} behind the broker's clock",
                    batch.base_timestamp(),
                    limits.before_max_ms
                )));
            }
        }
        let len = batch.total_len();
        out.batches.push(records.slice(pos..pos + len));
        out.records += count as u64;
        pos += len;
    }
    if out.batches.is_empty() {
        return Err(AppendError::Corrupt("no record batch in records".into()));
    }
    Ok(out)
}
