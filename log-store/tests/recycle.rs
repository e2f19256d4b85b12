//! Segment recycling: retention keeps dead segment files as spares, a roll reuses one, and
//! neither a restart nor a crash ever reads the stale entries a recycled file still holds.
//!
//! The crash model: a recycled file starts its new life holding the bytes of its earlier one.
//! A crash keeps what the last sync covered (entries up to the durable position and the zero
//! end mark after them), and past it the file's earlier content, optionally with a torn part
//! of what was written since (a prefix, or random 4 KiB pages).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{append_one, full_payload, opts};
use log_store::{PChannel, PChannelOptions, Position, Retention, SyncPolicy, VChannelId};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

const SEG: u64 = 32 << 10;
/// Payload length of every entry: stale entries then sit exactly where new ones go.
const LEN: usize = 1000;
const ENTRY: u64 = 64 + LEN as u64;

fn options(keep: usize) -> PChannelOptions {
    PChannelOptions {
        compact_live_ratio: 0.0,
        recycle_segments: keep,
        ..opts(SEG, SyncPolicy::Never)
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Base of the active segment. (The directory may also hold the standby made for the next
/// roll, so the newest `.seg` file is not always the active one.)
fn active(pc: &PChannel) -> u64 {
    pc.active_segment_base().map_or(u64::MAX, |p| p.0)
}

/// The active segment's file.
fn active_file(pc: &PChannel) -> PathBuf {
    pc.dir().join(format!("{:020}.seg", active(pc)))
}

/// Appends entries of vchannel 1 from offset `next` until the log has rolled `rolls` times;
/// returns the next offset.
fn append_until_rolled(pc: &PChannel, mut next: i64, rolls: usize) -> i64 {
    let mut seen = 0;
    let mut at = pc.active_segment_base();
    while seen < rolls {
        append_one(pc, 1, next, 1, LEN, 0);
        next += 1;
        let now = pc.active_segment_base();
        if at.is_some() && now != at {
            seen += 1;
        }
        at = now;
    }
    next
}

/// Fills four segments with vchannel 1, then lets retention drop all of it: the first two
/// sealed segments die (the third stays until the segment after it is sealed), and up to
/// `keep` of them become spares. Returns the next offset of vchannel 1.
fn fill_and_expire(pc: &PChannel) -> i64 {
    let next = append_until_rolled(pc, 0, 3);
    let all = Retention {
        ms: None,
        bytes: Some(0),
    };
    pc.set_retention(VChannelId(1), all).unwrap();
    let report = pc.enforce_retention(0).unwrap();
    assert_eq!(report.segments_deleted.len(), 2, "{report:?}");
    pc.set_retention(VChannelId(1), Retention::default())
        .unwrap();
    next
}

#[test]
fn retention_keeps_spares_and_a_roll_reuses_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), options(1)).unwrap();
    fill_and_expire(&pc);
    let spares = files(dir.path(), ".spare");
    assert_eq!(spares.len(), 1, "one spare kept, the other segment deleted");
    // The dead segment before the active one stays until the active one is sealed.
    assert_eq!(files(dir.path(), ".seg").len(), 2);
    assert_eq!(files(dir.path(), ".idx").len(), 1);
    let inode = fs::metadata(&spares[0]).unwrap().ino();

    // Vchannel 2 fills the active segment; the roll takes the spare's file (made into the
    // standby for the roll once the active segment is three quarters full).
    let mut positions = Vec::new();
    let start = active(&pc);
    while active(&pc) == start {
        positions.push(append_one(&pc, 2, positions.len() as i64, 1, LEN, 0));
    }
    assert!(files(dir.path(), ".spare").is_empty());
    let segs = files(dir.path(), ".seg");
    assert_eq!(segs.len(), 3);
    let recycled = segs.last().unwrap();
    assert_eq!(
        fs::metadata(recycled).unwrap().ino(),
        inode,
        "the file is reused"
    );
    assert_eq!(fs::metadata(recycled).unwrap().len(), SEG);
    assert_eq!(
        *positions.last().unwrap(),
        recycled
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            + 32
    );
    for i in 0..20 {
        positions.push(append_one(&pc, 2, positions.len() as i64, 1, LEN, i));
    }
    let check = |pc: &PChannel| {
        let got = pc.read(VChannelId(2), 0, usize::MAX).unwrap();
        assert_eq!(got.len(), positions.len());
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.position, Position(positions[i]));
            assert_eq!(&g.payload[..], &full_payload(2, i as i64, LEN)[..]);
        }
        assert_eq!(pc.vchannel_state(VChannelId(1)).unwrap().entry_count, 0);
    };
    check(&pc);
    // A restart after a drop (page cache intact) and after a clean close cut nothing.
    drop(pc);
    let (pc, report) = PChannel::open(dir.path(), options(1)).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    check(&pc);
    pc.close().unwrap();
    drop(pc);
    let (pc, report) = PChannel::open(dir.path(), options(1)).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(report.scanned_bytes, 0);
    check(&pc);
}

