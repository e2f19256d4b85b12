//! Client-side encoding of requests, for tests, benches, fuzz seeds and tools.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::errors::EncodeError;
use crate::frame::{begin_frame, finish_frame};
use crate::header::RequestHeader;

fn encode_into<M: Encodable>(
    buf: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &M,
) -> Result<(), EncodeError> {
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id: client_id.map(|c| StrBytes::from_string(c.to_owned())),
        header_version: api_key.request_header_version(api_version),
    };
    header.encode(buf);
    body.encode(buf, api_version)
        .map_err(|e| EncodeError::Message {
            api_key,
            api_version,
            reason: format!("{e:#}"),
        })
}

/// A request frame body (header + message, no size prefix), as a client sends it.
pub fn request_frame<M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &M,
) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    encode_into(
        &mut buf,
        api_key,
        api_version,
        correlation_id,
        client_id,
        body,
    )?;
    Ok(buf.freeze())
}

/// Appends a size-prefixed request frame to `buf`.
pub fn put_request<M: Encodable>(
    buf: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &M,
) -> Result<(), EncodeError> {
    let start = begin_frame(buf);
    encode_into(buf, api_key, api_version, correlation_id, client_id, body)?;
    finish_frame(buf, start, 0)
}

/// Builds an uncompressed RecordBatch v2 holding `values`, with timestamps
/// `base_timestamp + i * 10`, producer id -1 and a valid CRC-32C.
///
/// Written by hand (not with `RecordBatchEncoder`) so tests control every
/// header field and get exactly one batch.
pub fn record_batch(base_offset: i64, base_timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
    use crate::wire::{put_varint, put_varlong};
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        put_varlong(&mut rec, i as i64 * 10); // timestamp delta
        put_varint(&mut rec, i as i32); // offset delta
        put_varint(&mut rec, -1); // null key
        put_varint(&mut rec, v.len() as i32);
        rec.extend_from_slice(v);
        put_varint(&mut rec, 0); // no headers
        put_varint(&mut records, rec.len() as i32);
        records.extend_from_slice(&rec);
    }
    let count = values.len() as i32;
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(count - 1).max(0).to_be_bytes()); // last offset delta
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    let max_ts = base_timestamp + i64::from((count - 1).max(0)) * 10;
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}
