//! Helpers shared by the integration tests: deterministic payloads and option presets.
#![allow(dead_code)]

use std::path::Path;

use log_store::{EntryFlags, EntryRef, PChannel, PChannelOptions, SyncPolicy, Term, VChannelId};

/// Payload of the entry of `vchannel` starting at `first_offset`: 16 rewritten prefix bytes
/// (base offset + vchannel) and `len - 16` bytes derived from both.
pub fn payload(vchannel: u64, first_offset: i64, len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut prefix = Vec::with_capacity(16);
    prefix.extend_from_slice(&first_offset.to_be_bytes());
    prefix.extend_from_slice(&vchannel.to_be_bytes());
    let seed = vchannel.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ first_offset as u64;
    let rest = (0..len.saturating_sub(16))
        .map(|i| (seed.wrapping_add(i as u64 * 31) >> 3) as u8)
        .collect();
    (prefix, rest)
}

/// The full stored payload (prefix + rest).
pub fn full_payload(vchannel: u64, first_offset: i64, len: usize) -> Vec<u8> {
    let (mut p, r) = payload(vchannel, first_offset, len);
    p.extend_from_slice(&r);
    p
}

/// Test options: small segments, no background checkpoints.
pub fn opts(segment_bytes: u64, sync_policy: SyncPolicy) -> PChannelOptions {
    PChannelOptions {
        segment_bytes,
        sync_policy,
        checkpoint_interval: None,
        compact_live_ratio: 0.25,
        verify_reads: true,
        recycle_segments: 2,
        // Exercises the early-writeback thread everywhere (it only acts past 2 MiB).
        writeback_bytes: 4 << 20,
    }
}

/// Appends one entry of `count` offsets and `len` payload bytes with timestamp `ts`.
pub fn append_one(
    pc: &PChannel,
    vchannel: u64,
    first: i64,
    count: i64,
    len: usize,
    ts: i64,
) -> u64 {
    let (prefix, rest) = payload(vchannel, first, len);
    let e = EntryRef {
        vchannel: VChannelId(vchannel),
        first_offset: first,
        last_offset: first + count - 1,
        max_timestamp: ts,
        flags: if first % 7 == 3 {
            EntryFlags::CONTROL
        } else {
            EntryFlags::default()
        },
        term: Term(1),
        prefix: &prefix,
        rest: &rest,
    };
    pc.append(&[e]).expect("append").positions[0].0
}

/// Bases of the segment files in `dir`, ascending.
pub fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg").map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// Copies every file of `from` into a new directory `to`.
///
/// A file the sealing thread renames away while this runs is skipped: a crash at that moment
/// leaves one of the states recovery must handle either way.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        match std::fs::copy(e.path(), to.join(e.file_name())) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("copying {}: {err}", e.path().display()),
        }
    }
}