#[test]
fn zero_spares_deletes_dead_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), options(0)).unwrap();
    fill_and_expire(&pc);
    assert!(files(dir.path(), ".spare").is_empty());
    assert_eq!(files(dir.path(), ".seg").len(), 2);
}

#[test]
fn a_reader_holding_a_dead_segment_keeps_it_from_being_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), options(2)).unwrap();
    append_one(&pc, 1, 0, 1, LEN, 0);
    let held = pc.read(VChannelId(1), 0, 1).unwrap().remove(0).payload;
    fill_and_expire_from(&pc, 1);
    assert_eq!(
        files(dir.path(), ".spare").len(),
        1,
        "the held segment is deleted"
    );
    let start = active(&pc);
    while active(&pc) == start {
        let n = pc
            .vchannel_state(VChannelId(2))
            .map_or(0, |s| s.log_end_offset);
        append_one(&pc, 2, n, 1, LEN, 0);
    }
    assert!(
        files(dir.path(), ".spare").is_empty(),
        "the roll took the spare"
    );
    assert_eq!(&held[..], &full_payload(1, 0, LEN)[..]);
}

/// `fill_and_expire` for a vchannel 1 that already has `next` entries.
fn fill_and_expire_from(pc: &PChannel, next: i64) {
    append_until_rolled(pc, next, 3);
    let all = Retention {
        ms: None,
        bytes: Some(0),
    };
    pc.set_retention(VChannelId(1), all).unwrap();
    assert_eq!(pc.enforce_retention(0).unwrap().segments_deleted.len(), 2);
}

/// A rolled segment's index file is written by the sealing thread after the roll, so a crash
/// can come before it (or before its name is durable): the sealed segment, a recycled one
/// included, is then scanned and its index rebuilt, with every entry back and nothing of the
/// file's earlier life.
#[test]
fn a_lost_index_file_name_after_a_roll_is_rebuilt_by_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(1);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    fill_and_expire(&pc);
    let mut n = 0;
    // Roll into the spare, fill the recycled segment and roll out of it. (The first roll
    // seals the segment that was active, the second the recycled one; the dead segment
    // retention kept before the active one has its index file already.)
    while files(dir.path(), ".idx").len() < 3 {
        append_one(&pc, 2, n, 1, LEN - (n as usize % 5) * 100, 0);
        n += 1;
    }
    assert!(files(dir.path(), ".spare").is_empty());
    pc.sync().unwrap();
    pc.wait_sealed();
    let recycled_idx = files(dir.path(), ".idx").pop().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), crashed.path());
    fs::remove_file(crashed.path().join(recycled_idx.file_name().unwrap())).unwrap();
    drop(pc);
    let (pc, report) = PChannel::open(crashed.path(), o).unwrap();
    assert_eq!(report.rebuilt_indexes.len(), 1, "{report:?}");
    assert!(report.cuts.is_empty(), "{report:?}");
    let got = pc.read(VChannelId(2), 0, usize::MAX).unwrap();
    assert_eq!(got.len(), n as usize);
    for (i, g) in got.iter().enumerate() {
        let len = LEN - (i % 5) * 100;
        assert_eq!(&g.payload[..], &full_payload(2, i as i64, len)[..]);
    }
    assert_eq!(pc.vchannel_state(VChannelId(1)).unwrap().entry_count, 0);
}

