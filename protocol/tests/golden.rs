//! Golden frames captured from real clients (see tests/golden/README.md): the decoder's view of them.

use bytes::Bytes;
use sluice_protocol::batch::Codec;
use sluice_protocol::messages::ApiKey;
use sluice_protocol::timestamp::first_offset_at_or_after;
use sluice_protocol::{ApiVersionTable, BatchIter, Request, RequestHeader, decode_request};

const BASE_TS: i64 = 1_700_000_000_000;

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn decode(name: &str) -> (Bytes, RequestHeader, Request) {
    let frame = load(name);
    let (header, request) = decode_request(frame.clone(), &ApiVersionTable::all())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (frame, header, request)
}

#[test]
fn every_golden_frame_decodes_as_named() {
    let dir = format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".bin") else {
            continue;
        };
        let (_, header, request) = decode(&name);
        // <client.id>-c<connection>-<n>-<Api>-v<version>
        let mut parts = stem.rsplitn(4, '-');
        let version: i16 = parts.next().unwrap()[1..].parse().unwrap();
        let api = parts.next().unwrap();
        let (client, _connection) = parts.nth(1).unwrap().rsplit_once("-c").unwrap();
        assert_eq!(format!("{:?}", header.api_key), api, "{name}");
        assert_eq!(request.api_key(), header.api_key, "{name}");
        assert_eq!(header.api_version, version, "{name}");
        assert_eq!(header.client_id.as_deref(), Some(client), "{name}");
        n += 1;
    }
    assert_eq!(n, 51, "golden frame count");
}

#[test]
fn api_versions_from_each_client() {
    for (name, corr, software, version) in [
        (
            "java-c6-00-ApiVersions-v4.bin",
            0,
            "apache-kafka-java",
            "3.9.1",
        ),
        (
            "kafka-python-c4-00-ApiVersions-v4.bin",
            1,
            "kafka-python",
            "3.0.12",
        ),
        (
            "rdkafka-none-c0-00-ApiVersions-v3.bin",
            1,
            "confluent-kafka-python",
            "2.16.1-rdkafka-2.16.0",
        ),
    ] {
        let (_, h, r) = decode(name);
        assert_eq!(
            (h.api_key, h.correlation_id, h.header_version),
            (ApiKey::ApiVersions, corr, 2)
        );
        let Request::ApiVersions(req) = r else {
            panic!("{name}")
        };
        assert_eq!(&*req.client_software_name, software);
        assert_eq!(&*req.client_software_version, version);
    }
}

#[test]
fn metadata_topic_names() {
    for (name, corr, topics, auto_create) in [
        ("java-c6-01-Metadata-v12.bin", 1, Some(vec!["golden"]), true),
        ("kafka-python-c4-01-Metadata-v12.bin", 2, Some(vec![]), true),
        ("rdkafka-lz4-c2-01-Metadata-v12.bin", 2, Some(vec![]), false),
        (
            "rdkafka-lz4-c2-02-Metadata-v12.bin",
            3,
            Some(vec!["golden"]),
            true,
        ),
    ] {
        let (_, h, r) = decode(name);
        assert_eq!(h.correlation_id, corr, "{name}");
        let Request::Metadata(req) = r else {
            panic!("{name}")
        };
        let names = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| t.name.unwrap().0.to_string())
                .collect::<Vec<_>>()
        });
        assert_eq!(
            names,
            topics.map(|v| v.into_iter().map(String::from).collect()),
            "{name}"
        );
        assert_eq!(req.allow_auto_topic_creation, auto_create, "{name}");
    }
}

struct ProduceExpect {
    name: &'static str,
    correlation_id: i32,
    acks: i16,
    codec: Codec,
    producer_id: i64,
    batch_length: i32,
    partition_leader_epoch: i32,
}

