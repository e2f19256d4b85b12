//! A borrowed view of a RecordBatch v2 header, and in-place rewrites that keep its CRC valid.
//!
//! Layout (Kafka's DefaultRecordBatch), all big-endian:
//!
//! ```text
//!  0  base_offset            i64  ┐ rewritten by the sequencer,
//!  8  batch_length           i32  │ outside the CRC
//! 12  partition_leader_epoch i32  ┘
//! 16  magic                  i8   (2)
//! 17  crc                    u32  CRC-32C of bytes 21..end
//! 21  attributes             i16  codec 0-2, timestamp type 3, transactional 4, control 5
//! 23  last_offset_delta      i32
//! 27  base_timestamp         i64
//! 35  max_timestamp          i64
//! 43  producer_id            i64
//! 51  producer_epoch         i16
//! 53  base_sequence          i32
//! 57  record_count           i32
//! 61  records...
//! ```
//!
//! `batch_length` counts the bytes after itself, so a batch occupies
//! `12 + batch_length` bytes. Individual records are never decoded here.

use crate::wire::Reader;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length`'s range starts counting (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// Bytes of the prefix the sequencer rewrites (base offset, length, leader epoch).
pub const PREFIX_LEN: usize = 16;
/// Offset of the first CRC-covered byte.
pub const CRC_START: usize = 21;
/// The only magic this view accepts.
pub const MAGIC_V2: i8 = 2;

const ATTR_CODEC_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why bytes are not a well-formed v2 batch.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the announced length.
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batch_length` smaller than the header that follows it.
    #[error("invalid batch length {batch_length}")]
    InvalidLength {
        /// The announced length.
        batch_length: i32,
    },
    /// The batch is larger than the limit (`message.max.bytes`).
    #[error("batch of {size} bytes exceeds {limit}")]
    TooLarge {
        /// Bytes of the batch.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a v2 batch (magic 0 and 1 are Kafka's pre-0.11 formats).
    #[error("unsupported magic {magic}")]
    UnsupportedMagic {
        /// The magic byte.
        magic: i8,
    },
    /// A record inside the batch is malformed (timestamp lookup only).
    #[error("malformed record: {0}")]
    MalformedRecord(&'static str),
    /// The batch's codec is unknown or its data failed to decompress.
    #[error("cannot decompress batch: {0}")]
    Compression(String),
}

/// Compression codec from the attributes' low three bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
    /// A value Kafka does not define.
    Unknown(u8),
}

/// A validated view of one batch: `bytes` is exactly the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader<'a> {
    bytes: &'a [u8],
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Checks the header of the batch at the start of `buf` and returns its total size.
fn batch_size(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        });
    }
    let batch_length = be_i32(buf, 8);
    let magic = buf[16] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic { magic });
    }
    match usize::try_from(batch_length) {
        Ok(n) if n >= HEADER_LEN - LOG_OVERHEAD => Ok(LOG_OVERHEAD + n),
        _ => Err(BatchError::InvalidLength { batch_length }),
    }
}

impl<'a> RecordBatchHeader<'a> {
    /// Views the batch at the start of `buf`; bytes after it are ignored.
    pub fn parse(buf: &'a [u8]) -> Result<Self, BatchError> {
        let size = batch_size(buf)?;
        match buf.get(..size) {
            Some(bytes) => Ok(RecordBatchHeader { bytes }),
            None => Err(BatchError::Truncated {
                needed: size,
                available: buf.len(),
            }),
        }
    }

