//! Crash tests. A "crash" keeps only what was durable: segment bytes below the durable
//! position (plus, in some cases, a torn part of what followed), sealed segments and their
//! index files, and the checkpoint (all three are fsynced before they are relied on). Every
//! durable entry must read back intact, nothing corrupt may be returned, and recovery must
//! never panic. Also: bytes of the active segment cut or flipped at random points.

mod common;

use std::fs;
use std::path::Path;

use common::{append_one, full_payload, opts};
use log_store::{LogError, PChannel, SyncPolicy, VChannelId};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Segment size of the crash runs: small, so a run rolls often.
const SEGMENT: u64 = 48 << 10;

#[derive(Debug, Clone, Copy)]
struct Appended {
    v: u64,
    first: i64,
    len: usize,
    position: u64,
}

impl Appended {
    fn end(&self) -> u64 {
        self.position + 64 + self.len as u64
    }
}

#[derive(Debug, Clone, Copy)]
enum Tear {
    /// Nothing after the durable position reached the disk.
    Zero,
    /// A prefix of `n` bytes after it did.
    Prefix(usize),
    /// Random 4 KiB pages after it did (write-back in any order).
    Pages(u64),
}

/// Copies `src` into `dst` as a crash at durable position `durable` would leave it.
///
/// `pending` segments rolled most recently are copied as if their seal had not happened yet
/// (the sealing thread works after the roll): no index file, the preallocated length of
/// `capacity`, and their bytes past `durable` torn like the active segment's.
fn crash_copy(src: &Path, dst: &Path, durable: u64, tear: Tear, pending: usize, capacity: u64) {
    fs::create_dir_all(dst).unwrap();
    let bases = common::segment_bases(src);
    // The newest file is the active segment (or an unused standby after it); the `pending`
    // before it are still being sealed.
    let unsealed: Vec<u64> = bases.iter().rev().skip(1).take(pending).copied().collect();
    for e in fs::read_dir(src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        // The sealing thread may rename or replace a file while this copies (a crash can
        // happen at any such point, so what is read is one of the states a crash leaves).
        let mut data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        if let Some(stem) = name.strip_suffix(".idx")
            && unsealed.contains(&stem.parse().unwrap())
        {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".seg") {
            let base: u64 = stem.parse().unwrap();
            let pending_seal = unsealed.contains(&base);
            if pending_seal {
                data.resize(data.len().max(capacity as usize), 0);
            }
            let sealed = !pending_seal && src.join(format!("{stem}.idx")).exists();
            if !sealed {
                let keep = (durable.saturating_sub(base) as usize).clamp(32, data.len());
                let mut rng = StdRng::seed_from_u64(base ^ durable);
                for (i, b) in data.iter_mut().enumerate().skip(keep) {
                    let survives = match tear {
                        Tear::Zero => false,
                        Tear::Prefix(n) => i < keep + n,
                        Tear::Pages(seed) => {
                            (seed >> ((i / 4096) % 64)) & 1 == 1 && rng.random_bool(0.999)
                        }
                    };
                    if !survives {
                        *b = 0;
                    }
                }
            }
        }
        fs::write(dst.join(&name), &data).unwrap();
    }
}

/// Checks that the recovered log holds exactly the first `k >= durable_count` appended
/// entries, with intact payloads.
fn check_recovered(pc: &PChannel, appended: &[Appended], durable_count: usize) -> usize {
    let mut recovered = 0;
    let mut per_v: std::collections::BTreeMap<u64, Vec<&Appended>> = Default::default();
    for a in appended {
        per_v.entry(a.v).or_default().push(a);
    }
    let mut max_pos_recovered: Option<u64> = None;
    let mut min_pos_missing: Option<u64> = None;
    for (v, list) in per_v {
        let got = pc.read(VChannelId(v), 0, usize::MAX).unwrap_or_default();
        assert!(got.len() <= list.len());
        for (g, a) in got.iter().zip(&list) {
            assert_eq!(g.first_offset, a.first);
            assert_eq!(
                &g.payload[..],
                &full_payload(v, a.first, a.len)[..],
                "corrupt payload returned"
            );
            max_pos_recovered = max_pos_recovered.max(Some(a.position));
        }
        if let Some(a) = list.get(got.len()) {
            min_pos_missing = Some(min_pos_missing.map_or(a.position, |m: u64| m.min(a.position)));
        }
        let end = pc
            .vchannel_state(VChannelId(v))
            .map_or(0, |s| s.log_end_offset);
        assert_eq!(
            end,
            list.get(got.len())
                .map_or_else(|| list.last().map_or(0, |a| a.first + 1), |a| a.first)
        );
        recovered += got.len();
    }
    if let (Some(r), Some(m)) = (max_pos_recovered, min_pos_missing) {
        assert!(r < m, "recovered entries must be a prefix of the log");
    }
    assert!(
        recovered >= durable_count,
        "lost durable entries: {recovered} < {durable_count}"
    );
    recovered
}

