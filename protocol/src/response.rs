//! Response encoding: size prefix, response header and body, either into one
//! buffer or as parts that leave `records` slices uncopied for vectored writes.

use std::io::IoSlice;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::errors::EncodeError;
use crate::frame::{begin_frame, finish_frame};
use crate::header::{RequestHeader, encode_response_header, response_header_version};

/// Byte fields shorter than this are copied: a separate `IoSlice` costs more.
pub const MIN_ZERO_COPY_LEN: usize = 256;

/// Appends the whole response frame to `buf`, answering `header`.
pub fn encode_response<M: Encodable>(
    buf: &mut BytesMut,
    header: &RequestHeader,
    body: &M,
) -> Result<(), EncodeError> {
    encode_response_to(
        buf,
        header.api_key,
        header.api_version,
        header.correlation_id,
        body,
    )
}

/// Appends a response frame for `api_key` at `api_version` (e.g. the v0
/// ApiVersions fallback, which answers a request that failed to decode).
pub fn encode_response_to<M: Encodable>(
    buf: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<(), EncodeError> {
    let start = begin_frame(buf);
    encode_response_header(
        buf,
        correlation_id,
        response_header_version(api_key, api_version),
    );
    if let Err(e) = body.encode(buf, api_version) {
        buf.truncate(start);
        return Err(EncodeError::Message {
            api_key,
            api_version,
            reason: format!("{e:#}"),
        });
    }
    finish_frame(buf, start, 0)
}

/// A response frame as a list of buffers, to be written with `write_vectored`.
#[derive(Debug, Clone, Default)]
pub struct ResponseParts {
    /// The frame's bytes, in order: encoded chunks and uncopied byte fields.
    pub parts: Vec<Bytes>,
}

impl ResponseParts {
    /// Total bytes, size prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// The parts as `IoSlice`s for `write_vectored`.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        self.parts.iter().map(|p| IoSlice::new(p)).collect()
    }

    /// Copies the parts into one buffer (tests, small responses).
    pub fn concat(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for p in &self.parts {
            out.put_slice(p);
        }
        out.freeze()
    }
}

/// Encodes a response frame whose byte fields listed in `zero_copy` (in
/// encoding order, e.g. [`fetch_records`]) are referenced instead of copied.
///
/// `kafka-protocol` writes a `Bytes` field with one `put_slice` of its
/// contents; the buffer recognises those slices by address and length.
pub fn encode_response_vectored<M: Encodable>(
    header: &RequestHeader,
    body: &M,
    zero_copy: &[Bytes],
) -> Result<ResponseParts, EncodeError> {
    let splices: Vec<Splice> = zero_copy
        .iter()
        .map(|b| Splice {
            placeholder: b.clone(),
            parts: vec![b.clone()],
        })
        .collect();
    encode_response_spliced(header, body, &splices)
}

/// A byte field sent as several buffers: the message holds `placeholder` (any
/// readable slice of the field's length, never read), and the frame carries
/// `parts` in its place. A fetch answers a partition with several stored
/// batches this way, each a slice of a segment map, without joining them.
#[derive(Debug, Clone)]
pub struct Splice {
    /// What the message's field holds; identified by address and length.
    pub placeholder: Bytes,
    /// What is sent instead; their lengths add up to the placeholder's.
    pub parts: Vec<Bytes>,
}

/// Encodes a response frame, replacing each `splices` placeholder (in encoding
/// order) with its parts.
pub fn encode_response_spliced<M: Encodable>(
    header: &RequestHeader,
    body: &M,
    splices: &[Splice],
) -> Result<ResponseParts, EncodeError> {
    let (api_key, api_version) = (header.api_key, header.api_version);
    let message_error = |e: &dyn std::fmt::Display| EncodeError::Message {
        api_key,
        api_version,
        reason: format!("{e:#}"),
    };
    for s in splices {
        assert_eq!(
            s.parts.iter().map(Bytes::len).sum::<usize>(),
            s.placeholder.len(),
            "splice parts must add up to the placeholder"
        );
    }
    let body_len = body
        .compute_size(api_version)
        .map_err(|e| message_error(&e))?;
    // One allocation for everything that is copied: split() hands the rest
    // of it back, so chunks between zero-copy parts do not reallocate.
    let shared: usize = splices.iter().map(|s| s.placeholder.len()).sum();
    let mut head = BytesMut::with_capacity(16 + body_len.saturating_sub(shared));
    let start = begin_frame(&mut head);
    encode_response_header(
        &mut head,
        header.correlation_id,
        header.response_header_version(),
    );
    finish_frame(&mut head, start, body_len)?;
    let mut buf = VectoredBuf {
        current: head,
        parts: Vec::new(),
        splices,
        next: 0,
        frozen_len: 0,
    };
    body.encode(&mut buf, api_version)
        .map_err(|e| message_error(&e))?;
    let mut parts = buf.parts;
    parts.push(buf.current.freeze());
    let out = ResponseParts { parts };
    assert_eq!(
        out.len(),
        start + 4 + header_len(header) + body_len,
        "compute_size disagrees with encode"
    );
    Ok(out)
}

fn header_len(header: &RequestHeader) -> usize {
    if header.response_header_version() >= 1 {
        5
    } else {
        4
    }
}