/// The writer pads the end mark of a recycled segment with zeros to the end of its page and
/// then relies on that padding for the groups that end before it. After every sync, the 64
/// bytes after the last entry must be zeros in the file itself (not only in a crash model),
/// and a crash that keeps the synced pages and the earlier life's bytes after them must bring
/// back exactly the synced entries, without a cut.
#[test]
fn every_sync_leaves_a_zero_end_mark_in_a_recycled_segment() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(1);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    fill_and_expire(&pc);
    let spare = files(dir.path(), ".spare").remove(0);
    let before = fs::read(&spare).unwrap();
    let mut lens = vec![LEN];
    append_one(&pc, 2, 0, 1, LEN, 0);
    let start = active(&pc);
    while active(&pc) == start {
        append_one(&pc, 2, lens.len() as i64, 1, LEN, 0);
        lens.push(LEN);
    }
    let seg = active_file(&pc);
    let base: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut checked = 0;
    // Groups of small entries, so that many end inside a page padded by an earlier group.
    while active_file(&pc) == seg {
        for _ in 0..rng.random_range(1..4) {
            let len = rng.random_range(16..600);
            if pc.end_position().0 + 64 + len as u64 + 64 > base + SEG {
                break;
            }
            append_one(&pc, 2, lens.len() as i64, 1, len, 0);
            lens.push(len);
        }
        let durable = (pc.sync().unwrap().0 - base) as usize;
        let now = fs::read(&seg).unwrap();
        if durable + 64 > now.len() {
            break;
        }
        if durable + 64 > before.len() {
            break;
        }
        let stale = &before[durable..durable + 64];
        assert!(
            stale.iter().any(|&b| b != 0),
            "the earlier life left bytes here"
        );
        assert!(
            now[durable..durable + 64].iter().all(|&b| b == 0),
            "no end mark after the entry ending at {durable}"
        );
        // The crash: synced pages kept whole, the earlier life's bytes after them.
        let kept = (durable + 64).next_multiple_of(4096).min(now.len());
        let mut img = now[..kept].to_vec();
        img.extend_from_slice(&before[kept.min(before.len())..]);
        img.resize(now.len(), 0xee);
        let crashed = tempfile::tempdir().unwrap();
        common::copy_dir(dir.path(), crashed.path());
        fs::write(crashed.path().join(seg.file_name().unwrap()), img).unwrap();
        let (back, report) = PChannel::open(crashed.path(), o.clone()).unwrap();
        assert!(report.cuts.is_empty(), "{report:?}");
        let got = back.read(VChannelId(2), 0, usize::MAX).unwrap();
        assert_eq!(got.len(), lens.len());
        for (i, g) in got.iter().enumerate() {
            assert_eq!(&g.payload[..], &full_payload(2, i as i64, lens[i])[..]);
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} syncs checked");
}

#[derive(Debug, Clone, Copy)]
enum Tear {
    None,
    Prefix(usize),
    Pages(u64),
    /// Everything written since the sync reached the disk but `n` bytes from byte `at` on.
    AllBut {
        at: usize,
        n: usize,
    },
}

/// The recycled active segment as a crash would leave it: the synced part of `now` (the
/// header and entries below `durable`, then the zero end mark), the file's earlier content
/// `before` after that, and a torn part of `now`.
fn crash_image(now: &[u8], before: &[u8], base: u64, durable: u64, tear: Tear) -> Vec<u8> {
    let keep = (durable.saturating_sub(base) as usize).max(32);
    let mut img = now.to_vec();
    for (i, b) in img.iter_mut().enumerate().skip(keep + 64) {
        *b = before.get(i).copied().unwrap_or(0);
    }
    img[keep..keep + 64].fill(0);
    let mut rng = StdRng::seed_from_u64(durable);
    for i in keep..now.len() {
        let torn = match tear {
            Tear::None => false,
            Tear::Prefix(n) => i < keep + n,
            Tear::Pages(seed) => (seed >> ((i / 4096) % 64)) & 1 == 1 && rng.random_bool(0.999),
            Tear::AllBut { at, n } => !(keep + at..keep + at + n).contains(&i),
        };
        if torn {
            img[i] = now[i];
        }
    }
    img
}