fn run_crash(seed: u64, n: usize, tear: Tear, pending: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SEGMENT, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let mut next = [0i64; 4];
    let mut appended = Vec::new();
    for _ in 0..n {
        let v = rng.random_range(0..4u64);
        let len = rng.random_range(16..3000usize);
        let first = next[v as usize];
        let position = append_one(&pc, v, first, 1, len, 0);
        next[v as usize] += 1;
        appended.push(Appended {
            v,
            first,
            len,
            position,
        });
        match rng.random_range(0..20) {
            0..=2 => {
                pc.sync().unwrap();
            }
            3 => pc.checkpoint().unwrap(),
            _ => {}
        }
    }
    let durable = pc.durable_position().0;
    let durable_count = appended.iter().filter(|a| a.end() <= durable).count();
    // Seals run behind the rolls: take the files once they are done, and let `pending` play
    // the crash that comes before some of them.
    pc.wait_sealed();
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path(), durable, tear, pending, SEGMENT);
    drop(pc);
    let (pc2, report) = PChannel::open(crashed.path(), o.clone()).unwrap();
    let k = check_recovered(&pc2, &appended, durable_count);
    // The recovered log accepts appends and reopens without further cuts.
    let v = appended[0].v;
    let next_v = appended[..k].iter().filter(|a| a.v == v).count() as i64;
    append_one(&pc2, v, next_v, 1, 100, 0);
    drop(pc2);
    let (pc3, report3) = PChannel::open(crashed.path(), o).unwrap();
    assert!(
        report3.cuts.is_empty(),
        "second open cut again: {report3:?} after {report:?}"
    );
    assert_eq!(
        pc3.vchannel_state(VChannelId(v)).unwrap().log_end_offset,
        next_v + 1
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn durable_entries_survive_a_crash(seed in any::<u64>(), n in 1..120usize, tear in 0..3u8, extra in 0..9000usize, pages in any::<u64>(), pending in 0..3usize) {
        let tear = match tear { 0 => Tear::Zero, 1 => Tear::Prefix(extra), _ => Tear::Pages(pages) };
        run_crash(seed, n, tear, pending);
    }

    #[test]
    fn damage_in_the_active_segment_cuts_exactly_there(seed in any::<u64>(), n in 1..60usize, truncate in any::<bool>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let o = opts(1 << 20, SyncPolicy::Never);
        let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
        let mut appended = Vec::new();
        for i in 0..n {
            let v = (i % 3) as u64;
            let first = (i / 3) as i64;
            let len = rng.random_range(16..2000usize);
            appended.push(Appended { v, first, len, position: append_one(&pc, v, first, 1, len, 0) });
        }
        drop(pc); // no checkpoint was ever written, so open scans the whole active segment
        let seg = dir.path().join(format!("{:020}.seg", 0));
        let end = appended.last().unwrap().end();
        let at = rng.random_range(32..end);
        let k = appended.iter().position(|a| a.end() > at).unwrap();
        if truncate {
            fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(at).unwrap();
        } else {
            let mut data = fs::read(&seg).unwrap();
            data[at as usize] ^= 1 << rng.random_range(0..8);
            fs::write(&seg, &data).unwrap();
        }
        let (pc, report) = PChannel::open(dir.path(), o).unwrap();
        prop_assert_eq!(check_recovered(&pc, &appended, k), k);
        if !truncate {
            prop_assert_eq!(report.cuts.len(), 1);
            prop_assert_eq!(report.cuts[0].position.0, appended[k].position);
        }
    }
}

#[test]
fn damage_below_the_checkpoint_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let positions: Vec<u64> = (0..10).map(|i| append_one(&pc, 1, i, 1, 500, 0)).collect();
    pc.close().unwrap();
    drop(pc);
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let mut data = fs::read(&seg).unwrap();
    data[positions[4] as usize + 64 + 100] ^= 0x40;
    fs::write(&seg, &data).unwrap();
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(
        report.scanned_bytes, 0,
        "clean open does not re-read checkpointed data"
    );
    let got = pc.read(VChannelId(1), 0, usize::MAX).unwrap();
    assert_eq!(
        got.len(),
        4,
        "the good entries before the damage are returned"
    );
    assert_eq!(&got[3].payload[..], &full_payload(1, 3, 500)[..]);
    match pc.read(VChannelId(1), 4, usize::MAX) {
        Err(LogError::Corrupt {
            position, reason, ..
        }) => {
            assert_eq!(position, positions[4]);
            assert_eq!(reason, "CRC mismatch");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        &pc.read(VChannelId(1), 5, 1).unwrap()[0].payload[..],
        &full_payload(1, 5, 500)[..]
    );
}
