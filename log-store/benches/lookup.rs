//! Index lookup and single-entry read at 1,000 vchannels.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use log_store::{EntryFlags, EntryRef, PChannel, PChannelOptions, SyncPolicy, Term, VChannelId};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let opts = PChannelOptions {
        segment_bytes: 64 << 20,
        sync_policy: SyncPolicy::Never,
        checkpoint_interval: None,
        ..PChannelOptions::default()
    };
    let (pc, _) = PChannel::open(dir.path(), opts).unwrap();
    let payload = vec![7u8; 1000];
    const VCHANNELS: u64 = 1000;
    const PER: i64 = 200; // entries per vchannel, 10 offsets each
    for i in 0..PER {
        let entries: Vec<_> = (0..VCHANNELS)
            .map(|v| EntryRef {
                vchannel: VChannelId(v),
                first_offset: i * 10,
                last_offset: i * 10 + 9,
                max_timestamp: i,
                flags: EntryFlags::default(),
                term: Term(1),
                prefix: &payload[..16],
                rest: &payload[16..],
            })
            .collect();
        pc.append(&entries).unwrap();
    }
    let mut x: u64 = 0x9e37_79b9;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut g = c.benchmark_group("lookup_1000_vchannels");
    g.bench_function("position_of", |b| {
        b.iter(|| {
            let r = next();
            black_box(
                pc.position_of(VChannelId(r % VCHANNELS), (r >> 20) as i64 % (PER * 10))
                    .unwrap(),
            )
        })
    });
    g.bench_function("read_one_entry", |b| {
        b.iter(|| {
            let r = next();
            black_box(
                pc.read(VChannelId(r % VCHANNELS), (r >> 20) as i64 % (PER * 10), 1)
                    .unwrap(),
            )
        })
    });
    g.bench_function("lookup_timestamp", |b| {
        b.iter(|| {
            let r = next();
            black_box(pc.lookup_timestamp(VChannelId(r % VCHANNELS), (r >> 20) as i64 % PER))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
