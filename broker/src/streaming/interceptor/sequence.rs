//! Sequence stage: assigns each batch its base offset and the pchannel's term as partition
//! leader epoch by rewriting the 16-byte prefix, which lies before the CRC-covered range, so
//! the batch itself is never re-encoded. LogAppendTime topics also get their max timestamp
//! rewritten and the CRC recomputed, on a copy.

use bytes::{Bytes, BytesMut};
use log_store::{EntryFlags, EntryRef, Term, VChannelId};
use sluice_protocol::batch::{PREFIX_LEN, RecordBatchHeader, prefix, set_log_append_time};
use sluice_protocol::control::{Marker, parse_marker};

use super::AppendError;
use crate::streaming::wal::AppendRequest;

/// A batch ready to be written: its new prefix, the untouched rest, and its index metadata.
pub struct PreparedBatch {
    /// Bytes 0..16 of the batch as stored.
    pub prefix: [u8; PREFIX_LEN],
    /// Bytes 16.. of the batch.
    pub rest: Bytes,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Its max timestamp.
    pub max_timestamp: i64,
    /// Control / transactional flags.
    pub flags: EntryFlags,
    /// What a transaction marker says; `None` for data batches.
    pub marker: Option<Marker>,
}

impl PreparedBatch {
    /// The log-store entry for this batch.
    pub fn entry(&self, vchannel: VChannelId, term: Term) -> EntryRef<'_> {
        EntryRef {
            vchannel,
            first_offset: self.base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
            flags: self.flags,
            term,
            prefix: &self.prefix,
            rest: &self.rest,
        }
    }
}

/// Assigns offsets from `next_offset` to every batch of `request`.
pub fn prepare(
    request: &AppendRequest,
    mut next_offset: i64,
    term: Term,
    now_ms: i64,
) -> Result<Vec<PreparedBatch>, AppendError> {
    let epoch = i32::try_from(term.0).unwrap_or(i32::MAX);
    let mut out = Vec::with_capacity(request.batches.len());
    for batch in &request.batches {
        let mut bytes = batch.clone();
        if request.log_append_time {
            let mut copy = BytesMut::from(&bytes[..]);
            set_log_append_time(&mut copy, now_ms)
                .map_err(|e| AppendError::Corrupt(e.to_string()))?;
            bytes = copy.freeze();
        }
        let header =
            RecordBatchHeader::parse(&bytes).map_err(|e| AppendError::Corrupt(e.to_string()))?;
        let base_offset = next_offset;
        let last_offset = base_offset + i64::from(header.last_offset_delta());
        let mut flags = EntryFlags::default();
        let mut marker = None;
        if header.is_control() {
            flags = flags.union(EntryFlags::CONTROL);
            marker = parse_marker(&bytes).map_err(|e| AppendError::Corrupt(e.to_string()))?;
        }
        if header.is_transactional() {
            flags = flags.union(EntryFlags::TRANSACTIONAL);
        }
        out.push(PreparedBatch {
            prefix: prefix(base_offset, header.batch_length(), epoch),
            max_timestamp: header.max_timestamp(),
            rest: bytes.slice(PREFIX_LEN..),
            base_offset,
            last_offset,
            flags,
            marker,
        });
        next_offset = last_offset + 1;
    }
    Ok(out)
}