    /// The whole batch.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Size of the whole batch (`12 + batch_length`).
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }
    /// The encoded records after the header (compressed if the codec says so).
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        be_i64(self.bytes, 0)
    }
    /// Bytes after the length field.
    pub fn batch_length(&self) -> i32 {
        be_i32(self.bytes, 8)
    }
    /// The leader epoch the broker stamped on append.
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.bytes, 12)
    }
    /// Always 2 for a parsed view.
    pub fn magic(&self) -> i8 {
        self.bytes[16] as i8
    }
    /// The CRC-32C stored in the batch.
    pub fn crc(&self) -> u32 {
        be_i32(self.bytes, 17) as u32
    }
    /// The raw attributes.
    pub fn attributes(&self) -> i16 {
        be_i16(self.bytes, 21)
    }
    /// The compression codec.
    pub fn codec(&self) -> Codec {
        match (self.attributes() & ATTR_CODEC_MASK) as u8 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            n => Codec::Unknown(n),
        }
    }
    /// Whether timestamps are LogAppendTime (else CreateTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTR_LOG_APPEND_TIME != 0
    }
    /// Whether the batch belongs to a transaction (KIP-98).
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch holds a control record (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    /// Offset delta of the last record.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, 23)
    }
    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(i64::from(self.last_offset_delta()))
    }
    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, 27)
    }
    /// Largest record timestamp (or the append time under LogAppendTime).
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, 35)
    }
    /// Producer id, -1 without idempotence.
    pub fn producer_id(&self) -> i64 {
        be_i64(self.bytes, 43)
    }
    /// Producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.bytes, 51)
    }
    /// Sequence number of the first record.
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, 53)
    }
    /// Number of records (as claimed; not checked against the records).
    pub fn record_count(&self) -> i32 {
        be_i32(self.bytes, 57)
    }

    /// CRC-32C of the covered range, as it should be stored.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[CRC_START..])
    }
    /// Whether the stored CRC matches the bytes.
    pub fn verify_crc(&self) -> bool {
        self.crc() == self.computed_crc()
    }

    /// The 16-byte prefix for this batch at a new base offset and leader epoch.
    ///
    /// The prefix lies before the CRC-covered range, so writing it in place of
    /// bytes 0..16 keeps the CRC valid and the batch is never re-encoded.
    pub fn prefix_with(&self, base_offset: i64, partition_leader_epoch: i32) -> [u8; PREFIX_LEN] {
        prefix(base_offset, self.batch_length(), partition_leader_epoch)
    }
}

/// Builds bytes 0..16 of a batch: base offset, batch length, leader epoch.
pub fn prefix(
    base_offset: i64,
    batch_length: i32,
    partition_leader_epoch: i32,
) -> [u8; PREFIX_LEN] {
    let mut p = [0; PREFIX_LEN];
    p[0..8].copy_from_slice(&base_offset.to_be_bytes());
    p[8..12].copy_from_slice(&batch_length.to_be_bytes());
    p[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
    p
}

/// Sets base offset and leader epoch of the batch at the start of `batch` in place.
pub fn assign_offsets(
    batch: &mut [u8],
    base_offset: i64,
    partition_leader_epoch: i32,
) -> Result<(), BatchError> {
    let view = RecordBatchHeader::parse(batch)?;
    let p = view.prefix_with(base_offset, partition_leader_epoch);
    batch[..PREFIX_LEN].copy_from_slice(&p);
    Ok(())
}

/// Stamps LogAppendTime on the batch at the start of `batch`: sets the
/// timestamp-type bit and the max timestamp, then recomputes the CRC-32C
/// (what Kafka's LogValidator does for `message.timestamp.type=LogAppendTime`).
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) -> Result<(), BatchError> {
    let size = RecordBatchHeader::parse(batch)?.total_len();
    let attributes = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..size]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Splits a `records` field (concatenated batches) into batch views.
///
/// Yields an error for a truncated, oversize or non-v2 batch and then stops:
/// after a bad length the rest cannot be framed.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    max_batch_size: usize,
}

impl<'a> BatchIter<'a> {
    /// Iterates the batches of `records` with no size limit.
    pub fn new(records: &'a [u8]) -> Self {
        BatchIter {
            rest: records,
            max_batch_size: usize::MAX,
        }
    }

    /// Refuses batches larger than `max_batch_size` bytes (`message.max.bytes`).
    pub fn with_max_batch_size(mut self, max_batch_size: usize) -> Self {
        self.max_batch_size = max_batch_size;
        self
    }

    /// Byte offset of the next batch within `records`.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<RecordBatchHeader<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = batch_size(self.rest).and_then(|size| {
            if size > self.max_batch_size {
                return Err(BatchError::TooLarge {
                    size,
                    limit: self.max_batch_size,
                });
            }
            RecordBatchHeader::parse(self.rest)
        });
        match &result {
            Ok(view) => self.rest = &self.rest[view.total_len()..],
            Err(_) => self.rest = &[],
        }
        Some(result)
    }
}

