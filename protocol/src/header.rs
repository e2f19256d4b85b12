//! Request and response headers: decoding the request header by its header version,
//! encoding the response header by the response's.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use crate::errors::DecodeError;
use crate::wire::Reader;

/// The decoded request header.
///
/// Header v1 is `api_key, api_version, correlation_id, client_id` (a nullable
/// INT16-prefixed string); v2 adds tagged fields, none of which Kafka defines
/// today, so they are skipped. Header v0 (no client id) is used only by
/// ControlledShutdown v0, which Kafka 4 removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The API of the request.
    pub api_key: ApiKey,
    /// The version of the request body.
    pub api_version: i16,
    /// Echoed in the response header; clients match responses with it.
    pub correlation_id: i32,
    /// The client's `client.id`, a slice of the frame.
    pub client_id: Option<StrBytes>,
    /// 1 or 2, from `ApiKey::request_header_version`.
    pub header_version: i16,
}

impl RequestHeader {
    /// Decodes the header at the front of `frame` and advances `frame` to the body.
    ///
    /// The fixed 8 bytes come first, so an unknown API key or a malformed
    /// client id still yields the correlation id in the error.
    pub fn decode(frame: &mut Bytes) -> Result<RequestHeader, DecodeError> {
        let mut r = Reader::new(frame);
        let (Some(key), Some(api_version), Some(correlation_id)) = (r.i16(), r.i16(), r.i32())
        else {
            return Err(DecodeError::TruncatedHeader { len: frame.len() });
        };
        let Ok(api_key) = ApiKey::try_from(key) else {
            return Err(DecodeError::UnknownApiKey {
                api_key: key,
                correlation_id,
            });
        };
        let header_version = api_key.request_header_version(api_version);
        let malformed = |reason| DecodeError::MalformedHeader {
            correlation_id,
            reason,
        };
        let client_id = match r.i16() {
            None => return Err(malformed("client id length truncated")),
            Some(-1) => None,
            Some(n) if n < 0 => return Err(malformed("negative client id length")),
            Some(n) => {
                let start = r.position();
                r.skip(n as usize).ok_or(malformed("client id truncated"))?;
                let bytes = frame.slice(start..start + n as usize);
                Some(StrBytes::from_utf8(bytes).map_err(|_| malformed("client id is not UTF-8"))?)
            }
        };
        if header_version >= 2 {
            r.skip_tagged_fields()
                .ok_or(malformed("tagged fields truncated"))?;
        }
        frame.advance(r.position());
        Ok(RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id,
            header_version,
        })
    }

    /// Encodes this header (as a client would) in front of a body.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i16(self.api_key as i16);
        buf.put_i16(self.api_version);
        buf.put_i32(self.correlation_id);
        match &self.client_id {
            None => buf.put_i16(-1),
            Some(id) => {
                let len = id.len().min(i16::MAX as usize);
                buf.put_i16(len as i16);
                buf.put_slice(&id.as_bytes()[..len]);
            }
        }
        if self.header_version >= 2 {
            buf.put_u8(0);
        }
    }

    /// The header version of the response to this request.
    pub fn response_header_version(&self) -> i16 {
        response_header_version(self.api_key, self.api_version)
    }
}

/// The response header version for `api_key` at `api_version`.
///
/// ApiVersions responses always use header v0 (no tagged fields), so that a
/// client can parse the answer whatever version it asked for (KIP-511).
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    match api_key {
        ApiKey::ApiVersions => 0,
        _ => api_key.response_header_version(api_version),
    }
}

/// Appends a response header: the correlation id, plus an empty tagged-field
/// block for header v1.
pub fn encode_response_header(buf: &mut BytesMut, correlation_id: i32, header_version: i16) {
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::RequestHeader as KpHeader;
    use kafka_protocol::protocol::encode_request_header_into_buffer;
    use proptest::prelude::*;

    fn header(api_key: ApiKey, api_version: i16, client_id: Option<&'static str>) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id: 42,
            client_id: client_id.map(StrBytes::from_static_str),
            header_version: api_key.request_header_version(api_version),
        }
    }

    #[test]
    fn v1_and_v2_headers() {
        for h in [
            header(ApiKey::Produce, 7, Some("rdkafka")),
            header(ApiKey::Produce, 9, Some("java")),
            header(ApiKey::Metadata, 12, None),
        ] {
            let mut buf = BytesMut::new();
            h.encode(&mut buf);
            buf.put_slice(b"body");
            let mut frame = buf.freeze();
            assert_eq!(RequestHeader::decode(&mut frame).unwrap(), h);
            assert_eq!(&frame[..], b"body");
        }
    }

    #[test]
    fn agrees_with_kafka_protocol_encoder() {
        let kp = KpHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(12)
            .with_correlation_id(-3)
            .with_client_id(Some(StrBytes::from_static_str("consumer-1")));
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &kp).unwrap();
        let mut frame = buf.freeze();
        let h = RequestHeader::decode(&mut frame).unwrap();
        assert_eq!(h.api_key, ApiKey::Fetch);
        assert_eq!(h.header_version, 2);
        assert_eq!(h.correlation_id, -3);
        assert_eq!(h.client_id.as_deref(), Some("consumer-1"));
        assert!(frame.is_empty());
    }

    #[test]
    fn unknown_key_keeps_the_correlation_id() {
        let mut frame = Bytes::from_static(&[0x7f, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            RequestHeader::decode(&mut frame),
            Err(DecodeError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            })
        );
        let mut frame = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 9, 0, 5, b'a']);
        assert_eq!(
            RequestHeader::decode(&mut frame)
                .unwrap_err()
                .correlation_id(),
            Some(9)
        );
        let mut frame = Bytes::from_static(&[0, 3, 0, 1, 0, 0]);
        assert_eq!(
            RequestHeader::decode(&mut frame),
            Err(DecodeError::TruncatedHeader { len: 6 })
        );
    }

    #[test]
    fn api_versions_response_header_is_v0() {
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
        assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
    }

    proptest! {
        #[test]
        fn round_trip(
            key in prop::sample::select(ApiKey::iter().collect::<Vec<_>>()),
            version in 0i16..20,
            correlation_id in any::<i32>(),
            client_id in proptest::option::of("[ -~]{0,40}"),
        ) {
            let h = RequestHeader {
                api_key: key,
                api_version: version,
                correlation_id,
                client_id: client_id.map(StrBytes::from_string),
                header_version: key.request_header_version(version),
            };
            let mut buf = BytesMut::new();
            h.encode(&mut buf);
            let mut frame = buf.freeze();
            prop_assert_eq!(RequestHeader::decode(&mut frame).unwrap(), h);
            prop_assert!(frame.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let mut frame = Bytes::from(bytes);
            let _ = RequestHeader::decode(&mut frame);
        }
    }
}