/// The `records` of every partition of a fetch response, in encoding order.
pub fn fetch_records(response: &FetchResponse) -> Vec<Bytes> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| r.len() >= MIN_ZERO_COPY_LEN)
        .collect()
}

/// A `BufMut` that splits itself around known `Bytes` instead of copying them.
struct VectoredBuf<'a> {
    current: BytesMut,
    parts: Vec<Bytes>,
    splices: &'a [Splice],
    next: usize,
    frozen_len: usize,
}

// SAFETY: every method delegates to the inner `BytesMut`, which upholds the
// `BufMut` contract; `put_slice` only adds whole, initialised parts.
unsafe impl BufMut for VectoredBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded contract: the caller initialised `cnt` bytes of `chunk_mut`.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(next) = self.splices.get(self.next)
            && next.placeholder.as_ptr() == src.as_ptr()
            && next.placeholder.len() == src.len()
        {
            self.next += 1;
            let chunk = self.current.split().freeze();
            self.frozen_len += chunk.len() + next.placeholder.len();
            self.parts.push(chunk);
            self.parts.extend(next.parts.iter().cloned());
            return;
        }
        self.current.put_slice(src);
    }
}

impl ByteBufMut for VectoredBuf<'_> {
    fn offset(&self) -> usize {
        self.frozen_len + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.frozen_len, "seek into a frozen part");
        self.current.resize(offset - self.frozen_len, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.frozen_len, "gap inside a frozen part");
        &mut self.current[r.start - self.frozen_len..r.end - self.frozen_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn header(api_key: ApiKey, api_version: i16) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id: 11,
            client_id: None,
            header_version: api_key.request_header_version(api_version),
        }
    }

    fn fetch_response(n: usize) -> FetchResponse {
        let partitions = (0..n)
            .map(|i| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(100)
                    .with_records(Some(Bytes::from(vec![i as u8; 1000 + i])))
            })
            .collect();
        let topic = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions);
        FetchResponse::default().with_responses(vec![topic])
    }

    #[test]
    fn api_versions_uses_header_v0() {
        let mut buf = BytesMut::new();
        encode_response(
            &mut buf,
            &header(ApiKey::ApiVersions, 3),
            &ApiVersionsResponse::default(),
        )
        .unwrap();
        let size = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(size, buf.len() - 4);
        assert_eq!(&buf[4..8], &11i32.to_be_bytes());
        let mut body = buf.freeze().slice(8..);
        let decoded = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert_eq!(decoded, ApiVersionsResponse::default());
    }

    #[test]
    fn flexible_response_has_tagged_header() {
        let mut buf = BytesMut::new();
        encode_response(
            &mut buf,
            &header(ApiKey::Metadata, 12),
            &MetadataResponse::default(),
        )
        .unwrap();
        assert_eq!(buf[8], 0, "empty tagged fields in response header v1");
        let mut body = buf.freeze().slice(9..);
        assert_eq!(
            MetadataResponse::decode(&mut body, 12).unwrap(),
            MetadataResponse::default()
        );
    }

    #[test]
    fn spliced_records_equal_their_concatenation() {
        let stored: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; 700])).collect();
        let joined: Bytes = stored
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect::<Vec<u8>>()
            .into();
        let placeholder = Bytes::from(vec![0u8; joined.len()]);
        let partition = |records: Bytes| {
            FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![PartitionData::default().with_records(Some(records))]),
            ])
        };
        for version in [4, 12] {
            let h = header(ApiKey::Fetch, version);
            let mut flat = BytesMut::new();
            encode_response(&mut flat, &h, &partition(joined.clone())).unwrap();
            let splice = Splice {
                placeholder: placeholder.clone(),
                parts: stored.clone(),
            };
            let parts =
                encode_response_spliced(&h, &partition(placeholder.clone()), &[splice]).unwrap();
            assert_eq!(parts.concat(), flat.freeze(), "v{version}");
            for s in &stored {
                assert!(
                    parts.parts.iter().any(|p| p.as_ptr() == s.as_ptr()),
                    "stored batch was copied"
                );
            }
        }
    }

    #[test]
    fn vectored_fetch_equals_contiguous_and_shares_records() {
        for version in [4, 11, 12] {
            let resp = fetch_response(5);
            let h = header(ApiKey::Fetch, version);
            let mut flat = BytesMut::new();
            encode_response(&mut flat, &h, &resp).unwrap();
            let records = fetch_records(&resp);
            let parts = encode_response_vectored(&h, &resp, &records).unwrap();
            assert_eq!(parts.concat(), flat.freeze(), "v{version}");
            assert_eq!(parts.parts.len(), 11);
            let shared = parts
                .parts
                .iter()
                .filter(|p| records.iter().any(|r| r.as_ptr() == p.as_ptr()));
            assert_eq!(shared.count(), 5);
            assert_eq!(parts.io_slices().len(), 11);
        }
    }

    #[test]
    fn field_absent_in_version_is_an_error() {
        let resp = MetadataResponse::default().with_cluster_authorized_operations(0);
        let mut buf = BytesMut::from(&b"keep"[..]);
        let err = encode_response(&mut buf, &header(ApiKey::Metadata, 1), &resp);
        assert!(matches!(
            err,
            Err(EncodeError::Message { api_version: 1, .. })
        ));
        assert_eq!(&buf[..], b"keep");
    }
}