/// Appends into a recycled segment (syncing after the entries in `syncs`), crashes, recovers,
/// and checks that exactly a prefix of the appended entries is back, the durable ones
/// included, and nothing of the file's earlier life.
fn run_crash(after_roll: usize, syncs: &[usize], tear: Tear, extra: usize) {
    let dir = tempfile::tempdir().unwrap();
    let o = options(1);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    fill_and_expire(&pc);
    let spare = files(dir.path(), ".spare").remove(0);
    let before = fs::read(&spare).unwrap();
    let mut ends = Vec::new();
    let start = active(&pc);
    while active(&pc) == start {
        let p = append_one(&pc, 2, ends.len() as i64, 1, LEN, 0);
        ends.push(p + ENTRY);
    }
    if !syncs.is_empty() {
        pc.sync().unwrap();
    }
    let base = ends.last().unwrap() - ENTRY - 32;
    let first_new = ends.len() - 1; // the entry that rolled into the recycled segment
    let mut durable = pc.durable_position().0.max(base);
    for i in 0..after_roll {
        let p = append_one(&pc, 2, ends.len() as i64, 1, LEN, 0);
        ends.push(p + ENTRY);
        if syncs.contains(&i) {
            durable = pc.sync().unwrap().0;
        }
    }
    let seg = active_file(&pc);
    let now = fs::read(&seg).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), crashed.path());
    fs::write(
        crashed.path().join(seg.file_name().unwrap()),
        crash_image(&now, &before, base, durable, tear),
    )
    .unwrap();
    drop(pc);

    let (pc, report) = PChannel::open(crashed.path(), o.clone()).unwrap();
    let got = pc.read(VChannelId(2), 0, usize::MAX).unwrap();
    let durable_count = ends.iter().filter(|&&e| e <= durable).count();
    assert!(
        got.len() >= durable_count.max(first_new),
        "lost durable entries: {} < {durable_count} ({report:?})",
        got.len()
    );
    assert!(got.len() <= ends.len());
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.first_offset, i as i64);
        assert_eq!(&g.payload[..], &full_payload(2, i as i64, LEN)[..]);
    }
    // With none of its entries back, the recycled segment holds nothing valid at its first
    // entry's place: if it is the newest file, recovery drops it like an unused standby
    // (`seal.rs`) and the log ends where the segment before it does; if a standby made after
    // it follows (dropped instead), it stays, empty.
    let ends_at = if got.len() > first_new {
        vec![ends[got.len() - 1]]
    } else {
        vec![base + 32, ends[first_new - 1]]
    };
    assert!(
        ends_at.contains(&pc.end_position().0),
        "stale entries came back: end {:?}, expected one of {ends_at:?}: {report:?}",
        pc.end_position()
    );
    assert_eq!(pc.vchannel_state(VChannelId(1)).unwrap().entry_count, 0);

    // The recovered log takes appends (of another vchannel, at the places and with the `seq`s
    // of the entries the crash lost), and a second crash must not bring back entries the
    // first recovery dropped: they lie beyond, with `seq`s that follow these.
    let n = got.len() as i64;
    // (Gone if recovery dropped it: the appends below then make the segment anew.)
    let before2 = fs::read(crashed.path().join(seg.file_name().unwrap())).unwrap_or_default();
    let durable2 = pc.end_position().0;
    let again = (after_roll % 3) + 1;
    for i in 0..again {
        append_one(&pc, 3, i as i64, 1, LEN, 0);
    }
    let now2 = fs::read(crashed.path().join(seg.file_name().unwrap())).unwrap();
    drop(pc);
    let torn = ENTRY as usize * (after_roll % 3) + extra % 2;
    fs::write(
        crashed.path().join(seg.file_name().unwrap()),
        crash_image(&now2, &before2, base, durable2, Tear::Prefix(torn)),
    )
    .unwrap();
    let (pc, report2) = PChannel::open(crashed.path(), o.clone()).unwrap();
    let v2 = pc.vchannel_state(VChannelId(2)).unwrap();
    assert_eq!(
        v2.log_end_offset, n,
        "a dropped entry came back: {report2:?} after {report:?}"
    );
    let got3 = pc.read(VChannelId(3), 0, usize::MAX).unwrap_or_default();
    assert!(got3.len() <= again);
    for (i, g) in got3.iter().enumerate() {
        assert_eq!(&g.payload[..], &full_payload(3, i as i64, LEN)[..]);
    }

    // And once more: appends, then a restart with the page cache intact cut nothing.
    let n3 = got3.len() as i64;
    append_one(&pc, 3, n3, 1, LEN, 0);
    drop(pc);
    let (pc, report3) = PChannel::open(crashed.path(), o).unwrap();
    assert!(report3.cuts.is_empty(), "{report3:?} after {report2:?}");
    assert_eq!(
        pc.vchannel_state(VChannelId(3)).unwrap().log_end_offset,
        n3 + 1
    );
}

#[test]
fn crash_right_after_recycling_loses_only_unsynced_entries() {
    for tear in [
        Tear::None,
        Tear::Prefix(40),
        Tear::Prefix(700),
        Tear::Pages(u64::MAX),
    ] {
        run_crash(0, &[], tear, 0);
    }
    // The first entry torn, the next ones whole: recovery must drop them for good.
    for after_roll in [1, 4] {
        run_crash(after_roll, &[], Tear::AllBut { at: 300, n: 10 }, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn torn_writes_in_a_recycled_segment_never_bring_stale_entries_back(
        after_roll in 0..29usize,
        syncs in proptest::collection::vec(0..29usize, 0..4),
        tear in 0..4u8,
        extra in 0..6000usize,
        pages in any::<u64>(),
    ) {
        let tear = match tear {
            0 => Tear::None,
            1 => Tear::Prefix(extra),
            2 => Tear::Pages(pages),
            _ => Tear::AllBut { at: extra % 4000, n: 1 + extra % 7 },
        };
        run_crash(after_roll, &syncs, tear, extra);
    }
}
