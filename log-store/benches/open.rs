//! Open time of a large pchannel in 1,000 vchannels: after a clean shutdown, and after a crash
//! (the process dies with a whole segment written since the last checkpoint).
//!
//! `SLUICE_BENCH_GIB` (default 4) sets the data size; `SLUICE_BENCH_DIR` the parent directory.

use std::time::Instant;

use log_store::{EntryFlags, EntryRef, PChannel, PChannelOptions, SyncPolicy, Term, VChannelId};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let gib: u64 = std::env::var("SLUICE_BENCH_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let parent = std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into());
    let dir = tempfile::tempdir_in(parent).unwrap();
    let opts = PChannelOptions {
        segment_bytes: 1 << 30,
        sync_policy: SyncPolicy::Never,
        checkpoint_interval: None,
        ..PChannelOptions::default()
    };
    let payload = vec![0x33u8; 16 << 10];
    let mut next = vec![0i64; 1000];
    let mut turn = 0usize;
    let mut append = |pc: &PChannel, bytes: u64| {
        let mut written = 0;
        while written < bytes {
            let entries: Vec<_> = (0..64)
                .map(|_| {
                    let v = turn % 1000;
                    turn += 1;
                    let first = next[v];
                    next[v] += 10;
                    EntryRef {
                        vchannel: VChannelId(v as u64),
                        first_offset: first,
                        last_offset: first + 9,
                        max_timestamp: first,
                        flags: EntryFlags::default(),
                        term: Term(1),
                        prefix: &payload[..16],
                        rest: &payload[16..],
                    }
                })
                .collect();
            pc.append(&entries).unwrap();
            written += 64 * payload.len() as u64;
        }
    };
    let t = Instant::now();
    let (pc, _) = PChannel::open(dir.path(), opts.clone()).unwrap();
    append(&pc, gib << 30);
    pc.close().unwrap();
    drop(pc);
    println!(
        "wrote {gib} GiB in 1,000 vchannels in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let (pc, report) = PChannel::open(dir.path(), opts.clone()).unwrap();
    let clean = t.elapsed();
    println!(
        "open after clean shutdown: {:.3} s ({} segments, {} entries, scanned {} bytes)",
        clean.as_secs_f64(),
        report.segments,
        report.entries,
        report.scanned_bytes
    );
    // Crash: nearly a whole segment appended after the last checkpoint, then no close.
    append(&pc, (1 << 30) - (64 << 20));
    drop(pc);
    let t = Instant::now();
    let (pc, report) = PChannel::open(dir.path(), opts.clone()).unwrap();
    let crash = t.elapsed();
    println!(
        "open after crash: {:.3} s ({} segments, {} entries, scanned {} MiB, cuts {})",
        crash.as_secs_f64(),
        report.segments,
        report.entries,
        report.scanned_bytes >> 20,
        report.cuts.len()
    );
    drop(pc);
    // The same crash open with a cold page cache (as after a reboot): every file is flushed and
    // dropped from the cache with posix_fadvise(DONTNEED) first. Recovery of the previous open
    // already wrote a checkpoint, so append another segment's worth and crash again.
    let (pc, _) = PChannel::open(dir.path(), opts.clone()).unwrap();
    append(&pc, (1 << 30) - (64 << 20));
    drop(pc);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let f = std::fs::File::open(e.unwrap().path()).unwrap();
        f.sync_all().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on an open descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let t = Instant::now();
    let (pc, report) = PChannel::open(dir.path(), opts).unwrap();
    println!(
        "open after crash, cold page cache: {:.3} s (scanned {} MiB, {} entries)",
        t.elapsed().as_secs_f64(),
        report.scanned_bytes >> 20,
        report.entries
    );
    drop(pc);
}
