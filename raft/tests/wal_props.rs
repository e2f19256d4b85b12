//! Property: whatever sequence of appends (with tail overwrites) the log receives, reopening it
//! yields exactly the entries raft-rs saw; cutting bytes off the end (a torn write) yields the
//! replay of exactly the records that survived whole.

mod common;

use std::fs::{self, OpenOptions};

use proptest::prelude::*;
use raft::eraftpb::{ConfState, Entry};
use raft::{GetEntriesContext, Storage};
use sluice_raft::storage::{DiskStorage, wal};

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; len].into(),
        ..Default::default()
    }
}

fn all(s: &DiskStorage) -> Vec<Entry> {
    let (lo, hi) = (s.first_index().unwrap(), s.last_index().unwrap() + 1);
    if lo == hi {
        return Vec::new();
    }
    s.entries(lo, hi, None, GetEntriesContext::empty(false))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reopen_matches_model(
        ops in prop::collection::vec((0u64..4, 1usize..6, 0usize..300), 1..30),
        cut in 0usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = common::logger();
        // No voters: the log starts at index 1 (a new group starts after INIT_INDEX).
        let conf = ConfState::default();
        let (mut s, fresh) = DiskStorage::open(dir.path(), &conf, &[], false, &log).unwrap();
        prop_assert!(fresh);
        let mut model: Vec<Entry> = Vec::new();
        // Every record in write order with the file offset where it ends.
        let mut records: Vec<(u64, Entry)> = Vec::new();
        let mut offset = wal::HEADER_LEN as u64;
        let mut term = 1;
        for (back, n, len) in ops {
            // Overwrite up to `back` entries of the tail with a higher term, as a new leader's
            // entries replace a follower's conflicting suffix.
            let back = back.min(model.len() as u64);
            if back > 0 {
                term += 1;
            }
            let start = model.len() as u64 - back + 1;
            let batch: Vec<Entry> = (start..start + n as u64).map(|i| entry(i, term, len)).collect();
            s.append(&batch).unwrap();
            for e in &batch {
                let mut buf = Vec::new();
                wal::encode_record(e, &mut buf);
                offset += buf.len() as u64;
                records.push((offset, e.clone()));
            }
            model.truncate((start - 1) as usize);
            model.extend(batch);
        }
        prop_assert_eq!(&all(&s), &model);
        drop(s);
        let (s, fresh) = DiskStorage::open(dir.path(), &conf, &[], false, &log).unwrap();
        prop_assert!(!fresh);
        prop_assert_eq!(&all(&s), &model);
        drop(s);

        // Cut `cut` bytes off the active segment: a torn tail, which recovery trims.
        let seg = s_path(dir.path());
        let len = fs::metadata(&seg).unwrap().len();
        let new_len = len.saturating_sub(cut as u64).max(32);
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(new_len).unwrap();
        let (s, _) = DiskStorage::open(dir.path(), &conf, &[], false, &log).unwrap();
        let got = all(&s);
        // Expected: replay of the records that survived the cut whole.
        let mut expected: Vec<Entry> = Vec::new();
        for (end, e) in &records {
            if *end <= new_len {
                expected.truncate((e.index - 1) as usize);
                expected.push(e.clone());
            }
        }
        prop_assert_eq!(&got, &expected);
    }
}

fn s_path(dir: &std::path::Path) -> std::path::PathBuf {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v.pop().unwrap()
}