/// Reads one record's header fields: (timestamp delta, offset delta), then skips its body.
pub(crate) fn next_record_deltas(r: &mut Reader<'_>) -> Result<(i64, i32), BatchError> {
    let len = r
        .varint()
        .ok_or(BatchError::MalformedRecord("record length"))?;
    let len =
        usize::try_from(len).map_err(|_| BatchError::MalformedRecord("negative record length"))?;
    let body = r
        .bytes(len)
        .ok_or(BatchError::MalformedRecord("record truncated"))?;
    let mut rec = Reader::new(body);
    rec.i8().ok_or(BatchError::MalformedRecord("attributes"))?;
    let ts = rec
        .varlong()
        .ok_or(BatchError::MalformedRecord("timestamp delta"))?;
    let od = rec
        .varint()
        .ok_or(BatchError::MalformedRecord("offset delta"))?;
    Ok((ts, od))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record_batch;
    use proptest::prelude::*;

    #[test]
    fn header_fields() {
        let b = record_batch(5, 1_000, &[b"a", b"bb", b"ccc"]);
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset(), 5);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.batch_length() as usize, b.len() - 12);
        assert_eq!(
            (h.magic(), h.codec(), h.record_count()),
            (2, Codec::None, 3)
        );
        assert_eq!((h.last_offset_delta(), h.last_offset()), (2, 7));
        assert_eq!((h.base_timestamp(), h.max_timestamp()), (1_000, 1_020));
        assert_eq!(
            (h.producer_id(), h.producer_epoch(), h.base_sequence()),
            (-1, -1, -1)
        );
        assert!(!h.is_transactional() && !h.is_control() && !h.is_log_append_time());
        assert!(h.verify_crc());
    }

    #[test]
    fn corrupt_byte_fails_crc() {
        let mut b = record_batch(0, 0, &[b"value"]);
        let last = b.len() - 2;
        b[last] ^= 1;
        assert!(!RecordBatchHeader::parse(&b).unwrap().verify_crc());
    }

    #[test]
    fn iterator_splits_and_stops_at_errors() {
        let mut all = record_batch(0, 0, &[b"x"]);
        all.extend(record_batch(1, 0, &[b"y", b"z"]));
        let views: Vec<_> = BatchIter::new(&all).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            views.iter().map(|v| v.base_offset()).collect::<Vec<_>>(),
            [0, 1]
        );

        let cut = &all[..all.len() - 1];
        let results: Vec<_> = BatchIter::new(cut).collect();
        assert_eq!(results.len(), 2);
        assert!(matches!(results[1], Err(BatchError::Truncated { .. })));

        let mut v1 = record_batch(0, 0, &[b"x"]);
        v1[16] = 1;
        assert_eq!(
            BatchIter::new(&v1).next(),
            Some(Err(BatchError::UnsupportedMagic { magic: 1 }))
        );

        let size = all.len();
        let mut it = BatchIter::new(&all).with_max_batch_size(70);
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(
            it.next(),
            Some(Err(BatchError::TooLarge { limit: 70, .. }))
        ));
        assert_eq!(it.next(), None);
        assert!(size > 70);
    }

    #[test]
    fn short_length_is_invalid() {
        let mut b = record_batch(0, 0, &[b"x"]);
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            RecordBatchHeader::parse(&b),
            Err(BatchError::InvalidLength { batch_length: 10 })
        );
    }

    #[test]
    fn log_append_time_rewrites_and_keeps_crc_valid() {
        let mut b = record_batch(0, 1_000, &[b"x", b"y"]);
        set_log_append_time(&mut b, 99_999).unwrap();
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp(), 99_999);
        assert_eq!(h.base_timestamp(), 1_000);
        assert!(h.verify_crc());
    }

    proptest! {
        #[test]
        fn prefix_rewrite_keeps_crc(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..10),
            base in any::<i64>(),
            epoch in any::<i32>(),
            ts in 0i64..1 << 50,
        ) {
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let mut b = record_batch(0, ts, &refs);
            let before = b[CRC_START..].to_vec();
            assign_offsets(&mut b, base, epoch).unwrap();
            let h = RecordBatchHeader::parse(&b).unwrap();
            prop_assert_eq!(h.base_offset(), base);
            prop_assert_eq!(h.partition_leader_epoch(), epoch);
            prop_assert_eq!(h.record_count() as usize, values.len());
            prop_assert!(h.verify_crc());
            prop_assert_eq!(&b[CRC_START..], &before[..]);
            let p = h.prefix_with(base, epoch);
            prop_assert_eq!(&p[..], &b[..PREFIX_LEN]);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), magic2 in any::<bool>()) {
            let mut bytes = bytes;
            if magic2 && bytes.len() > 16 {
                bytes[16] = 2;
            }
            for v in BatchIter::new(&bytes).with_max_batch_size(150).flatten() {
                let _ = (v.verify_crc(), v.codec(), v.last_offset(), v.records_bytes().len());
            }
        }
    }
}
