//! Hot paths of a broker connection: decode a produce frame, check its batches, encode a fetch response.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, TopicName};
use sluice_protocol::protocol::{Decodable, StrBytes};
use sluice_protocol::response::{encode_response_vectored, fetch_records};
use sluice_protocol::test_support::{put_request, record_batch};
use sluice_protocol::{
    ApiVersionTable, BatchIter, FrameDecoder, RequestHeader, decode_request, encode_response,
};

const PARTITIONS: usize = 16;

/// One ~16 KiB batch: 16 records of 1000-byte values.
fn batch(base_offset: i64) -> Bytes {
    let value = [b'x'; 1000];
    let values: Vec<&[u8]> = (0..16).map(|_| &value[..]).collect();
    Bytes::from(record_batch(base_offset, 1_700_000_000_000, &values))
}

fn produce_frame() -> BytesMut {
    let partitions = (0..PARTITIONS)
        .map(|i| {
            PartitionProduceData::default()
                .with_index(i as i32)
                .with_records(Some(batch(0)))
        })
        .collect();
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_data(partitions);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic]);
    let mut buf = BytesMut::new();
    put_request(&mut buf, ApiKey::Produce, 9, 1, Some("bench"), &req).unwrap();
    buf
}

fn decode_produce(c: &mut Criterion) {
    let wire = produce_frame();
    let table = ApiVersionTable::all();
    let frames = FrameDecoder::default();
    let mut g = c.benchmark_group("decode_produce_16x16KiB");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("frame+header+bounds+decode", |b| {
        b.iter_batched(
            || wire.clone(),
            |mut buf| {
                let frame = frames.decode(&mut buf).unwrap().unwrap();
                decode_request(frame, &table).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let body = {
        let mut f = wire.clone().freeze().slice(4..);
        RequestHeader::decode(&mut f).unwrap();
        f
    };
    g.bench_function("bounds_walk_only", |b| {
        b.iter(|| sluice_protocol::bounds::check(ApiKey::Produce, 9, black_box(&body)).unwrap())
    });
    g.bench_function("kafka_protocol_decode_only", |b| {
        b.iter(|| ProduceRequest::decode(&mut body.clone(), 9).unwrap())
    });
    g.finish();
}

fn batches(c: &mut Criterion) {
    let records: Vec<Bytes> = (0..PARTITIONS).map(|i| batch(i as i64)).collect();
    let total: usize = records.iter().map(Bytes::len).sum();
    let mut g = c.benchmark_group("batch_headers_16x16KiB");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("parse+verify_crc", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &records {
                for view in BatchIter::new(black_box(r)) {
                    let view = view.unwrap();
                    assert!(view.verify_crc());
                    n += view.record_count();
                }
            }
            n
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| {
                    BatchIter::new(black_box(r))
                        .map(|v| v.unwrap().last_offset())
                        .sum::<i64>()
                })
                .sum::<i64>()
        })
    });
    g.finish();
}

fn fetch_response(partition_bytes: usize) -> FetchResponse {
    let one = {
        let n = partition_bytes / batch(0).len();
        let mut buf = BytesMut::new();
        for i in 0..n.max(1) {
            buf.extend_from_slice(&batch(i as i64 * 16));
        }
        buf.freeze()
    };
    let partitions = (0..PARTITIONS)
        .map(|i| {
            PartitionData::default()
                .with_partition_index(i as i32)
                .with_high_watermark(1_000)
                .with_last_stable_offset(1_000)
                .with_records(Some(one.clone()))
        })
        .collect();
    let topic = FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(partitions);
    FetchResponse::default().with_responses(vec![topic])
}

fn encode_fetch(c: &mut Criterion) {
    let header = RequestHeader {
        api_key: ApiKey::Fetch,
        api_version: 12,
        correlation_id: 1,
        client_id: None,
        header_version: 2,
    };
    for (label, size) in [("16x16KiB", 16 * 1024), ("16x1MiB", 1024 * 1024)] {
        let resp = fetch_response(size);
        let records = fetch_records(&resp);
        let total: usize = records.iter().map(Bytes::len).sum();
        let mut g = c.benchmark_group(format!("encode_fetch_{label}"));
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_function("contiguous", |b| {
            let mut out = BytesMut::with_capacity(total + 4096);
            b.iter(|| {
                out.clear();
                encode_response(&mut out, &header, black_box(&resp)).unwrap();
                out.len()
            })
        });
        g.bench_function("vectored", |b| {
            b.iter(|| {
                let records = fetch_records(black_box(&resp));
                encode_response_vectored(&header, &resp, &records)
                    .unwrap()
                    .parts
                    .len()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30);
    targets = decode_produce, batches, encode_fetch
}
criterion_main!(benches);