#[test]
fn produce_batches_from_each_client() {
    let cases = [
        ProduceExpect {
            name: "java-c7-01-Produce-v11.bin",
            correlation_id: 5,
            acks: -1,
            codec: Codec::Zstd,
            producer_id: 1000,
            batch_length: 110,
            partition_leader_epoch: -1,
        },
        ProduceExpect {
            name: "kafka-python-c5-02-Produce-v9.bin",
            correlation_id: 3,
            acks: 1,
            codec: Codec::None,
            producer_id: -1,
            batch_length: 109,
            partition_leader_epoch: 0,
        },
        ProduceExpect {
            name: "rdkafka-lz4-c3-03-Produce-v10.bin",
            correlation_id: 4,
            acks: -1,
            codec: Codec::Lz4,
            producer_id: 1000,
            batch_length: 130,
            partition_leader_epoch: 0,
        },
        ProduceExpect {
            name: "rdkafka-none-c1-01-Produce-v10.bin",
            correlation_id: 2,
            acks: -1,
            codec: Codec::None,
            producer_id: -1,
            batch_length: 172,
            partition_leader_epoch: 0,
        },
    ];
    for c in cases {
        let (frame, h, r) = decode(c.name);
        assert_eq!(h.correlation_id, c.correlation_id, "{}", c.name);
        let Request::Produce(req) = r else {
            panic!("{}", c.name)
        };
        assert_eq!(req.acks, c.acks, "{}", c.name);
        assert_eq!(req.transactional_id, None);
        assert_eq!(req.topic_data.len(), 1);
        let topic = &req.topic_data[0];
        assert_eq!(&*topic.name.0, "golden");
        assert_eq!(topic.partition_data.len(), 1);
        let part = &topic.partition_data[0];
        assert_eq!(part.index, 0);
        let records = part.records.as_ref().unwrap();
        let frame_range = frame.as_ptr_range();
        assert!(
            frame_range.contains(&records.as_ptr()),
            "{}: records are a slice of the frame",
            c.name
        );

        let batches: Vec<_> = BatchIter::new(records).collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1, "{}", c.name);
        let b = batches[0];
        assert_eq!(b.total_len(), records.len());
        assert_eq!(
            (
                b.magic(),
                b.base_offset(),
                b.record_count(),
                b.last_offset_delta()
            ),
            (2, 0, 3, 2)
        );
        assert_eq!(b.codec(), c.codec, "{}", c.name);
        assert_eq!(b.batch_length(), c.batch_length, "{}", c.name);
        assert_eq!(
            b.partition_leader_epoch(),
            c.partition_leader_epoch,
            "{}",
            c.name
        );
        assert_eq!(
            (b.base_timestamp(), b.max_timestamp()),
            (BASE_TS, BASE_TS + 2)
        );
        assert_eq!(b.producer_id(), c.producer_id, "{}", c.name);
        let idempotent = c.producer_id >= 0;
        assert_eq!(
            (b.producer_epoch(), b.base_sequence()),
            if idempotent { (0, 0) } else { (-1, -1) }
        );
        assert!(!b.is_transactional() && !b.is_control() && !b.is_log_append_time());
        assert!(b.verify_crc(), "{}: CRC-32C", c.name);
        assert_eq!(
            first_offset_at_or_after(&b, BASE_TS + 1),
            Ok(Some(1)),
            "{}",
            c.name
        );
        assert_eq!(
            first_offset_at_or_after(&b, BASE_TS + 3),
            Ok(None),
            "{}",
            c.name
        );
    }
}

#[test]
fn a_flipped_byte_in_a_real_batch_fails_its_crc() {
    let (_, _, r) = decode("rdkafka-none-c1-01-Produce-v10.bin");
    let Request::Produce(req) = r else { panic!() };
    let mut records = req.topic_data[0].partition_data[0]
        .records
        .as_ref()
        .unwrap()
        .to_vec();
    let last = records.len() - 1;
    records[last] ^= 0x40;
    let b = BatchIter::new(&records).next().unwrap().unwrap();
    assert!(!b.verify_crc());
    sluice_protocol::batch::assign_offsets(&mut records, 500, 7).unwrap();
    records[last] ^= 0x40;
    let b = BatchIter::new(&records).next().unwrap().unwrap();
    assert_eq!((b.base_offset(), b.partition_leader_epoch()), (500, 7));
    assert!(
        b.verify_crc(),
        "prefix rewrite keeps the client's CRC valid"
    );
}

#[test]
fn init_producer_id_requests() {
    let (_, h, r) = decode("java-c6-02-InitProducerId-v4.bin");
    let Request::InitProducerId(req) = r else {
        panic!()
    };
    assert_eq!(
        (
            h.correlation_id,
            req.transactional_id,
            req.transaction_timeout_ms
        ),
        (2, None, i32::MAX)
    );
    let (_, h, r) = decode("rdkafka-lz4-c3-02-InitProducerId-v4.bin");
    let Request::InitProducerId(req) = r else {
        panic!()
    };
    assert_eq!((h.correlation_id, req.transaction_timeout_ms), (3, -1));
}

