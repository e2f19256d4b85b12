//! criterion benches of the metadata store's hot functions: encoding and decoding a command,
//! applying one to a large state, and appending a batch of entries to the log (with and without
//! fsync). Run with `cargo bench -p sluice-raft --bench hot_paths`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use raft::eraftpb::{ConfState, Entry};
use sluice_raft::command::Command;
use sluice_raft::state::MetadataState;
use sluice_raft::storage::DiskStorage;
use uuid::Uuid;

fn create_topic(i: u128) -> Command {
    Command::CreateTopic {
        name: format!("topic-{i}"),
        topic_id: Uuid::from_u128(i + 1),
        partitions: 8,
        configs: BTreeMap::from([("retention.ms".into(), "604800000".into())]),
    }
}

/// A state with a 16-pchannel pool and `topics` topics of 8 partitions.
fn state_with(topics: u128) -> MetadataState {
    let mut s = MetadataState::default();
    s.apply(
        6,
        &Command::InitCluster {
            cluster_id: Uuid::nil(),
            pchannels: 16,
        },
    )
    .unwrap();
    for i in 0..topics {
        s.apply(7 + i as u64, &create_topic(i)).unwrap();
    }
    s
}

fn commands(c: &mut Criterion) {
    let cmd = create_topic(7);
    let bytes = cmd.encode();
    c.bench_function("command/encode create_topic", |b| {
        b.iter(|| black_box(&cmd).encode())
    });
    c.bench_function("command/decode create_topic", |b| {
        b.iter(|| Command::decode(black_box(&bytes)).unwrap())
    });
    for topics in [100u128, 10_000] {
        let base = state_with(topics);
        c.bench_function(
            &format!("state/apply create_topic ({topics} topics)"),
            |b| {
                b.iter_batched_ref(
                    || base.clone(),
                    |s| s.apply(1 << 40, &create_topic(1 << 20)).unwrap(),
                    BatchSize::LargeInput,
                )
            },
        );
        c.bench_function(
            &format!("state/apply heartbeat-sized noop ({topics} topics)"),
            |b| {
                b.iter_batched_ref(
                    || base.clone(),
                    |s| s.apply(1 << 40, &Command::Noop).unwrap(),
                    BatchSize::LargeInput,
                )
            },
        );
    }
}

fn wal(c: &mut Criterion) {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let mut group = c.benchmark_group("wal/append 64 entries of 256 B");
    group.throughput(Throughput::Elements(64));
    for sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) =
            DiskStorage::open(dir.path(), &ConfState::default(), &[], sync, &log).unwrap();
        let mut next = 1u64;
        group.bench_function(if sync { "fdatasync" } else { "no sync" }, |b| {
            b.iter(|| {
                let batch: Vec<Entry> = (next..next + 64)
                    .map(|index| Entry {
                        index,
                        term: 1,
                        data: vec![7u8; 256].into(),
                        ..Default::default()
                    })
                    .collect();
                next += 64;
                s.append(&batch).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(20);
    targets = commands, wal
}
criterion_main!(benches);
