//! Timestamp lookup inside one batch, for ListOffsets by time.
//!
//! This is the one place the crate reads individual records, and it reads
//! only each record's length, timestamp delta and offset delta.

use crate::batch::{BatchError, Codec, RecordBatchHeader, next_record_deltas};
use crate::decompress::{DEFAULT_MAX_DECOMPRESSED, decompress};
use crate::wire::Reader;

/// The offset of the first record of `batch` whose timestamp is `>= target`,
/// or `None` if every record is older.
///
/// Under LogAppendTime every record carries the batch's max timestamp, so the
/// answer is the base offset or nothing (as in Kafka's `LogSegment.findOffsetByTimestamp`).
/// A batch whose max timestamp is below `target` is answered from the header
/// alone. Otherwise the records are walked; a compressed batch (gzip, snappy,
/// lz4, zstd) is first decompressed into a buffer of at most
/// [`DEFAULT_MAX_DECOMPRESSED`] bytes.
pub fn first_offset_at_or_after(
    batch: &RecordBatchHeader<'_>,
    target: i64,
) -> Result<Option<i64>, BatchError> {
    first_offset_at_or_after_with_limit(batch, target, DEFAULT_MAX_DECOMPRESSED)
}

/// [`first_offset_at_or_after`] with an explicit cap on the decompressed size.
pub fn first_offset_at_or_after_with_limit(
    batch: &RecordBatchHeader<'_>,
    target: i64,
    max_decompressed: usize,
) -> Result<Option<i64>, BatchError> {
    Ok(first_record_at_or_after(batch, target, max_decompressed)?.map(|(offset, _)| offset))
}

/// `(offset, timestamp)` of the first record of `batch` whose timestamp is `>= target`:
/// ListOffsets answers with both.
pub fn first_record_at_or_after(
    batch: &RecordBatchHeader<'_>,
    target: i64,
    max_decompressed: usize,
) -> Result<Option<(i64, i64)>, BatchError> {
    if batch.max_timestamp() < target {
        return Ok(None);
    }
    if batch.is_log_append_time() {
        return Ok(Some((batch.base_offset(), batch.max_timestamp())));
    }
    match batch.codec() {
        Codec::None => find_in_records(batch.records_bytes(), batch, target),
        codec => {
            let records = decompress(codec, batch.records_bytes(), max_decompressed)?;
            find_in_records(&records, batch, target)
        }
    }
}

fn find_in_records(
    records: &[u8],
    batch: &RecordBatchHeader<'_>,
    target: i64,
) -> Result<Option<(i64, i64)>, BatchError> {
    let mut r = Reader::new(records);
    let count = batch.record_count().max(0);
    for _ in 0..count {
        let (timestamp_delta, offset_delta) = next_record_deltas(&mut r)?;
        let timestamp = batch.base_timestamp().saturating_add(timestamp_delta);
        if timestamp >= target {
            let offset = batch.base_offset().saturating_add(i64::from(offset_delta));
            return Ok(Some((offset, timestamp)));
        }
    }
    // The header's max timestamp promised a match; the records disagree.
    Err(BatchError::MalformedRecord(
        "no record reaches the batch's max timestamp",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::set_log_append_time;
    use crate::test_support::record_batch;
    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    #[test]
    fn uncompressed_lookup() {
        // timestamps 1000, 1010, 1020, 1030 at offsets 40..43
        let b = record_batch(40, 1_000, &[b"a", b"b", b"c", b"d"]);
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert_eq!(first_offset_at_or_after(&h, 0), Ok(Some(40)));
        assert_eq!(first_offset_at_or_after(&h, 1_000), Ok(Some(40)));
        assert_eq!(first_offset_at_or_after(&h, 1_001), Ok(Some(41)));
        assert_eq!(first_offset_at_or_after(&h, 1_020), Ok(Some(42)));
        assert_eq!(first_offset_at_or_after(&h, 1_030), Ok(Some(43)));
        assert_eq!(first_offset_at_or_after(&h, 1_031), Ok(None));
    }

    #[test]
    fn log_append_time_answers_the_base_offset() {
        let mut b = record_batch(7, 1_000, &[b"a", b"b"]);
        set_log_append_time(&mut b, 5_000).unwrap();
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert_eq!(first_offset_at_or_after(&h, 4_000), Ok(Some(7)));
        assert_eq!(first_offset_at_or_after(&h, 5_001), Ok(None));
    }

    #[test]
    fn truncated_records_are_an_error() {
        let mut b = record_batch(0, 1_000, &[b"abc", b"def"]);
        // Claim more records than the bytes hold.
        b[57..61].copy_from_slice(&5i32.to_be_bytes());
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert!(first_offset_at_or_after(&h, 1_015).is_ok());
        assert!(matches!(first_offset_at_or_after(&h, 1_500), Ok(None)));
        b[35..43].copy_from_slice(&2_000i64.to_be_bytes());
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert!(matches!(
            first_offset_at_or_after(&h, 1_500),
            Err(BatchError::MalformedRecord(_))
        ));
    }

    fn compressed_batch(compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = (0..5)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                delete_horizon: false,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i,
                sequence: i as i32,
                timestamp: 10_000 + i * 100,
                key: None,
                value: Some(Bytes::from(vec![b'v'; 200])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    #[test]
    fn compressed_lookup_for_every_codec() {
        for (compression, codec) in [
            (Compression::Gzip, Codec::Gzip),
            (Compression::Snappy, Codec::Snappy),
            (Compression::Lz4, Codec::Lz4),
            (Compression::Zstd, Codec::Zstd),
        ] {
            let b = compressed_batch(compression);
            let h = RecordBatchHeader::parse(&b).unwrap();
            assert_eq!(h.total_len(), b.len(), "{codec:?}: one batch");
            assert_eq!(h.codec(), codec);
            assert!(h.verify_crc());
            assert_eq!(
                first_offset_at_or_after(&h, 10_150),
                Ok(Some(102)),
                "{codec:?}"
            );
            assert_eq!(first_offset_at_or_after(&h, 10_401), Ok(None), "{codec:?}");
        }
    }
}