#[test]
fn fetch_requests_from_each_client() {
    // (file, correlation id, isolation level, session epoch): Java and
    // kafka-python ask for a fetch session (epoch 0, KIP-227); librdkafka
    // sends sessionless full fetches (epoch -1) at read_committed by default.
    for (name, corr, isolation_level, session_epoch) in [
        ("java-consumer-c8-02-Fetch-v12.bin", 5, 0, 0),
        ("kafka-python-consumer-c6-03-Fetch-v12.bin", 4, 0, 0),
        ("rdkafka-consumer-c1-04-Fetch-v12.bin", 5, 1, -1),
    ] {
        let (_, h, r) = decode(name);
        assert_eq!((h.api_version, h.correlation_id), (12, corr), "{name}");
        let Request::Fetch(req) = r else {
            panic!("{name}")
        };
        assert_eq!(
            (req.max_wait_ms, req.min_bytes, req.max_bytes),
            (100, 1, 52_428_800),
            "{name}"
        );
        assert_eq!(
            (req.isolation_level, req.session_id, req.session_epoch),
            (isolation_level, 0, session_epoch),
            "{name}"
        );
        assert_eq!(req.replica_id.0, -1);
        assert_eq!(req.topics.len(), 1);
        assert_eq!(&*req.topics[0].topic.0, "golden");
        let p = &req.topics[0].partitions[0];
        assert_eq!(
            (p.partition, p.fetch_offset, p.partition_max_bytes),
            (0, 0, 1_048_576),
            "{name}"
        );
        assert!(req.forgotten_topics_data.is_empty());
    }
}

#[test]
fn list_offsets_earliest_from_each_client() {
    for (name, corr, isolation_level, current_leader_epoch) in [
        ("java-consumer-c8-01-ListOffsets-v7.bin", 3, 0, 0),
        ("kafka-python-consumer-c6-02-ListOffsets-v7.bin", 3, 0, -1),
        ("rdkafka-consumer-c1-03-ListOffsets-v7.bin", 4, 1, 0),
    ] {
        let (_, h, r) = decode(name);
        assert_eq!(h.correlation_id, corr, "{name}");
        let Request::ListOffsets(req) = r else {
            panic!("{name}")
        };
        assert_eq!(req.isolation_level, isolation_level, "{name}");
        let t = &req.topics[0];
        assert_eq!(&*t.name.0, "golden");
        let p = &t.partitions[0];
        assert_eq!(
            (p.partition_index, p.timestamp),
            (0, -2),
            "{name}: EARLIEST"
        );
        assert_eq!(p.current_leader_epoch, current_leader_epoch, "{name}");
    }
}

#[test]
fn find_coordinator_for_a_consumer_with_assign() {
    // librdkafka asks for the group coordinator even with manual assign().
    let (_, h, r) = decode("rdkafka-consumer-c0-02-FindCoordinator-v2.bin");
    let Request::FindCoordinator(req) = r else {
        panic!()
    };
    assert_eq!((h.api_version, h.correlation_id), (2, 3));
    assert_eq!((&*req.key, req.key_type), ("golden-group", 0));
    assert!(req.coordinator_keys.is_empty());
}

#[test]
fn admin_create_topics_and_describe_configs() {
    let (_, h, r) = decode("rdkafka-admin-c4-02-CreateTopics-v4.bin");
    let Request::CreateTopics(req) = r else {
        panic!()
    };
    assert_eq!((h.api_version, h.correlation_id), (4, 3));
    assert_eq!((req.timeout_ms, req.validate_only), (60_000, false));
    let t = &req.topics[0];
    assert_eq!(
        (&*t.name.0, t.num_partitions, t.replication_factor),
        ("golden-admin", 3, 1)
    );
    assert_eq!(t.configs.len(), 1);
    assert_eq!(
        (&*t.configs[0].name, t.configs[0].value.as_deref()),
        ("retention.ms", Some("3600000"))
    );

    let (_, h, r) = decode("rdkafka-admin-c4-03-DescribeConfigs-v1.bin");
    let Request::DescribeConfigs(req) = r else {
        panic!()
    };
    assert_eq!((h.api_version, h.correlation_id), (1, 4));
    let res = &req.resources[0];
    assert_eq!(
        (res.resource_type, &*res.resource_name),
        (2, "golden"),
        "TOPIC resource"
    );
    assert_eq!(res.configuration_keys, None, "all keys");
    assert!(req.include_synonyms);
}
