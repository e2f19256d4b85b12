//! Typed requests: a frame is decoded into [`Request`] after its version is checked
//! against the [`ApiVersionTable`] and its array counts against its size.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::bounds;
use crate::errors::DecodeError;
use crate::header::RequestHeader;
use crate::versions::ApiVersionTable;

macro_rules! requests {
    ($($variant:ident($ty:ident)),* $(,)?) => {
        /// A decoded request body, one variant per API in [`crate::SUPPORTED_APIS`].
        ///
        /// Byte fields (`records`, member metadata) are slices of the frame.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $(
                #[doc = concat!("A `", stringify!($ty), "`.")]
                $variant($ty),
            )*
        }

        impl Request {
            /// The API of this request.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Request::$variant(_) => ApiKey::$variant,)*
                }
            }

            /// Decodes a body of `api_key` at `api_version` with `kafka-protocol`.
            ///
            /// Callers must have run [`bounds::check`] first.
            fn decode_unchecked(
                api_key: ApiKey,
                body: &mut Bytes,
                api_version: i16,
            ) -> Option<Result<Request, String>> {
                Some(match api_key {
                    $(ApiKey::$variant => $ty::decode(body, api_version)
                        .map(Request::$variant)
                        .map_err(|e| format!("{e:#}")),)*
                    _ => return None,
                })
            }

            /// Encodes the default message of `api_key` at `api_version` (schema tests).
            #[cfg(test)]
            pub(crate) fn encode_default(api_key: ApiKey, api_version: i16) -> Option<Bytes> {
                use kafka_protocol::protocol::Encodable;
                let mut buf = bytes::BytesMut::new();
                match api_key {
                    $(ApiKey::$variant => $ty::default().encode(&mut buf, api_version).ok()?,)*
                    _ => return None,
                }
                Some(buf.freeze())
            }
        }
    };
}

