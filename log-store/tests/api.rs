//! Scenario tests of the public API: append, read, restart, policies, metadata operations.

mod common;

use std::sync::Arc;

use common::{append_one, full_payload, opts, payload};
use log_store::{
    EntryFlags, EntryRef, LogError, PChannel, Position, Retention, SyncPolicy, Term, TimestampHit,
    VChannelId,
};

#[test]
fn append_then_read_back_across_segments_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, report) = PChannel::open(dir.path(), opts(64 << 10, SyncPolicy::Never)).unwrap();
    assert_eq!(report.entries, 0);
    let mut next = [0i64; 3];
    for i in 0..300 {
        let v = i % 3;
        append_one(&pc, v as u64, next[v], 5, 700 + i, 1000 + i as i64);
        next[v] += 5;
    }
    let check = |pc: &PChannel| {
        for v in 0..3u64 {
            let st = pc.vchannel_state(VChannelId(v)).unwrap();
            assert_eq!(
                (st.log_start_offset, st.log_end_offset, st.entry_count),
                (0, 500, 100)
            );
            let got = pc.read(VChannelId(v), 237, 1).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].first_offset, got[0].last_offset), (235, 239));
            let len = 700 + (235 / 5) * 3 + v as usize;
            assert_eq!(&got[0].payload[..], &full_payload(v, 235, len)[..]);
            let all = pc.read(VChannelId(v), 0, usize::MAX).unwrap();
            assert_eq!(all.len(), 100);
            assert!(
                all.windows(2)
                    .all(|w| w[0].last_offset + 1 == w[1].first_offset)
            );
            assert!(all.windows(2).all(|w| w[0].position < w[1].position));
            assert!(pc.read(VChannelId(v), 500, 10).unwrap().is_empty());
        }
    };
    check(&pc);
    assert!(pc.read(VChannelId(0), 501, 10).is_err());
    pc.close().unwrap();
    drop(pc);
    assert!(seg_count(dir.path()) > 3);
    let (pc, report) = PChannel::open(dir.path(), opts(64 << 10, SyncPolicy::Never)).unwrap();
    assert_eq!(
        report.scanned_bytes, 0,
        "clean open must not scan: {report:?}"
    );
    assert!(report.cuts.is_empty() && report.rebuilt_indexes.is_empty());
    assert_eq!(report.entries, 300);
    check(&pc);
    append_one(&pc, 1, 500, 1, 100, 5);
    assert_eq!(
        pc.vchannel_state(VChannelId(1)).unwrap().log_end_offset,
        501
    );
}

#[test]
fn offsets_must_be_dense_and_groups_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(1 << 20, SyncPolicy::Never)).unwrap();
    append_one(&pc, 9, 0, 10, 50, 0);
    let (p, r) = payload(9, 11, 50);
    let bad = EntryRef {
        vchannel: VChannelId(9),
        first_offset: 11,
        last_offset: 11,
        max_timestamp: 0,
        flags: EntryFlags::default(),
        term: Term(1),
        prefix: &p,
        rest: &r,
    };
    let good = EntryRef {
        vchannel: VChannelId(4),
        first_offset: 0,
        last_offset: 0,
        ..bad
    };
    match pc.append(&[good, bad]) {
        Err(LogError::OffsetMismatch {
            vchannel,
            expected,
            got,
        }) => {
            assert_eq!((vchannel, expected, got), (VChannelId(9), 10, 11));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        pc.vchannel_state(VChannelId(4)),
        None,
        "nothing of a refused group is written"
    );
    let second = EntryRef {
        vchannel: VChannelId(4),
        first_offset: 1,
        last_offset: 3,
        ..bad
    };
    let out = pc.append(&[good, second]).unwrap();
    assert_eq!(out.positions.len(), 2);
    assert_eq!(pc.vchannel_state(VChannelId(4)).unwrap().log_end_offset, 4);
    let reversed = EntryRef {
        last_offset: 1,
        first_offset: 4,
        vchannel: VChannelId(4),
        ..bad
    };
    assert!(matches!(
        pc.append(&[reversed]),
        Err(LogError::InvalidEntry { .. })
    ));
    let big = vec![0u8; 1 << 20];
    let huge = EntryRef {
        vchannel: VChannelId(4),
        first_offset: 4,
        last_offset: 4,
        rest: &big,
        ..bad
    };
    assert!(matches!(
        pc.append(&[huge]),
        Err(LogError::EntryTooLarge { .. })
    ));
}

