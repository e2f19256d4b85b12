//! The standby segment: the segment thread makes the next segment once three quarters of the
//! active one are written, at the active base plus its capacity, and the roll swaps it in.

mod common;

use std::fs;

use common::{append_one, full_payload, opts, segment_bases};
use log_store::{PChannel, Position, SyncPolicy, VChannelId};

const SEG: u64 = 64 << 10;
const LEN: usize = 1000;

/// Appends to vchannel 1 until the standby file exists; returns the next offset.
fn append_until_standby(pc: &PChannel, mut next: i64) -> i64 {
    let active = pc.active_segment_base().map_or(0, |p| p.0);
    while segment_bases(pc.dir()).last() == Some(&active) || segment_bases(pc.dir()).is_empty() {
        append_one(pc, 1, next, 1, LEN, 0);
        next += 1;
        pc.wait_sealed();
        assert_eq!(
            pc.active_segment_base(),
            Some(Position(active)),
            "the standby exists before the roll"
        );
    }
    next
}

fn check(pc: &PChannel, n: i64) {
    let got = pc.read(VChannelId(1), 0, usize::MAX).unwrap();
    assert_eq!(got.len(), n as usize);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(&g.payload[..], &full_payload(1, i as i64, LEN)[..]);
    }
}

#[test]
fn the_next_segment_is_made_ahead_and_swapped_in_at_the_roll() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(SEG, SyncPolicy::Never)).unwrap();
    append_one(&pc, 1, 0, 1, LEN, 0);
    let mut next = append_until_standby(&pc, 1);
    let written = pc.end_position().0;
    assert!(written >= SEG / 4 * 3, "made near the end only ({written})");
    // The standby is complete before it is used: preallocated, at a fixed stride.
    assert_eq!(segment_bases(dir.path()), vec![0, SEG]);
    let standby = dir.path().join(format!("{SEG:020}.seg"));
    assert_eq!(fs::metadata(&standby).unwrap().len(), SEG);
    while pc.active_segment_base() == Some(Position(0)) {
        append_one(&pc, 1, next, 1, LEN, 0);
        next += 1;
    }
    assert_eq!(pc.active_segment_base(), Some(Position(SEG)));
    assert_eq!(pc.end_position(), Position(SEG + 32 + 64 + LEN as u64));
    check(&pc, next);
    // The rolled segment is sealed behind the roll.
    pc.wait_sealed();
    assert!(dir.path().join(format!("{:020}.idx", 0)).exists());
    assert!(
        fs::metadata(dir.path().join(format!("{:020}.seg", 0)))
            .unwrap()
            .len()
            < SEG
    );
}

#[test]
fn close_deletes_an_unused_standby_and_reopening_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SEG, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let next = append_until_standby(&pc, 0);
    pc.close().unwrap();
    drop(pc);
    assert_eq!(segment_bases(dir.path()), vec![0]);
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(report.scanned_bytes, 0, "{report:?}");
    check(&pc, next);
}

/// A crash with the standby made: the directory holds it, empty, after the active segment.
/// Recovery drops it, keeps every synced entry, cuts the torn rest of the active segment,
/// and the log goes on at the same stride.
#[test]
fn a_crash_with_an_unused_standby_drops_it_and_keeps_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SEG, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let synced = append_until_standby(&pc, 0);
    let durable = pc.sync().unwrap().0;
    for i in 0..3 {
        append_one(&pc, 1, synced + i, 1, LEN, 0);
    }
    let end = pc.end_position().0 as usize;
    let crashed = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), crashed.path());
    drop(pc);
    // The unsynced entries were torn: half of the last one reached the disk.
    let seg0 = crashed.path().join(format!("{:020}.seg", 0));
    let mut data = fs::read(&seg0).unwrap();
    data[durable as usize..end - LEN / 2].fill(0);
    fs::write(&seg0, &data).unwrap();
    assert_eq!(segment_bases(crashed.path()), vec![0, SEG]);

    let (pc, report) = PChannel::open(crashed.path(), o.clone()).unwrap();
    assert_eq!(segment_bases(crashed.path()), vec![0], "{report:?}");
    assert_eq!(report.cuts.len(), 1, "{report:?}");
    assert_eq!(report.cuts[0].position, Position(durable));
    check(&pc, synced);
    assert_eq!(pc.end_position(), Position(durable));
    // Appends go on, and roll to the same next base.
    let mut next = synced;
    while pc.active_segment_base() == Some(Position(0)) {
        append_one(&pc, 1, next, 1, LEN, 0);
        next += 1;
    }
    assert_eq!(pc.active_segment_base(), Some(Position(SEG)));
    check(&pc, next);
    pc.close().unwrap();
    drop(pc);
    let (pc, report) = PChannel::open(crashed.path(), o).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    check(&pc, next);
}

/// Retention deletes a dead segment only once the segment after it is sealed: recovery scans
/// a segment whose index file is not written yet (its seal was pending at the crash) checking
/// that its entries' `seq`s follow the previous segment's, so that segment must still be there.
#[test]
fn a_dead_segment_stays_until_the_next_one_is_sealed() {
    use log_store::Retention;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SEG, SyncPolicy::Always);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    // Segment 0: vchannel 1 (kept) and 2; segment 1: vchannel 2 only; then segment 2 active.
    let (mut n1, mut n2) = (0i64, 0i64);
    append_one(&pc, 1, n1, 1, LEN, 0);
    n1 += 1;
    while pc.active_segment_base() != Some(Position(2 * SEG)) {
        append_one(&pc, 2, n2, 1, LEN, 0);
        n2 += 1;
    }
    append_one(&pc, 1, n1, 1, LEN, 0);
    n1 += 1;
    let all = Retention {
        ms: None,
        bytes: Some(0),
    };
    pc.set_retention(VChannelId(2), all).unwrap();
    let report = pc.enforce_retention(0).unwrap();
    assert!(
        !report.segments_deleted.contains(&Position(SEG)),
        "segment 1 is dead but the active segment after it is not sealed: {report:?}"
    );
    // Vchannel 1 rolls segment 2 out; a checkpoint names the new active segment.
    while pc.active_segment_base() == Some(Position(2 * SEG)) {
        append_one(&pc, 1, n1, 1, LEN, 0);
        n1 += 1;
    }
    pc.checkpoint().unwrap();
    pc.wait_sealed();
    // A crash before segment 2's seal: no index file for it.
    let crashed = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), crashed.path());
    fs::remove_file(crashed.path().join(format!("{:020}.idx", 2 * SEG))).unwrap();
    drop(pc);
    let (pc, report) = PChannel::open(crashed.path(), o.clone()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    let got = pc.read(VChannelId(1), 0, usize::MAX).unwrap();
    assert_eq!(got.len(), n1 as usize, "{report:?}");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(&g.payload[..], &full_payload(1, i as i64, LEN)[..]);
    }
    // Once segment 2 is sealed, the next pass deletes segment 1.
    let report = pc.enforce_retention(0).unwrap();
    assert!(
        report.segments_deleted.contains(&Position(SEG)),
        "{report:?}"
    );
}