requests! {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    SyncGroup(SyncGroupRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    ApiVersions(ApiVersionsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    DeleteRecords(DeleteRecordsRequest),
    InitProducerId(InitProducerIdRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    DescribeConfigs(DescribeConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DeleteGroups(DeleteGroupsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeCluster(DescribeClusterRequest),
    DescribeProducers(DescribeProducersRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    ListTransactions(ListTransactionsRequest),
    WriteTxnMarkers(WriteTxnMarkersRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    DescribeQuorum(DescribeQuorumRequest),
}

impl Request {
    /// Decodes the body that follows `header`, if `table` serves its key and version.
    ///
    /// Memory is bounded by the frame: [`bounds::check`] walks the body with
    /// Kafka's message schema first and refuses any array or string whose
    /// count exceeds the bytes left, because `kafka-protocol` calls
    /// `Vec::with_capacity(count)` with counts read off the wire, and a
    /// 20-byte frame announcing 2^31 topics would otherwise abort the process
    /// on allocation failure. After the check, every `Vec` holds at most one
    /// element per remaining byte and a request at most
    /// [`bounds::MAX_ELEMENTS`] elements in all, so decoding a frame of N bytes
    /// allocates O(min(N, 2^20) × largest element size) besides slices of the frame.
    pub fn decode(
        header: &RequestHeader,
        body: &mut Bytes,
        table: &ApiVersionTable,
    ) -> Result<Request, DecodeError> {
        table.check(header)?;
        let malformed = |reason: String| DecodeError::MalformedBody {
            api_key: header.api_key,
            api_version: header.api_version,
            correlation_id: header.correlation_id,
            reason,
        };
        bounds::check(header.api_key, header.api_version, body)
            .map_err(|e| malformed(e.to_string()))?;
        match Request::decode_unchecked(header.api_key, body, header.api_version) {
            Some(Ok(request)) => Ok(request),
            Some(Err(reason)) => Err(malformed(reason)),
            // The table only holds keys of this enum; a key outside it is
            // treated like a version the table does not serve.
            None => Err(DecodeError::UnsupportedVersion {
                api_key: header.api_key,
                api_version: header.api_version,
                correlation_id: header.correlation_id,
            }),
        }
    }
}

/// Decodes a whole frame (header and body) into its header and typed request.
pub fn decode_request(
    mut frame: Bytes,
    table: &ApiVersionTable,
) -> Result<(RequestHeader, Request), DecodeError> {
    let header = RequestHeader::decode(&mut frame)?;
    let request = Request::decode(&header, &mut frame, table)?;
    Ok((header, request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::request_frame;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn every_supported_key_has_a_variant() {
        for a in crate::SUPPORTED_APIS {
            let v = a.accepted().min;
            let mut body = Bytes::new();
            let decoded = Request::decode_unchecked(a.api_key, &mut body, v);
            assert!(decoded.is_some(), "{:?} has no Request variant", a.api_key);
        }
    }

    #[test]
    fn metadata_round_trip() {
        let table = ApiVersionTable::all();
        let topic = metadata_request::MetadataRequestTopic::default()
            .with_name(Some(StrBytes::from_static_str("orders").into()));
        let req = MetadataRequest::default().with_topics(Some(vec![topic]));
        let frame = request_frame(ApiKey::Metadata, 12, 77, Some("me"), &req).unwrap();
        let (h, r) = decode_request(frame, &table).unwrap();
        assert_eq!((h.correlation_id, h.client_id.as_deref()), (77, Some("me")));
        assert_eq!(r, Request::Metadata(req));
        assert_eq!(r.api_key(), ApiKey::Metadata);
    }

    #[test]
    fn version_checked_before_body() {
        let table = ApiVersionTable::all();
        let req = ProduceRequest::default();
        for v in [2, 12, 13] {
            // Produce v2 cannot even be encoded by kafka-protocol; the body is irrelevant.
            let frame = request_frame(ApiKey::Produce, v, 1, None, &ListGroupsRequest::default())
                .or_else(|_| request_frame(ApiKey::Produce, v, 1, None, &req))
                .unwrap();
            assert_eq!(
                decode_request(frame, &table).unwrap_err(),
                DecodeError::UnsupportedVersion {
                    api_key: ApiKey::Produce,
                    api_version: v,
                    correlation_id: 1
                }
            );
        }
        let only_meta = ApiVersionTable::for_keys(&[ApiKey::Metadata]);
        let frame = request_frame(
            ApiKey::ListGroups,
            4,
            3,
            None,
            &ListGroupsRequest::default(),
        )
        .unwrap();
        assert!(matches!(
            decode_request(frame, &only_meta),
            Err(DecodeError::UnsupportedVersion {
                correlation_id: 3,
                ..
            })
        ));
    }

    #[test]
    fn truncated_body_is_malformed() {
        let table = ApiVersionTable::all();
        let topic = metadata_request::MetadataRequestTopic::default()
            .with_name(Some(StrBytes::from_static_str("orders").into()));
        let req = MetadataRequest::default().with_topics(Some(vec![topic]));
        let frame = request_frame(ApiKey::Metadata, 4, 5, None, &req).unwrap();
        let cut = frame.slice(..frame.len() - 3);
        assert!(matches!(
            decode_request(cut, &table),
            Err(DecodeError::MalformedBody {
                api_key: ApiKey::Metadata,
                api_version: 4,
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn produce_round_trip(
            version in 3i16..=11,
            acks in proptest::sample::select(vec![-1i16, 0, 1]),
            topics in proptest::collection::vec(
                ("[a-z._-]{1,24}", proptest::collection::vec(
                    (0i32..1000, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)),
                    0..4,
                )),
                0..4,
            ),
        ) {
            use produce_request::{PartitionProduceData, TopicProduceData};
            let topic_data = topics
                .into_iter()
                .map(|(name, parts)| {
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partition_data(
                            parts
                                .into_iter()
                                .map(|(index, records)| {
                                    PartitionProduceData::default()
                                        .with_index(index)
                                        .with_records(Some(Bytes::from(records)))
                                })
                                .collect(),
                        )
                })
                .collect();
            let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(1500).with_topic_data(topic_data);
            let frame = request_frame(ApiKey::Produce, version, 9, Some("p"), &req).unwrap();
            let (h, r) = decode_request(frame, &ApiVersionTable::all()).unwrap();
            proptest::prop_assert_eq!((h.api_version, h.correlation_id), (version, 9));
            proptest::prop_assert_eq!(r, Request::Produce(req));
        }

        #[test]
        fn garbage_bodies_never_panic_and_walk_agrees(
            index in 0..crate::SUPPORTED_APIS.len(),
            pick in proptest::prelude::any::<u16>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let api = crate::SUPPORTED_APIS[index];
            let range = api.accepted();
            let version = range.min + (pick % (range.max - range.min + 1) as u16) as i16;
            let header = RequestHeader {
                api_key: api.api_key,
                api_version: version,
                correlation_id: 1,
                client_id: None,
                header_version: api.api_key.request_header_version(version),
            };
            let walked = bounds::check(api.api_key, version, &body);
            let mut rest = Bytes::from(body.clone());
            if Request::decode(&header, &mut rest, &ApiVersionTable::all()).is_ok() {
                proptest::prop_assert_eq!(walked.ok(), Some(body.len() - rest.len()));
            }
        }
    }

    #[test]
    fn huge_array_count_is_refused_without_allocating() {
        // Metadata v4: header, then topics count 0x7fffffff and nothing else.
        let table = ApiVersionTable::all();
        let mut frame = vec![0, 3, 0, 4, 0, 0, 0, 1, 0xff, 0xff];
        frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1]);
        let err = decode_request(Bytes::from(frame), &table).unwrap_err();
        assert!(matches!(err, DecodeError::MalformedBody { .. }), "{err}");
    }
}
