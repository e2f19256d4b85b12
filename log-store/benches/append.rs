//! Append throughput: 16 KiB entries without sync, and 1 MiB groups each followed by a sync
//! (into fresh segment files and into recycled ones), plus a raw memcpy baseline.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use log_store::{
    EntryFlags, EntryRef, PChannel, PChannelOptions, Retention, SyncPolicy, Term, VChannelId,
};

const ENTRY: usize = 16 << 10;

fn options(sync_policy: SyncPolicy) -> PChannelOptions {
    PChannelOptions {
        segment_bytes: 256 << 20,
        sync_policy,
        checkpoint_interval: None,
        ..PChannelOptions::default()
    }
}

/// Appends `group` entries of 16 KiB spread over 1,000 vchannels.
struct Appender {
    pc: PChannel,
    next: Vec<i64>,
    turn: usize,
    payload: Vec<u8>,
}

impl Appender {
    fn new(dir: &std::path::Path, policy: SyncPolicy) -> Appender {
        let (pc, _) = PChannel::open(dir, options(policy)).unwrap();
        Appender {
            pc,
            next: vec![0; 1000],
            turn: 0,
            payload: vec![0x5a; ENTRY],
        }
    }

    fn append(&mut self, group: usize) {
        let mut entries = Vec::with_capacity(group);
        for _ in 0..group {
            let v = self.turn % 1000;
            self.turn += 1;
            let first = self.next[v];
            self.next[v] += 10;
            entries.push(EntryRef {
                vchannel: VChannelId(v as u64),
                first_offset: first,
                last_offset: first + 9,
                max_timestamp: first,
                flags: EntryFlags::default(),
                term: Term(1),
                prefix: &self.payload[..16],
                rest: &self.payload[16..],
            });
        }
        black_box(self.pc.append(&entries).unwrap());
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10);
    for group in [1usize, 64] {
        g.throughput(Throughput::Bytes((group * ENTRY) as u64));
        let dir = tempfile::tempdir_in(
            std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()),
        )
        .unwrap();
        let mut a = Appender::new(dir.path(), SyncPolicy::Never);
        g.bench_function(
            BenchmarkId::new("16KiB_no_sync", format!("group{group}")),
            |b| b.iter(|| a.append(group)),
        );
    }
    {
        // The same appends into a segment whose pages are already in the page cache: written
        // once untimed, then truncated away (which zeroes them through the page cache). The
        // copy-into-the-page-cache path alone, without the kernel's cost of handing out fresh
        // pages.
        g.throughput(Throughput::Bytes((64 * ENTRY) as u64));
        g.bench_function("16KiB_no_sync_resident/group64", |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir_in(
                    std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()),
                )
                .unwrap();
                let bytes = ((iters + 2) * 64 * (ENTRY as u64 + 64)).max(64 << 20);
                let opts = PChannelOptions {
                    segment_bytes: bytes,
                    ..options(SyncPolicy::Never)
                };
                let (pc, _) = PChannel::open(dir.path(), opts).unwrap();
                let mut a = Appender {
                    pc,
                    next: vec![0; 1000],
                    turn: 0,
                    payload: vec![0x5a; ENTRY],
                };
                a.append(1);
                let first = a.pc.end_position();
                for _ in 0..iters {
                    a.append(64);
                }
                a.pc.truncate_after(log_store::Position(32)).unwrap();
                assert_eq!(a.pc.end_position(), first);
                a.next = vec![0; 1000];
                a.next[0] = 10;
                a.turn = 1;
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    a.append(64);
                }
                t.elapsed()
            })
        });
    }
    {
        // A 1 MiB group then a sync into new segment files (256 MiB, no retention: every
        // 256th group rolls to a new file).
        g.throughput(Throughput::Bytes((64 * ENTRY) as u64));
        let dir = tempfile::tempdir_in(
            std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()),
        )
        .unwrap();
        let mut a = Appender::new(dir.path(), SyncPolicy::Never);
        g.bench_function("1MiB_group_then_sync/first_segment", |b| {
            b.iter(|| {
                a.append(64);
                a.pc.sync().unwrap();
            })
        });
    }
    for (keep, cold) in [(0usize, false), (2, false), (2, true)] {
        // 64 MiB segments rolled every 64 iterations; retention (untimed) keeps 16 KiB per
        // vchannel, so sealed segments die soon after they are sealed. With `keep` 2 their
        // files are recycled, with 0 every roll allocates a new file. `cold` drops the spares'
        // pages from the page cache (untimed), as hours between deletion and reuse would.
        g.throughput(Throughput::Bytes((64 * ENTRY) as u64));
        let dir = tempfile::tempdir_in(
            std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()),
        )
        .unwrap();
        let opts = PChannelOptions {
            segment_bytes: 64 << 20,
            compact_live_ratio: 0.0,
            recycle_segments: keep,
            ..options(SyncPolicy::Never)
        };
        let (pc, _) = PChannel::open(dir.path(), opts).unwrap();
        let mut a = Appender {
            pc,
            next: vec![0; 1000],
            turn: 0,
            payload: vec![0x5a; ENTRY],
        };
        let keep_last = Retention {
            ms: None,
            bytes: Some(ENTRY as u64),
        };
        let name = match (keep, cold) {
            (0, _) => "fresh",
            (_, false) => "recycled",
            (_, true) => "recycled_cold",
        };
        let path = dir.path().to_path_buf();
        let retain = move |pc: &PChannel| {
            pc.enforce_retention(0).unwrap();
            if cold {
                drop_spare_pages(&path);
            }
        };
        // Three segments' worth first, so spares exist before the first timed roll.
        for v in 0..1000 {
            a.pc.set_retention(VChannelId(v), keep_last).unwrap();
        }
        for i in 0..192 {
            a.append(64);
            if i % 16 == 15 {
                retain(&a.pc);
            }
        }
        a.pc.sync().unwrap();
        let mut groups = 0u64;
        g.bench_function(BenchmarkId::new("1MiB_group_then_sync", name), |b| {
            b.iter_custom(|iters| {
                let mut timed = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let t = std::time::Instant::now();
                    a.append(64);
                    a.pc.sync().unwrap();
                    timed += t.elapsed();
                    groups += 1;
                    if groups.is_multiple_of(16) {
                        retain(&a.pc);
                    }
                }
                timed
            })
        });
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        eprintln!("{name}: {groups} groups; files at the end: {files:?}");
    }
    {
        g.throughput(Throughput::Bytes(ENTRY as u64));
        let src = vec![0x5au8; ENTRY];
        let mut dst = vec![0u8; 256 << 20];
        let mut at = 0;
        g.bench_function("memcpy_16KiB_baseline", |b| {
            b.iter(|| {
                dst[at..at + ENTRY].copy_from_slice(&src);
                at = (at + ENTRY) % dst.len();
                black_box(&dst);
            })
        });
    }
    g.finish();
}

/// Evicts the (clean, synced) pages of every spare file in `dir` from the page cache.
fn drop_spare_pages(dir: &std::path::Path) {
    use std::os::fd::AsRawFd;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "spare") {
            let f = std::fs::File::open(&p).unwrap();
            // SAFETY: plain syscall on an open descriptor.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