#[test]
fn timestamps_flags_and_terms_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(1 << 20, SyncPolicy::Never)).unwrap();
    for (i, ts) in [100, 300, 200, 400, 150].into_iter().enumerate() {
        append_one(&pc, 2, i as i64 * 2, 2, 40, ts);
    }
    let v = VChannelId(2);
    assert_eq!(
        pc.lookup_timestamp(v, 250),
        Some(TimestampHit {
            first_offset: 2,
            last_offset: 3,
            max_timestamp: 300
        })
    );
    assert_eq!(pc.lookup_timestamp(v, 0).unwrap().first_offset, 0);
    assert_eq!(pc.lookup_timestamp(v, 301).unwrap().first_offset, 6);
    assert_eq!(pc.lookup_timestamp(v, 401), None);
    assert_eq!(pc.max_timestamp_entry(v).unwrap().first_offset, 6);
    let got = pc.read(v, 3, 1 << 20).unwrap();
    assert_eq!(
        got.iter().map(|e| e.first_offset).collect::<Vec<_>>(),
        vec![2, 4, 6, 8]
    );
    assert_eq!(got[2].max_timestamp, 400);
    assert_eq!(got[0].term, Term(1));
    // append_one marks entries whose first offset is 3 mod 7 as control batches
    assert!(
        got.iter()
            .all(|e| e.flags.contains(EntryFlags::CONTROL) == (e.first_offset % 7 == 3))
    );
}

#[test]
fn delete_records_and_delete_vchannel_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    for i in 0..10 {
        append_one(&pc, 1, i * 3, 3, 60, i);
        append_one(&pc, 2, i, 1, 60, i);
    }
    assert_eq!(pc.delete_records(VChannelId(1), 10).unwrap(), 10);
    assert_eq!(
        pc.delete_records(VChannelId(1), 4).unwrap(),
        10,
        "never moves back"
    );
    assert!(matches!(
        pc.delete_records(VChannelId(1), 31),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        pc.read(VChannelId(1), 8, 1),
        Err(LogError::OffsetOutOfRange {
            log_start_offset: 10,
            ..
        })
    ));
    // offset 10 lies in the entry 9..=11, which is returned whole
    assert_eq!(pc.read(VChannelId(1), 10, 1).unwrap()[0].first_offset, 9);
    pc.delete_vchannel(VChannelId(2)).unwrap();
    assert!(matches!(
        pc.read(VChannelId(2), 0, 1),
        Err(LogError::VChannelDeleted(_))
    ));
    drop(pc); // no close: the metadata operations were made durable by themselves
    let (pc, _) = PChannel::open(dir.path(), o).unwrap();
    let st = pc.vchannel_state(VChannelId(1)).unwrap();
    assert_eq!(
        (st.log_start_offset, st.log_end_offset, st.entry_count),
        (10, 30, 7)
    );
    assert_eq!(pc.vchannel_state(VChannelId(2)), None);
    assert_eq!(pc.vchannels(), vec![VChannelId(1)]);
    let (p, r) = payload(2, 10, 20);
    let e = EntryRef {
        vchannel: VChannelId(2),
        first_offset: 10,
        last_offset: 10,
        max_timestamp: 0,
        flags: EntryFlags::default(),
        term: Term(1),
        prefix: &p,
        rest: &r,
    };
    assert!(matches!(pc.append(&[e]), Err(LogError::VChannelDeleted(_))));
}

#[test]
fn retention_deletes_and_compacts_segments() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(32 << 10, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    // vchannel 1: short-lived, lots of data; vchannel 2: long-lived, a trickle.
    let (mut n1, mut n2) = (0i64, 0i64);
    for i in 0..200 {
        append_one(&pc, 1, n1, 1, 1000, i);
        n1 += 1;
        if i % 20 == 0 {
            append_one(&pc, 2, n2, 1, 100, i);
            n2 += 1;
        }
    }
    pc.set_retention(
        VChannelId(1),
        Retention {
            ms: Some(50),
            bytes: None,
        },
    )
    .unwrap();
    pc.set_retention(
        VChannelId(2),
        Retention {
            ms: None,
            bytes: Some(100_000),
        },
    )
    .unwrap();
    let segs_before = pc.sync().map(|_| seg_count(dir.path())).unwrap();
    let report = pc.enforce_retention(200).unwrap();
    assert_eq!(report.log_start_offsets, vec![(VChannelId(1), 150)]);
    assert!(!report.segments_compacted.is_empty(), "{report:?}");
    assert!(!report.segments_deleted.is_empty());
    assert!(report.bytes_copied > 0 && report.bytes_copied < 10 * 200);
    assert!(seg_count(dir.path()) < segs_before);
    let check = |pc: &PChannel| {
        let all2 = pc.read(VChannelId(2), 0, usize::MAX).unwrap();
        assert_eq!(all2.len(), 10);
        for (i, e) in all2.iter().enumerate() {
            assert_eq!(e.first_offset, i as i64);
            assert_eq!(&e.payload[..], &full_payload(2, i as i64, 100)[..]);
        }
        let all1 = pc.read(VChannelId(1), 150, usize::MAX).unwrap();
        assert_eq!(all1.len(), 50);
        assert_eq!(&all1[0].payload[..], &full_payload(1, 150, 1000)[..]);
    };
    check(&pc);
    assert!(
        pc.truncate_after(Position(0)).is_err(),
        "truncation below compaction is refused"
    );
    drop(pc);
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    check(&pc);
    let st = pc.vchannel_state(VChannelId(1)).unwrap();
    assert_eq!((st.log_start_offset, st.log_end_offset), (150, 200));
}

