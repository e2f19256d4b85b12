//! A schema walk that proves a request body's counts fit its bytes before `kafka-protocol` decodes it.
//!
//! `kafka-protocol` sizes vectors from counts read off the wire
//! (`Vec::with_capacity(n)` for arrays), so a tiny frame announcing 2^31
//! elements makes it request gigabytes and abort the process. This module
//! walks the body with Kafka's own message schema (generated into
//! `bounds_schema.rs`) and refuses any array, string or byte field whose
//! count exceeds the bytes left. The walk allocates nothing and visits each
//! byte once; nesting is bounded by the schema, not by the input.

use crate::bounds_schema;
use crate::wire::Reader;
use kafka_protocol::messages::ApiKey;

/// Most array elements one request may hold, summed over all its arrays.
///
/// Counts within the bytes left still let a small element on the wire (a
/// 2-byte null topic name) become a ~70-byte struct in memory, so a 100 MiB
/// frame could cost gigabytes. Real requests stay far below this (a Metadata
/// request names each topic, a Produce request carries one element per
/// partition); with it, a decoded request holds at most ~1 Mi elements of at
/// most a few hundred bytes each besides slices of its frame.
pub const MAX_ELEMENTS: u64 = 1 << 20;

/// The wire shape of one request type.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) api_key: i16,
    /// First flexible version (compact encodings, tagged fields); `i16::MAX` if none.
    pub(crate) flexible_from: i16,
    pub(crate) fields: &'static [Field],
}

/// One field: its kind, the versions it exists in, and its tag (-1: not tagged).
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) kind: Kind,
    pub(crate) min: i16,
    pub(crate) max: i16,
    pub(crate) tag: i32,
}

