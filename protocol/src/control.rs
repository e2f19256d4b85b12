//! Transaction markers (KIP-98): the control batches that end a transaction on a partition.
//!
//! A marker is a RecordBatch v2 with the transactional and control attribute bits set, the
//! producer's id and epoch, no sequence, and one record whose key is
//! `version: int16 = 0, type: int16 (0 abort, 1 commit)` and whose value is
//! `version: int16 = 0, coordinator_epoch: int32`. Consumers never see it as a record, but it
//! takes an offset.

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{BatchError, CRC_START, HEADER_LEN, MAGIC_V2, RecordBatchHeader};

/// Attribute bit of a transactional batch.
const TRANSACTIONAL: i16 = 0x10;
/// Attribute bit of a control batch.
const CONTROL: i16 = 0x20;

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The transaction was aborted: its records are to be skipped by `read_committed` readers.
    Abort,
    /// The transaction committed.
    Commit,
}

impl Marker {
    /// The marker for a commit (`true`) or an abort.
    pub fn of(commit: bool) -> Marker {
        if commit {
            Marker::Commit
        } else {
            Marker::Abort
        }
    }

    fn control_type(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Encodes a marker batch at base offset 0 (the log assigns the real one).
pub fn encode_marker(
    marker: Marker,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    let mut record = BytesMut::with_capacity(24);
    record.put_i8(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, 4);
    record.put_i16(0);
    record.put_i16(marker.control_type());
    put_varint(&mut record, 6);
    record.put_i16(0);
    record.put_i32(coordinator_epoch);
    put_varint(&mut record, 0); // headers
    let mut buf = BytesMut::with_capacity(HEADER_LEN + record.len() + 2);
    buf.put_i64(0); // base offset
    buf.put_i32(0); // batch length, patched below
    buf.put_i32(-1); // partition leader epoch
    buf.put_i8(MAGIC_V2);
    buf.put_u32(0); // CRC, patched below
    buf.put_i16(TRANSACTIONAL | CONTROL);
    buf.put_i32(0); // last offset delta
    buf.put_i64(timestamp);
    buf.put_i64(timestamp);
    buf.put_i64(producer_id);
    buf.put_i16(producer_epoch);
    buf.put_i32(-1); // base sequence
    buf.put_i32(1); // record count
    put_varint(&mut buf, record.len() as i64);
    buf.extend_from_slice(&record);
    let batch_length = (buf.len() - 12) as i32;
    buf[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// The marker a batch carries: `Ok(None)` for a batch that is not a control batch, an error for
/// a control batch whose record cannot be read. Uncompressed, as every marker is.
pub fn parse_marker(batch: &[u8]) -> Result<Option<Marker>, BatchError> {
    let header = RecordBatchHeader::parse(batch)?;
    if !header.is_control() {
        return Ok(None);
    }
    let records = header.records_bytes();
    let corrupt = || BatchError::MalformedRecord("unreadable control record");
    let mut pos = 0usize;
    let _length = get_varint(records, &mut pos).ok_or_else(corrupt)?;
    pos += 1; // attributes
    get_varint(records, &mut pos).ok_or_else(corrupt)?; // timestamp delta
    get_varint(records, &mut pos).ok_or_else(corrupt)?; // offset delta
    let key_len = get_varint(records, &mut pos).ok_or_else(corrupt)?;
    if key_len < 4 {
        return Err(corrupt());
    }
    let key = records.get(pos..pos + 4).ok_or_else(corrupt)?;
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Ok(Some(Marker::Abort)),
        1 => Ok(Some(Marker::Commit)),
        _ => Err(BatchError::MalformedRecord("unknown control record type")),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;

    #[test]
    fn markers_decode_with_kafka_protocol_as_control_records() {
        for marker in [Marker::Commit, Marker::Abort] {
            let bytes = encode_marker(marker, 4000, 3, 7, 1_700_000_000_000);
            let header = RecordBatchHeader::parse(&bytes).unwrap();
            assert!(header.verify_crc());
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.producer_id(), 4000);
            assert_eq!(header.producer_epoch(), 3);
            assert_eq!(header.total_len(), bytes.len());
            let set = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
            assert_eq!(set.records.len(), 1);
            let r = &set.records[0];
            assert!(r.control && r.transactional);
            let key = r.key.as_ref().unwrap();
            assert_eq!(&key[..], &[0, 0, 0, marker.control_type() as u8]);
            assert_eq!(&r.value.as_ref().unwrap()[..], &[0, 0, 0, 0, 0, 7]);
            assert_eq!(parse_marker(&bytes).unwrap(), Some(marker));
        }
    }

    #[test]
    fn data_batches_are_not_markers_and_cut_markers_are_errors() {
        let bytes = encode_marker(Marker::Commit, 1, 0, 0, 0);
        let mut data = BytesMut::from(&bytes[..]);
        data[21..23].copy_from_slice(&TRANSACTIONAL.to_be_bytes());
        assert_eq!(parse_marker(&data).unwrap(), None);
        for cut in 0..bytes.len() {
            assert!(parse_marker(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
