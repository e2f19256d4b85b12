//! Replay by position (`PChannel::scan`) at the edges the model test rarely reaches: a start
//! inside an entry or on a dead one, deleted vchannels, an original and its compaction copy
//! both on disk, and the checkpoint position.

mod common;

use std::fs;

use common::{append_one, copy_dir, full_payload, opts};
use log_store::{PChannel, PChannelOptions, Position, Retention, SyncPolicy, VChannelId};

fn keys(pc: &PChannel, from: u64, max_bytes: usize) -> Vec<(u64, i64)> {
    let b = pc.scan(Position(from), max_bytes).unwrap();
    b.entries
        .iter()
        .map(|e| (e.vchannel.0, e.entry.first_offset))
        .collect()
}

#[test]
fn scan_starts_at_the_first_entry_at_or_after_a_position_and_skips_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(16 << 10, SyncPolicy::Never)).unwrap();
    assert_eq!(
        pc.scan(Position(0), 100).unwrap(),
        log_store::ScanBatch {
            entries: vec![],
            next_position: Position(0),
            at_end: true
        }
    );
    // Three vchannels, 30 entries of 1,000 bytes: two segment rolls.
    let mut pos = Vec::new();
    for i in 0..30i64 {
        pos.push(append_one(&pc, (i % 3) as u64, i / 3, 1, 1000, i));
    }
    let all: Vec<(u64, i64)> = (0..30).map(|i| ((i % 3) as u64, i / 3)).collect();
    assert_eq!(keys(&pc, 0, usize::MAX), all);
    // From an entry's start, from inside it, and from a segment base.
    assert_eq!(keys(&pc, pos[7], usize::MAX), all[7..]);
    assert_eq!(keys(&pc, pos[7] + 1, usize::MAX), all[8..]);
    let b = pc.scan(Position(pos[29] + 1064), 10).unwrap();
    assert!(b.entries.is_empty() && b.at_end);
    assert_eq!(b.next_position, pc.end_position());
    // Batches: at least one entry, then whole entries within max_bytes.
    let b = pc.scan(Position(0), 10).unwrap();
    assert_eq!(b.entries.len(), 1);
    assert_eq!(b.next_position, Position(pos[1]));
    assert!(!b.at_end);
    let b = pc.scan(Position(pos[1]), 2500).unwrap();
    assert_eq!(b.entries.len(), 2);
    assert_eq!(
        &b.entries[1].entry.payload[..],
        &full_payload(2, 0, 1000)[..]
    );
    assert_eq!(b.entries[1].entry.max_timestamp, 2);

    // A deleted vchannel and DeleteRecords below an offset disappear from the replay, also
    // when the scan starts on one of their entries.
    pc.delete_vchannel(VChannelId(1)).unwrap();
    pc.delete_records(VChannelId(0), 4).unwrap();
    let live: Vec<(u64, i64)> = all
        .iter()
        .copied()
        .filter(|&(v, f)| v == 2 || v == 0 && f >= 4)
        .collect();
    assert_eq!(keys(&pc, 0, usize::MAX), live);
    assert_eq!(
        keys(&pc, pos[13], usize::MAX),
        keys(&pc, pos[14], usize::MAX)
    );
    assert_eq!(keys(&pc, pos[13], usize::MAX)[0], (2, 4));

    // The same after a restart.
    drop(pc);
    let (pc, _) = PChannel::open(dir.path(), opts(16 << 10, SyncPolicy::Never)).unwrap();
    assert_eq!(keys(&pc, 0, usize::MAX), live);
}

#[test]
fn an_original_and_its_compaction_copy_both_on_disk_appear_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = PChannelOptions {
        compact_live_ratio: 0.5,
        recycle_segments: 0,
        ..opts(16 << 10, SyncPolicy::Never)
    };
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    // Segment 0 holds vchannel 1's two entries among vchannel 2's; vchannel 2 then expires.
    for i in 0..14i64 {
        if i == 3 || i == 9 {
            append_one(&pc, 1, i / 9, 1, 1000, 0);
        }
        append_one(&pc, 2, i, 1, 1000, 0);
    }
    for i in 14..30i64 {
        append_one(&pc, 2, i, 1, 1000, 1000);
    }
    pc.wait_sealed();
    let saved = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), saved.path());
    pc.set_retention(
        VChannelId(2),
        Retention {
            ms: Some(10),
            bytes: None,
        },
    )
    .unwrap();
    let report = pc.enforce_retention(1000).unwrap();
    assert_eq!(report.segments_compacted, vec![Position(0)]);
    assert!(report.segments_deleted.contains(&Position(0)));
    let want = keys(&pc, 0, usize::MAX);
    assert_eq!(&want[want.len() - 2..], &[(1, 0), (1, 1)]);
    let copies = pc.scan(Position(0), usize::MAX).unwrap().entries;
    assert!(copies[copies.len() - 2..].iter().all(|e| e.compaction_copy));
    // A crash between the compaction's checkpoint and the deletion leaves both on disk.
    pc.close().unwrap();
    drop(pc);
    let seg0 = format!("{:020}.seg", 0);
    let idx0 = format!("{:020}.idx", 0);
    fs::copy(saved.path().join(&seg0), dir.path().join(&seg0)).unwrap();
    fs::copy(saved.path().join(&idx0), dir.path().join(&idx0)).unwrap();
    let (pc, _) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(keys(&pc, 0, usize::MAX), want);
    let got = pc.scan(Position(0), usize::MAX).unwrap().entries;
    assert_eq!(
        &got[got.len() - 1].entry.payload[..],
        &full_payload(1, 1, 1000)[..]
    );
}

#[test]
fn checkpoint_position_follows_checkpoints_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    assert_eq!(pc.checkpoint_position(), Position(0));
    for i in 0..5 {
        append_one(&pc, 1, i, 1, 100, 0);
    }
    assert_eq!(pc.checkpoint_position(), Position(0));
    pc.checkpoint().unwrap();
    let p = pc.end_position();
    assert_eq!(pc.checkpoint_position(), p);
    append_one(&pc, 1, 5, 1, 100, 0);
    drop(pc);
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(report.checkpoint_position, Some(p));
    // Open scanned past the checkpoint and wrote a new one.
    assert_eq!(pc.checkpoint_position(), pc.end_position());
    assert_eq!(keys(&pc, p.0, usize::MAX), vec![(1, 5)]);
}