/// Kafka's field types, as far as their encoding differs.
#[derive(Debug)]
#[allow(dead_code)] // every spec type, whether or not a served request uses it
pub(crate) enum Kind {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    Uuid,
    String,
    Bytes,
    Records,
    Array(&'static Kind),
    Struct(&'static [Field]),
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// The body ended inside a field.
    #[error("body truncated at byte {at}")]
    Truncated {
        /// Offset in the body.
        at: usize,
    },
    /// A count or length larger than the bytes that follow it.
    #[error("count {count} at byte {at} exceeds the {remaining} bytes left")]
    CountTooLarge {
        /// The count read.
        count: u64,
        /// Offset in the body.
        at: usize,
        /// Bytes after the count.
        remaining: usize,
    },
    /// A negative length other than -1 (null).
    #[error("negative length {len} at byte {at}")]
    NegativeLength {
        /// The length read.
        len: i64,
        /// Offset in the body.
        at: usize,
    },
    /// More array elements than [`MAX_ELEMENTS`].
    #[error("more than {MAX_ELEMENTS} array elements (at byte {at})")]
    TooManyElements {
        /// Offset in the body.
        at: usize,
    },
    /// No schema for this API (a bug: every served API must have one).
    #[error("no schema for api key {0:?}")]
    NoSchema(ApiKey),
}

/// Checks that decoding `body` as `api_key` v`api_version` allocates at most
/// one element per remaining byte for every array, string and byte field.
///
/// Returns the bytes the message occupies, which is where `kafka-protocol`'s
/// decoder stops too (the fuzz target asserts that they agree).
pub fn check(api_key: ApiKey, api_version: i16, body: &[u8]) -> Result<usize, BoundsError> {
    let message = bounds_schema::message(api_key as i16).ok_or(BoundsError::NoSchema(api_key))?;
    check_fields(
        message.fields,
        api_version,
        api_version >= message.flexible_from,
        body,
    )
}

/// [`check`] for a message given by its fields: the consumer protocol's embedded messages, which
/// are not requests of their own.
pub(crate) fn check_fields(
    fields: &'static [Field],
    version: i16,
    flexible: bool,
    body: &[u8],
) -> Result<usize, BoundsError> {
    let mut walk = Walk {
        r: Reader::new(body),
        version,
        flexible,
        elements: 0,
    };
    walk.fields(fields)?;
    Ok(walk.r.position())
}

struct Walk<'a> {
    r: Reader<'a>,
    version: i16,
    flexible: bool,
    elements: u64,
}

impl Walk<'_> {
    fn truncated(&self) -> BoundsError {
        BoundsError::Truncated {
            at: self.r.position(),
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), BoundsError> {
        self.r.skip(n).ok_or_else(|| self.truncated())
    }

    /// Reads a length or count: `None` for null, else a value checked against the bytes left.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, BoundsError> {
        let at = self.r.position();
        let len: i64 = if self.flexible {
            i64::from(self.r.uvarint().ok_or_else(|| self.truncated())?) - 1
        } else if wide {
            i64::from(self.r.i32().ok_or_else(|| self.truncated())?)
        } else {
            i64::from(self.r.i16().ok_or_else(|| self.truncated())?)
        };
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(BoundsError::NegativeLength { len, at });
        }
        let remaining = self.r.remaining();
        if len as u64 > remaining as u64 {
            return Err(BoundsError::CountTooLarge {
                count: len as u64,
                at,
                remaining,
            });
        }
        Ok(Some(len as usize))
    }

    fn fields(&mut self, fields: &'static [Field]) -> Result<(), BoundsError> {
        let v = self.version;
        for f in fields {
            if f.tag < 0 && f.min <= v && v <= f.max {
                self.value(&f.kind)?;
            }
        }
        if self.flexible {
            self.tagged_fields(fields)
        } else {
            Ok(())
        }
    }

    fn tagged_fields(&mut self, fields: &'static [Field]) -> Result<(), BoundsError> {
        let count = self.r.uvarint().ok_or_else(|| self.truncated())?;
        for _ in 0..count {
            let tag = self.r.uvarint().ok_or_else(|| self.truncated())?;
            let size = self.length_raw()?;
            let v = self.version;
            // Untagged fields have tag -1: compare as u32 so a wire tag of
            // 0xffffffff does not match them (a fuzzer find).
            let known = fields
                .iter()
                .find(|f| f.tag >= 0 && f.tag as u32 == tag && f.min <= v && v <= f.max);
            match known {
                // kafka-protocol decodes known tags from the main buffer,
                // so walk them in place; size only bounds unknown ones.
                Some(f) => self.value(&f.kind)?,
                None => self.skip(size)?,
            }
        }
        Ok(())
    }

    /// An unsigned varint size checked against the bytes left.
    fn length_raw(&mut self) -> Result<usize, BoundsError> {
        let at = self.r.position();
        let size = self.r.uvarint().ok_or_else(|| self.truncated())?;
        let remaining = self.r.remaining();
        if size as usize > remaining {
            return Err(BoundsError::CountTooLarge {
                count: u64::from(size),
                at,
                remaining,
            });
        }
        Ok(size as usize)
    }

    fn value(&mut self, kind: &'static Kind) -> Result<(), BoundsError> {
        match kind {
            Kind::Bool | Kind::Int8 => self.skip(1),
            Kind::Int16 | Kind::Uint16 => self.skip(2),
            Kind::Int32 | Kind::Uint32 => self.skip(4),
            Kind::Int64 | Kind::Float64 => self.skip(8),
            Kind::Uuid => self.skip(16),
            Kind::String => {
                let len = self.length(false)?;
                self.skip(len.unwrap_or(0))
            }
            Kind::Bytes | Kind::Records => {
                let len = self.length(true)?;
                self.skip(len.unwrap_or(0))
            }
            Kind::Array(element) => {
                let at = self.r.position();
                let count = self.length(true)?.unwrap_or(0);
                self.elements += count as u64;
                if self.elements > MAX_ELEMENTS {
                    return Err(BoundsError::TooManyElements { at });
                }
                for _ in 0..count {
                    self.value(element)?;
                }
                Ok(())
            }
            Kind::Struct(fields) => self.fields(fields),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::RequestHeader;
    use crate::test_support::request_frame;
    use crate::versions::SUPPORTED_APIS;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    fn body_of(frame: bytes::Bytes) -> bytes::Bytes {
        let mut f = frame;
        RequestHeader::decode(&mut f).unwrap();
        f
    }

    #[test]
    fn every_supported_api_has_a_schema() {
        for a in SUPPORTED_APIS {
            assert!(
                bounds_schema::message(a.api_key as i16).is_some(),
                "{:?}",
                a.api_key
            );
        }
    }

    #[test]
    fn accepts_what_kafka_protocol_encodes() {
        let topic = |name: &'static str| {
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(3)
                        .with_records(Some(bytes::Bytes::from_static(&[1; 80]))),
                ])
        };
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![topic("a"), topic("bb")]);
        for v in 3..=11 {
            let body = body_of(request_frame(ApiKey::Produce, v, 1, None, &req).unwrap());
            assert_eq!(
                check(ApiKey::Produce, v, &body),
                Ok(body.len()),
                "produce v{v}"
            );
        }
        let fetch = FetchRequest::default()
            .with_cluster_id(Some(StrBytes::from_static_str("c")))
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_partitions(vec![fetch_request::FetchPartition::default()]),
            ]);
        for v in 12..=12 {
            let body = body_of(request_frame(ApiKey::Fetch, v, 1, None, &fetch).unwrap());
            assert_eq!(check(ApiKey::Fetch, v, &body), Ok(body.len()), "fetch v{v}");
        }
    }

    #[test]
    fn accepts_every_default_request() {
        for a in SUPPORTED_APIS {
            let r = a.accepted();
            for v in r.min..=r.max {
                let body = default_body(a.api_key, v);
                assert_eq!(
                    check(a.api_key, v, &body),
                    Ok(body.len()),
                    "{:?} v{v}",
                    a.api_key
                );
            }
        }
    }

    fn default_body(key: ApiKey, v: i16) -> bytes::Bytes {
        crate::request::Request::encode_default(key, v).expect("default request encodes")
    }

    #[test]
    fn refuses_counts_beyond_the_body() {
        // Metadata v4: topics array count 2^31-1, then one byte.
        let body = [0x7f, 0xff, 0xff, 0xff, 1];
        assert!(matches!(
            check(ApiKey::Metadata, 4, &body),
            Err(BoundsError::CountTooLarge {
                count: 0x7fff_ffff,
                at: 0,
                remaining: 1
            })
        ));
        // Metadata v12 (flexible): compact count 2^32-2.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        assert!(matches!(
            check(ApiKey::Metadata, 12, &body),
            Err(BoundsError::CountTooLarge { .. })
        ));
        assert!(matches!(
            check(ApiKey::Metadata, 4, &[0, 0]),
            Err(BoundsError::Truncated { .. })
        ));
    }

    #[test]
    fn tag_0xffffffff_is_unknown_not_an_untagged_field() {
        use kafka_protocol::protocol::Decodable;
        // DescribeConfigs v4: one resource (type 0, name "", keys []) whose
        // tagged fields hold tag 0xffffffff with size 0; then two bools and no tags.
        let body = [2, 0, 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0];
        assert_eq!(check(ApiKey::DescribeConfigs, 4, &body), Ok(body.len()));
        let mut b = bytes::Bytes::copy_from_slice(&body);
        let decoded = DescribeConfigsRequest::decode(&mut b, 4).unwrap();
        assert_eq!(decoded.resources[0].unknown_tagged_fields.len(), 1);
        assert!(b.is_empty(), "walk and kafka-protocol end at the same byte");
    }

    #[test]
    fn caps_the_total_number_of_elements() {
        // Metadata v4: 2^20 + 1 null topic names (2 bytes each) fit their bytes but not the cap.
        let n = MAX_ELEMENTS as usize + 1;
        let mut body = (n as i32).to_be_bytes().to_vec();
        body.extend(std::iter::repeat_n([0xff, 0xff], n).flatten());
        body.push(1);
        assert_eq!(
            check(ApiKey::Metadata, 4, &body),
            Err(BoundsError::TooManyElements { at: 0 })
        );
        let n = 1000;
        let mut body = (n as i32).to_be_bytes().to_vec();
        body.extend(std::iter::repeat_n([0xff, 0xff], n).flatten());
        body.push(1);
        assert_eq!(check(ApiKey::Metadata, 4, &body), Ok(body.len()));
    }
}
