//! The ApiVersions table: the one source of truth of which API keys and versions Sluice serves.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::errors::{DecodeError, code};
use crate::header::RequestHeader;

/// One API the protocol crate can serve, with the version range it advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    /// The API.
    pub api_key: ApiKey,
    /// Lowest advertised version.
    pub min: i16,
    /// Highest advertised version.
    pub max: i16,
}

const fn api(api_key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi { api_key, min, max }
}

/// Every API this crate can decode, at the ranges Sluice advertises.
///
/// Ranges are those Java client 3.9 and librdkafka 2.x negotiate, within what
/// `kafka-protocol` 0.18 decodes. Deliberate limits:
/// - Produce and FindCoordinator are advertised from v0 as Kafka 4 does:
///   librdkafka 2.0.2 stops compressing if Produce starts at v3 and gates LZ4
///   on FindCoordinator v0. Produce v0-2 cannot be decoded and is refused
///   (see [`SupportedApi::accepted`]).
/// - Produce stops at v11 and Fetch at v12: Produce v13 / Fetch v13+ address
///   topics by id, and Produce v12 promises transactions v2 (KIP-890).
/// - ListOffsets stops at v7 (max timestamp, KIP-734); v8+ add tiered-storage
///   offsets. OffsetCommit/OffsetFetch stop at v9 (the KIP-848 versions; v10
///   addresses topics by id), FindCoordinator/InitProducerId/txn APIs before
///   KIP-890 part 2.
/// - ConsumerGroupHeartbeat v1 adds the topic regex librdkafka 2.10+ needs;
///   Java 3.9 uses v0. ConsumerGroupDescribe v1 adds the member type.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 0, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 7),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 3),
    api(ApiKey::EndTxn, 0, 3),
    api(ApiKey::TxnOffsetCommit, 0, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::WriteTxnMarkers, 0, 1),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::DescribeQuorum, 0, 2),
];

impl SupportedApi {
    /// The advertised range.
    pub fn advertised(&self) -> VersionRange {
        VersionRange {
            min: self.min,
            max: self.max,
        }
    }

    /// The versions actually decoded: the advertised range intersected with
    /// what `kafka-protocol` supports (Produce: 3..=11).
    pub fn accepted(&self) -> VersionRange {
        self.advertised().intersect(&self.api_key.valid_versions())
    }
}

/// Key space of the lookup array; Kafka's keys are small and dense.
const KEY_SLOTS: usize = 128;

/// The APIs one broker serves: a subset of [`SUPPORTED_APIS`].
#[derive(Debug, Clone)]
pub struct ApiVersionTable {
    entries: Vec<SupportedApi>,
    by_key: [Option<u8>; KEY_SLOTS],
}

impl ApiVersionTable {
    /// Everything in [`SUPPORTED_APIS`].
    pub fn all() -> Self {
        Self::from_entries(SUPPORTED_APIS.iter().copied())
    }

    /// Only the APIs in `keys` (the ones the broker has handlers for), at
    /// their [`SUPPORTED_APIS`] ranges. Keys the crate does not support are ignored.
    pub fn for_keys(keys: &[ApiKey]) -> Self {
        Self::from_entries(
            SUPPORTED_APIS
                .iter()
                .copied()
                .filter(|a| keys.contains(&a.api_key)),
        )
    }

    /// Narrows one API's range (e.g. to hold a version back); an empty
    /// intersection removes the API.
    pub fn restrict(self, api_key: ApiKey, min: i16, max: i16) -> Self {
        let narrowed = VersionRange { min, max };
        Self::from_entries(self.entries.into_iter().filter_map(|mut a| {
            if a.api_key == api_key {
                let r = a.advertised().intersect(&narrowed);
                (a.min, a.max) = (r.min, r.max);
            }
            (a.min <= a.max).then_some(a)
        }))
    }

    fn from_entries(entries: impl Iterator<Item = SupportedApi>) -> Self {
        let mut table = ApiVersionTable {
            entries: Vec::new(),
            by_key: [None; KEY_SLOTS],
        };
        for a in entries {
            let slot = a.api_key as i16 as usize;
            assert!(slot < KEY_SLOTS, "api key {slot} outside the lookup array");
            assert!(table.by_key[slot].is_none(), "{:?} listed twice", a.api_key);
            table.by_key[slot] = Some(table.entries.len() as u8);
            table.entries.push(a);
        }
        table
    }

    /// The served APIs in table order.
    pub fn entries(&self) -> &[SupportedApi] {
        &self.entries
    }

    /// The entry for `api_key`, if served.
    pub fn get(&self, api_key: ApiKey) -> Option<&SupportedApi> {
        let slot = *self.by_key.get(api_key as i16 as usize)?;
        slot.map(|i| &self.entries[i as usize])
    }

    /// Whether `api_version` of `api_key` is decoded and served.
    pub fn accepts(&self, api_key: ApiKey, api_version: i16) -> bool {
        self.get(api_key).is_some_and(|a| {
            let r = a.accepted();
            r.min <= api_version && api_version <= r.max
        })
    }

