//! Bad bytes on disk: each kind of damage is cut or rebuilt by recovery, or reported as
//! `LogError::Corrupt`; never a panic, never a good entry lost.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{append_one, full_payload, opts};
use log_store::{LogError, PChannel, PChannelOptions, SyncPolicy, VChannelId};

fn seg_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// Ten entries of vchannel 7 (500-byte payloads) in the active segment, no checkpoint.
fn setup() -> (tempfile::TempDir, PChannelOptions, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1 << 20, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    let positions = (0..10).map(|i| append_one(&pc, 7, i, 1, 500, i)).collect();
    drop(pc);
    (dir, o, positions)
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).unwrap();
}

fn assert_cut_at(dir: &Path, o: PChannelOptions, position: u64, kept: i64, reason: &str) {
    let (pc, report) = PChannel::open(dir, o).unwrap();
    assert_eq!(report.cuts.len(), 1, "{report:?}");
    assert_eq!(report.cuts[0].position.0, position);
    assert_eq!(report.cuts[0].reason, reason);
    assert!(report.cuts[0].discarded_bytes > 0);
    let got = pc.read(VChannelId(7), 0, usize::MAX).unwrap();
    assert_eq!(got.len() as i64, kept);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(&e.payload[..], &full_payload(7, i as i64, 500)[..]);
    }
    assert_eq!(
        pc.vchannel_state(VChannelId(7))
            .map_or(0, |s| s.log_end_offset),
        kept
    );
}

#[test]
fn wrong_magic_cuts_there() {
    let (dir, o, pos) = setup();
    patch(&seg_path(dir.path(), 0), pos[6] as usize + 4, b"XX");
    assert_cut_at(dir.path(), o, pos[6], 6, "bad entry magic");
}

#[test]
fn bad_crc_cuts_there() {
    let (dir, o, pos) = setup();
    patch(
        &seg_path(dir.path(), 0),
        pos[3] as usize + 64 + 7,
        b"\xff\xfe",
    );
    assert_cut_at(dir.path(), o, pos[3], 3, "CRC mismatch");
}

#[test]
fn length_beyond_the_file_cuts_there() {
    let (dir, o, pos) = setup();
    patch(
        &seg_path(dir.path(), 0),
        pos[8] as usize + 8,
        &u32::MAX.to_le_bytes(),
    );
    assert_cut_at(
        dir.path(),
        o,
        pos[8],
        8,
        "entry length runs past the end of the segment",
    );
}

#[test]
fn unknown_version_cuts_there() {
    let (dir, o, pos) = setup();
    patch(&seg_path(dir.path(), 0), pos[0] as usize + 6, &[9]);
    assert_cut_at(dir.path(), o, pos[0], 0, "unknown entry format version");
}

/// Two vchannels over several small segments, closed cleanly; returns the sealed bases.
fn sealed_setup() -> (tempfile::TempDir, PChannelOptions, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(8 << 10, SyncPolicy::Never);
    let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
    for i in 0..40 {
        append_one(&pc, 1 + (i % 2) as u64, i / 2, 1, 700, i);
    }
    pc.close().unwrap();
    let mut bases: Vec<u64> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .strip_suffix(".idx")
                .map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    assert!(bases.len() >= 3);
    (dir, o, bases)
}

fn assert_all_there(pc: &PChannel) {
    for v in [1u64, 2] {
        let got = pc.read(VChannelId(v), 0, usize::MAX).unwrap();
        assert_eq!(got.len(), 20);
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e.first_offset, i as i64);
            assert_eq!(&e.payload[..], &full_payload(v, i as i64, 700)[..]);
        }
    }
}

#[test]
fn damaged_index_file_is_rebuilt_from_its_segment() {
    let (dir, o, bases) = sealed_setup();
    let idx = dir.path().join(format!("{:020}.idx", bases[1]));
    patch(&idx, 40, b"\x13\x37");
    let (pc, report) = PChannel::open(dir.path(), o.clone()).unwrap();
    assert_eq!(report.rebuilt_indexes.len(), 1);
    assert_eq!(report.rebuilt_indexes[0].0.0, bases[1]);
    assert!(report.rebuilt_indexes[0].1.contains("CRC"));
    assert!(report.cuts.is_empty());
    assert_all_there(&pc);
    drop(pc);
    let (_, report) = PChannel::open(dir.path(), o).unwrap();
    assert!(
        report.rebuilt_indexes.is_empty(),
        "the rebuilt index file was written back"
    );
}

