//! Append + sync per 1 MiB group into recycled (or fresh) segments, as the criterion bench
//! `append/1MiB_group_then_sync/{recycled,fresh}` does, with the time split between `append`
//! and `sync` and the slowest groups shown.
//!
//! `cargo run --release -p sluice-log-store --example sync_probe -- [recycled|fresh] [groups]`

use std::time::{Duration, Instant};

use log_store::{
    EntryFlags, EntryRef, PChannel, PChannelOptions, Retention, SyncPolicy, Term, VChannelId,
};

const ENTRY: usize = 16 << 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("recycled");
    let groups: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let base = std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let opts = PChannelOptions {
        segment_bytes: 64 << 20,
        sync_policy: SyncPolicy::Never,
        checkpoint_interval: None,
        compact_live_ratio: 0.0,
        recycle_segments: if mode == "fresh" { 0 } else { 2 },
        ..PChannelOptions::default()
    };
    let (pc, _) = PChannel::open(dir.path(), opts).unwrap();
    let payload = vec![0x5au8; ENTRY];
    let mut next = vec![0i64; 1000];
    let mut turn = 0usize;
    let keep_last = Retention {
        ms: None,
        bytes: Some(ENTRY as u64),
    };
    for v in 0..1000 {
        pc.set_retention(VChannelId(v), keep_last).unwrap();
    }
    let mut append = |pc: &PChannel| {
        let mut entries = Vec::with_capacity(64);
        for _ in 0..64 {
            let v = turn % 1000;
            turn += 1;
            let first = next[v];
            next[v] += 10;
            entries.push(EntryRef {
                vchannel: VChannelId(v as u64),
                first_offset: first,
                last_offset: first + 9,
                max_timestamp: first,
                flags: EntryFlags::default(),
                term: Term(1),
                prefix: &payload[..16],
                rest: &payload[16..],
            });
        }
        pc.append(&entries).unwrap();
    };
    for i in 0..192 {
        append(&pc);
        if i % 16 == 15 {
            pc.enforce_retention(0).unwrap();
        }
    }
    pc.sync().unwrap();
    let (mut t_append, mut t_sync) = (Duration::ZERO, Duration::ZERO);
    let mut per_group = Vec::with_capacity(groups);
    for i in 0..groups {
        let t = Instant::now();
        append(&pc);
        let t1 = Instant::now();
        pc.sync().unwrap();
        let t2 = Instant::now();
        t_append += t1 - t;
        t_sync += t2 - t1;
        per_group.push((t2 - t).as_micros() as u64);
        if i % 16 == 15 {
            pc.enforce_retention(0).unwrap();
        }
    }
    let total = t_append + t_sync;
    per_group.sort_unstable();
    let p50 = per_group[per_group.len() / 2];
    let slow: u64 = per_group.iter().filter(|&&t| t > 3 * p50).sum();
    let q = |f: f64| per_group[((per_group.len() - 1) as f64 * f) as usize];
    println!(
        "{mode}: {:.0} MiB/s over {groups} groups; append {:.0} us/MiB, sync {:.0} us/MiB; \
         per group p50 {} us, p90 {} us, p99 {} us, max {} us; {:.0} % of the time in groups \
         over 3 x p50",
        groups as f64 / total.as_secs_f64(),
        t_append.as_micros() as f64 / groups as f64,
        t_sync.as_micros() as f64 / groups as f64,
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        slow as f64 / total.as_micros() as f64 * 100.0,
    );
}
