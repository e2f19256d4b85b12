//! A pchannel that was never written takes no disk: its first segment is created (and
//! preallocated) by the first append, and recovery, checkpoints and reads work without one.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{append_one, full_payload, opts};
use log_store::{PChannel, Position, Retention, SyncPolicy, VChannelId};

const SEGMENT: u64 = 64 << 20;

/// Segment file names in `dir`.
fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// Bytes allocated on disk by every file in `dir` (what `du` counts: 512-byte blocks).
fn allocated(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
fn an_unwritten_pchannel_has_no_segment_until_the_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SEGMENT, SyncPolicy::Always);
    let (pc, report) = PChannel::open(dir.path(), o.clone()).unwrap();
    assert_eq!(report.segments, 0);
    assert!(report.cuts.is_empty());
    assert!(segments(dir.path()).is_empty());
    assert!(
        allocated(dir.path()) < 64 << 10,
        "an empty pchannel allocated {} bytes",
        allocated(dir.path())
    );
    // Reads, lookups, syncs and checkpoints of the empty pchannel.
    assert_eq!(pc.end_position(), Position(0));
    assert!(pc.read(VChannelId(3), 0, 1 << 20).unwrap().is_empty());
    assert_eq!(pc.lookup_timestamp(VChannelId(3), 0), None);
    assert_eq!(pc.sync().unwrap(), Position(0));
    pc.checkpoint().unwrap();
    assert_eq!(
        pc.enforce_retention(i64::MAX).unwrap().segments_deleted,
        vec![]
    );
    assert!(segments(dir.path()).is_empty());

    // Reopening it (after a clean close and after a drop) creates nothing either.
    pc.close().unwrap();
    drop(pc);
    let (pc, report) = PChannel::open(dir.path(), o.clone()).unwrap();
    assert_eq!((report.segments, report.entries), (0, 0));
    assert_eq!(report.checkpoint_position, Some(Position(0)));
    drop(pc);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    assert!(segments(dir.path()).is_empty());
    let empty = allocated(dir.path());
    assert!(empty < 64 << 10);

    // The first append creates one preallocated segment.
    let pos = append_one(&pc, 3, 0, 5, 1000, 42);
    assert_eq!(pos, 32, "the first entry follows the segment header");
    assert_eq!(segments(dir.path()), vec![format!("{:020}.seg", 0)]);
    let seg = dir.path().join(format!("{:020}.seg", 0));
    assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT);
    assert!(allocated(dir.path()) >= 4096);
    eprintln!(
        "allocated: {empty} bytes before the first append, {} after (segment_bytes {SEGMENT})",
        allocated(dir.path())
    );
    drop(pc);

    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!((report.segments, report.entries), (1, 1));
    assert!(report.cuts.is_empty());
    let got = pc.read(VChannelId(3), 0, usize::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].first_offset, got[0].last_offset), (0, 4));
    assert_eq!(&got[0].payload[..], &full_payload(3, 0, 1000)[..]);
}

#[test]
fn metadata_of_an_unwritten_pchannel_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SEGMENT, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let r = Retention {
        ms: Some(1000),
        bytes: None,
    };
    pc.set_retention(VChannelId(9), r).unwrap();
    pc.delete_vchannel(VChannelId(4)).unwrap();
    pc.close().unwrap();
    drop(pc);
    assert!(segments(dir.path()).is_empty());
    let (pc, _) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(pc.vchannel_state(VChannelId(9)).unwrap().retention, r);
    assert!(
        pc.append_checked(4).is_err(),
        "a deleted vchannel stays deleted"
    );
    append_one(&pc, 9, 0, 1, 100, 0);
    assert_eq!(segments(dir.path()).len(), 1);
}

/// `append_one` panics on error; this probes whether an append is refused.
trait AppendChecked {
    fn append_checked(&self, v: u64) -> Result<(), log_store::LogError>;
}

impl AppendChecked for PChannel {
    fn append_checked(&self, v: u64) -> Result<(), log_store::LogError> {
        let e = log_store::EntryRef {
            vchannel: VChannelId(v),
            first_offset: 0,
            last_offset: 0,
            max_timestamp: 0,
            flags: log_store::EntryFlags::default(),
            term: log_store::Term(1),
            prefix: b"x",
            rest: b"",
        };
        self.append(&[e]).map(|_| ())
    }
}