#[test]
fn index_file_disagreeing_with_its_segment_is_rebuilt() {
    let (dir, o, bases) = sealed_setup();
    let idx = dir.path().join(format!("{:020}.idx", bases[0]));
    let mut data = fs::read(&idx).unwrap();
    // Record 1 (after the 32-byte header): claim a different first offset, with a valid CRC.
    let rec = 32 + 64;
    data[rec + 8..rec + 16].copy_from_slice(&5i64.to_le_bytes());
    data[rec + 16..rec + 24].copy_from_slice(&5i64.to_le_bytes());
    let n = data.len() - 4;
    let crc = crc32fast::hash(&data[..n]);
    data[n..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&idx, &data).unwrap();
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(report.rebuilt_indexes.len(), 1, "{report:?}");
    assert!(
        report.rebuilt_indexes[0].1.contains("offsets"),
        "{report:?}"
    );
    assert_all_there(&pc);
}

#[test]
fn missing_index_file_is_rebuilt() {
    let (dir, o, bases) = sealed_setup();
    fs::remove_file(dir.path().join(format!("{:020}.idx", bases[2]))).unwrap();
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(report.rebuilt_indexes.len(), 1);
    assert_all_there(&pc);
}

#[test]
fn damaged_checkpoint_falls_back_to_a_scan() {
    let (dir, o, _) = sealed_setup();
    patch(&dir.path().join("checkpoint"), 20, b"\xde\xad");
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert_eq!(
        report.checkpoint_error.as_deref(),
        Some("checkpoint CRC mismatch")
    );
    assert!(report.scanned_bytes > 0);
    assert_all_there(&pc);
}

#[test]
fn damaged_sealed_segment_header_is_an_error_not_a_panic() {
    let (dir, o, bases) = sealed_setup();
    patch(&seg_path(dir.path(), bases[1]), 0, b"NOTASEGM");
    match PChannel::open(dir.path(), o) {
        Err(LogError::Corrupt {
            position, reason, ..
        }) => {
            assert_eq!(position, bases[1]);
            assert_eq!(reason, "bad segment magic");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_payload_in_a_sealed_segment_is_corrupt_on_read() {
    let (dir, o, bases) = sealed_setup();
    let seg = seg_path(dir.path(), bases[0]);
    patch(&seg, 32 + 64 + 30, b"\x55\x55\x55");
    let (pc, report) = PChannel::open(dir.path(), o).unwrap();
    assert!(report.cuts.is_empty());
    assert!(matches!(
        pc.read(VChannelId(1), 0, 1),
        Err(LogError::Corrupt { .. })
    ));
    assert_eq!(
        &pc.read(VChannelId(1), 1, 1).unwrap()[0].payload[..],
        &full_payload(1, 1, 700)[..]
    );
}

#[test]
fn foreign_files_are_ignored() {
    let (dir, o, _) = sealed_setup();
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::write(dir.path().join("12.seg"), b"short name").unwrap();
    fs::write(dir.path().join("checkpoint.tmp"), b"half written").unwrap();
    let (pc, _) = PChannel::open(dir.path(), o).unwrap();
    assert_all_there(&pc);
    assert!(!dir.path().join("checkpoint.tmp").exists());
}

mod random_damage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// Random bytes written over, or files cut short, anywhere in the directory: open never
        /// panics, and whatever reads back is exactly what was appended.
        #[test]
        fn open_and_read_survive_random_damage(
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..9), any::<bool>()), 1..4),
            clean in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let o = opts(8 << 10, SyncPolicy::Never);
            let (pc, _) = PChannel::open(dir.path(), o.clone()).unwrap();
            for i in 0..40 {
                append_one(&pc, 1 + (i % 2) as u64, i / 2, 1, 700, i);
                if i == 25 {
                    pc.checkpoint().unwrap();
                }
            }
            if clean {
                pc.close().unwrap();
            }
            drop(pc);
            let mut files: Vec<PathBuf> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for (file, at, bytes, cut) in damage {
                let path = file.get(&files);
                let mut data = fs::read(path).unwrap();
                if data.is_empty() {
                    continue;
                }
                let at = at.index(data.len());
                if cut {
                    data.truncate(at);
                } else {
                    for (i, b) in bytes.iter().enumerate() {
                        if let Some(x) = data.get_mut(at + i) {
                            *x = *b;
                        }
                    }
                }
                fs::write(path, &data).unwrap();
            }
            let Ok((pc, _report)) = PChannel::open(dir.path(), o) else {
                return Ok(()); // refusing to open (e.g. a sealed segment's header is gone) is allowed
            };
            for v in [1u64, 2] {
                let Some(st) = pc.vchannel_state(VChannelId(v)) else { continue };
                let mut offset = st.log_start_offset;
                while offset < st.log_end_offset {
                    match pc.read(VChannelId(v), offset, 1) {
                        Ok(got) if got.is_empty() => break,
                        Ok(got) => {
                            let e = &got[0];
                            prop_assert_eq!(&e.payload[..], &full_payload(v, e.first_offset, 700)[..]);
                            offset = e.last_offset + 1;
                        }
                        Err(LogError::Corrupt { .. }) => offset += 1,
                        Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
                    }
                }
            }
        }
    }
}