fn seg_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

#[test]
fn truncate_after_drops_the_tail_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(16 << 10, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let mut positions = Vec::new();
    for i in 0..60 {
        positions.push(append_one(&pc, (i % 2) as u64, i / 2, 1, 900, i));
    }
    let keep = positions[21]; // vchannel 1, offset 10
    let end = pc.truncate_after(Position(keep)).unwrap();
    assert_eq!(end, Position(keep + 64 + 900));
    assert_eq!(pc.vchannel_state(VChannelId(0)).unwrap().log_end_offset, 11);
    assert_eq!(pc.vchannel_state(VChannelId(1)).unwrap().log_end_offset, 11);
    assert!(pc.truncate_after(Position(keep + 1)).is_err());
    append_one(&pc, 0, 11, 1, 500, 0);
    drop(pc);
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(pc.vchannel_state(VChannelId(0)).unwrap().log_end_offset, 12);
    assert_eq!(pc.vchannel_state(VChannelId(1)).unwrap().log_end_offset, 11);
    let e = pc.read(VChannelId(0), 11, 1).unwrap();
    assert_eq!(&e[0].payload[..], &full_payload(0, 11, 500)[..]);
    assert_eq!(pc.read(VChannelId(1), 0, usize::MAX).unwrap().len(), 11);
}

#[test]
fn concurrent_appenders_share_syncs_and_readers_see_whole_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(256 << 10, SyncPolicy::Always)).unwrap();
    let pc = Arc::new(pc);
    let writers: Vec<_> = (0..4u64)
        .map(|v| {
            let pc = Arc::clone(&pc);
            std::thread::spawn(move || {
                for i in 0..100 {
                    append_one(&pc, v, i, 1, 300 + v as usize, i);
                    assert!(pc.durable_position() >= Position(0));
                }
            })
        })
        .collect();
    let reader = {
        let pc = Arc::clone(&pc);
        std::thread::spawn(move || {
            let mut seen = 0;
            while seen < 100 {
                let end = pc
                    .vchannel_state(VChannelId(3))
                    .map_or(0, |s| s.log_end_offset);
                for e in pc.read(VChannelId(3), 0, usize::MAX).unwrap() {
                    assert_eq!(&e.payload[..], &full_payload(3, e.first_offset, 303)[..]);
                }
                seen = end;
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(pc.durable_position(), pc.end_position());
}

#[test]
fn one_flush_releases_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    // The flusher runs once a minute: only the explicit sync below can release the waiters.
    let (pc, _) =
        PChannel::open(dir.path(), opts(1 << 20, SyncPolicy::IntervalMs(60_000))).unwrap();
    let pc = Arc::new(pc);
    let durable_before = pc.durable_position();
    let ends: Vec<Position> = (0..4)
        .map(|v| {
            append_one(&pc, v, 0, 1, 1000, 0);
            pc.end_position()
        })
        .collect();
    assert_eq!(pc.durable_position(), durable_before, "nothing flushed yet");
    let waiters: Vec<_> = ends
        .iter()
        .map(|&end| {
            let pc = Arc::clone(&pc);
            std::thread::spawn(move || pc.wait_durable(end).unwrap())
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "waiters block until a flush"
    );
    let durable = pc.sync().unwrap();
    assert_eq!(durable, ends[3]);
    for w in waiters {
        assert_eq!(w.join().unwrap(), ends[3]);
    }
}

#[test]
fn pchannel_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PChannel>();
    assert_send_sync::<log_store::ReadEntry>();
}

#[test]
fn interval_policy_wait_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(1 << 20, SyncPolicy::IntervalMs(5))).unwrap();
    append_one(&pc, 1, 0, 1, 100, 0);
    let end = pc.end_position();
    assert!(pc.wait_durable(end).unwrap() >= end);
    pc.close().unwrap();
    assert!(matches!(pc.append(&[]), Err(LogError::Closed)));
}

#[test]
fn the_active_segment_base_splits_tailing_from_catch_up_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (pc, _) = PChannel::open(dir.path(), opts(64 << 10, SyncPolicy::Never)).unwrap();
    assert_eq!(
        pc.active_segment_base(),
        None,
        "no segment before the first entry"
    );
    append_one(&pc, 1, 0, 1, 100, 0);
    assert_eq!(pc.active_segment_base(), Some(Position(0)));
    for i in 1..300 {
        append_one(&pc, 1, i, 1, 700, i);
    }
    let base = pc.active_segment_base().unwrap();
    assert!(base > Position(0), "the segments rolled");
    let first = pc.read(VChannelId(1), 0, 1).unwrap();
    let last = pc.read(VChannelId(1), 299, 1).unwrap();
    assert!(
        first[0].position < base,
        "offset 0 lies in a sealed segment"
    );
    assert!(
        last[0].position >= base,
        "the newest entry lies in the active segment"
    );
    assert!(base <= pc.end_position());
}