    /// Checks a request header against the table.
    pub fn check(&self, header: &RequestHeader) -> Result<(), DecodeError> {
        if self.accepts(header.api_key, header.api_version) {
            Ok(())
        } else {
            Err(DecodeError::UnsupportedVersion {
                api_key: header.api_key,
                api_version: header.api_version,
                correlation_id: header.correlation_id,
            })
        }
    }

    fn api_keys(&self) -> Vec<ApiVersion> {
        self.entries
            .iter()
            .map(|a| {
                ApiVersion::default()
                    .with_api_key(a.api_key as i16)
                    .with_min_version(a.min)
                    .with_max_version(a.max)
            })
            .collect()
    }

    /// The ApiVersions answer to a request of `api_version`, and the version to encode it with.
    ///
    /// An accepted version gets the table at that version. Any other version
    /// gets a v0 body with UNSUPPORTED_VERSION (35) and the key list, so the
    /// client can retry with a version it sees there (KIP-511). Feature fields
    /// are left empty: default tagged fields are then left out, which
    /// librdkafka 2.0.2 needs.
    pub fn api_versions_response(&self, api_version: i16) -> (i16, ApiVersionsResponse) {
        if !self.accepts(ApiKey::ApiVersions, api_version) {
            return (0, self.unsupported_version_response());
        }
        let body = ApiVersionsResponse::default().with_api_keys(self.api_keys());
        (api_version, body)
    }

    /// The v0 body answering an ApiVersions request of an unsupported version.
    pub fn unsupported_version_response(&self) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(code::UNSUPPORTED_VERSION)
            .with_api_keys(self.api_keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_api_is_decodable_somewhere() {
        for a in SUPPORTED_APIS {
            let r = a.accepted();
            assert!(
                r.min <= r.max,
                "{:?}: nothing decodable in {}",
                a.api_key,
                r
            );
            assert!(
                a.max == r.max,
                "{:?}: advertised max {} not decodable",
                a.api_key,
                a.max
            );
        }
    }

    #[test]
    fn produce_is_advertised_from_zero_but_accepted_from_three() {
        let t = ApiVersionTable::all();
        let p = t.get(ApiKey::Produce).unwrap();
        assert_eq!((p.min, p.max), (0, 11));
        assert_eq!(p.accepted(), VersionRange { min: 3, max: 11 });
        assert!(!t.accepts(ApiKey::Produce, 2));
        assert!(t.accepts(ApiKey::Produce, 3));
        assert!(!t.accepts(ApiKey::Produce, 13));
        assert!(!t.accepts(ApiKey::Fetch, 13));
        assert_eq!(t.get(ApiKey::FindCoordinator).unwrap().min, 0);
    }

    #[test]
    fn for_keys_and_restrict() {
        let t = ApiVersionTable::for_keys(&[ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Vote]);
        assert_eq!(t.entries().len(), 2);
        assert!(t.get(ApiKey::Produce).is_none());
        let t = t.restrict(ApiKey::Metadata, 1, 9);
        assert_eq!(
            t.get(ApiKey::Metadata).map(|a| (a.min, a.max)),
            Some((1, 9))
        );
        let t = t.restrict(ApiKey::Metadata, 20, 30);
        assert!(t.get(ApiKey::Metadata).is_none());
    }

    #[test]
    fn api_versions_answers() {
        let t = ApiVersionTable::all();
        let (v, body) = t.api_versions_response(3);
        assert_eq!((v, body.error_code), (3, 0));
        assert_eq!(body.api_keys.len(), SUPPORTED_APIS.len());
        let produce = body.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        let (v, body) = t.api_versions_response(99);
        assert_eq!((v, body.error_code), (0, 35));
        assert_eq!(body.api_keys.len(), SUPPORTED_APIS.len());
    }

    #[test]
    fn v3_answer_carries_no_tagged_fields() {
        // librdkafka 2.0.2 cannot parse an ApiVersions v3 response with feature tags.
        let t = ApiVersionTable::for_keys(&[ApiKey::ApiVersions, ApiKey::Metadata]);
        let (v, body) = t.api_versions_response(3);
        let mut buf = bytes::BytesMut::new();
        crate::response::encode_response_to(&mut buf, ApiKey::ApiVersions, v, 9, &body).unwrap();
        let expected: &[u8] = &[
            0, 0, 0, 26, // size
            0, 0, 0, 9, // correlation id, header v0: no tagged fields
            0, 0, // error code
            3, // compact array of 2
            0, 3, 0, 0, 0, 12, 0, // Metadata 0..12, no tags
            0, 18, 0, 0, 0, 4, 0, // ApiVersions 0..4, no tags
            0, 0, 0, 0, // throttle time
            0, // no tagged fields
        ];
        assert_eq!(&buf[..], expected);
    }
}
