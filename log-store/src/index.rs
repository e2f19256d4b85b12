//! The per-vchannel index (offset → position, timestamp → offset) and the sealed index files.
//!
//! Every live entry of a vchannel has a [`VEntry`] in memory, sorted by offset; lookups are a
//! hash probe and a binary search. The records of a sealed segment are also written to a
//! `.idx` file beside it ([`IdxRecord`] × n, CRC-protected) so that open never scans it.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;

use crate::entry::{le_u32, le_u64};
use crate::error::LogError;
use crate::types::Retention;

/// Size of one record in an index file or checkpoint.
pub(crate) const RECORD_LEN: usize = 64;
/// Size of an index file's header.
pub(crate) const IDX_HEADER_LEN: usize = 32;
/// Magic of an index file.
pub(crate) const IDX_MAGIC: &[u8; 8] = b"SLUICIDX";
/// Index file format version.
pub(crate) const IDX_VERSION: u32 = 1;

/// Everything known about one stored entry; the on-disk index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdxRecord {
    pub vchannel: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub position: u64,
    pub payload_len: u32,
    pub flags: u16,
    pub term: u64,
    pub seq: u64,
}

impl IdxRecord {
    /// Total size of the entry on disk.
    pub(crate) fn entry_len(&self) -> u64 {
        crate::entry::HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.vchannel.to_le_bytes());
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        out.extend_from_slice(&self.last_offset.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
    }

    pub(crate) fn decode(b: &[u8]) -> IdxRecord {
        IdxRecord {
            vchannel: le_u64(&b[0..]),
            first_offset: le_u64(&b[8..]) as i64,
            last_offset: le_u64(&b[16..]) as i64,
            max_timestamp: le_u64(&b[24..]) as i64,
            position: le_u64(&b[32..]),
            payload_len: le_u32(&b[40..]),
            flags: u16::from_le_bytes([b[44], b[45]]),
            term: le_u64(&b[48..]),
            seq: le_u64(&b[56..]),
        }
    }
}

/// Writes the index file of a sealed segment (`used` = file length of its data), durably:
/// the file's bytes, then its name (a directory fsync).
pub(crate) fn write_index_file(
    dir: &Path,
    base: u64,
    used: u64,
    records: &[IdxRecord],
) -> Result<(), LogError> {
    let mut out = Vec::with_capacity(IDX_HEADER_LEN + records.len() * RECORD_LEN + 4);
    out.extend_from_slice(IDX_MAGIC);
    out.extend_from_slice(&IDX_VERSION.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&used.to_le_bytes());
    for r in records {
        r.encode_into(&mut out);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    crate::checkpoint::write_renamed(&crate::segment::index_path(dir, base), &out)?;
    crate::segment::sync_dir(dir)
}

/// Reads an index file; `Err(reason)` if it is missing pieces or fails its own checks.
pub(crate) fn read_index_file(path: &Path, base: u64) -> Result<(u64, Vec<IdxRecord>), String> {
    let b = fs::read(path).map_err(|e| format!("cannot read index file: {e}"))?;
    if b.len() < IDX_HEADER_LEN + 4 {
        return Err("index file too short".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body) != le_u32(crc) {
        return Err("index file CRC mismatch".into());
    }
    if &body[0..8] != IDX_MAGIC || le_u32(&body[8..]) != IDX_VERSION {
        return Err("bad index file magic or version".into());
    }
    let count = le_u32(&body[12..]) as usize;
    if le_u64(&body[16..]) != base {
        return Err("index file base disagrees with its name".into());
    }
    let used = le_u64(&body[24..]);
    let recs = &body[IDX_HEADER_LEN..];
    if recs.len() != count * RECORD_LEN {
        return Err("index file record count disagrees with its length".into());
    }
    Ok((
        used,
        recs.chunks_exact(RECORD_LEN)
            .map(IdxRecord::decode)
            .collect(),
    ))
}

/// Hasher for `VChannelId` keys: ids are chosen by the broker, not by clients, so a
/// multiplicative hash (no DoS resistance needed) keeps lookups to a few nanoseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Map from vchannel id to its state.
pub(crate) type VChannelMap = std::collections::HashMap<
    crate::types::VChannelId,
    VChannel,
    std::hash::BuildHasherDefault<IdHasher>,
>;

/// One live entry of a vchannel, as kept in memory (48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VEntry {
    pub first_offset: i64,
    pub position: u64,
    pub max_timestamp: i64,
    /// Max of `max_timestamp` over this and all earlier live entries: monotonic, so a timestamp
    /// lookup is a binary search.
    pub running_max_ts: i64,
    pub payload_len: u32,
    pub last_delta: u32,
    pub flags: u16,
}

impl VEntry {
    pub(crate) fn last_offset(&self) -> i64 {
        self.first_offset + i64::from(self.last_delta)
    }
}

/// State and index of one vchannel.
#[derive(Debug, Clone, Default)]
pub(crate) struct VChannel {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub retention: Retention,
    pub deleted: bool,
    pub payload_bytes: u64,
    pub entries: VecDeque<VEntry>,
}

impl VChannel {
    /// Adds an entry at the end (offsets above every stored one).
    pub(crate) fn push(&mut self, r: &IdxRecord) {
        let prev = self.entries.back().map_or(i64::MIN, |e| e.running_max_ts);
        self.entries.push_back(VEntry {
            first_offset: r.first_offset,
            position: r.position,
            max_timestamp: r.max_timestamp,
            running_max_ts: prev.max(r.max_timestamp),
            payload_len: r.payload_len,
            last_delta: (r.last_offset - r.first_offset) as u32,
            flags: r.flags,
        });
        self.payload_bytes += u64::from(r.payload_len);
        self.log_end_offset = self.log_end_offset.max(r.last_offset + 1);
    }

    /// Points the entry starting at `r.first_offset` to a new position (a compaction copy);
    /// inserts it if it is unknown but still live. Returns whether the index changed.
    pub(crate) fn relocate(&mut self, r: &IdxRecord) -> bool {
        match self
            .entries
            .binary_search_by_key(&r.first_offset, |e| e.first_offset)
        {
            Ok(i) => {
                self.entries[i].position = r.position;
                true
            }
            Err(i) if r.last_offset >= self.log_start_offset => {
                let e = VEntry {
                    first_offset: r.first_offset,
                    position: r.position,
                    max_timestamp: r.max_timestamp,
                    running_max_ts: r.max_timestamp,
                    payload_len: r.payload_len,
                    last_delta: (r.last_offset - r.first_offset) as u32,
                    flags: r.flags,
                };
                self.entries.insert(i, e);
                self.payload_bytes += u64::from(r.payload_len);
                self.log_end_offset = self.log_end_offset.max(r.last_offset + 1);
                self.recompute_running_max(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Index of the entry containing `offset` (or the first entry after it, across a gap).
    pub(crate) fn find(&self, offset: i64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.first_offset <= offset);
        if i > 0 && self.entries[i - 1].last_offset() >= offset {
            Some(i - 1)
        } else if i < self.entries.len() {
            Some(i)
        } else {
            None
        }
    }

    /// Index of the first entry whose max timestamp is at least `ts`.
    pub(crate) fn find_timestamp(&self, ts: i64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.running_max_ts < ts);
        (i < self.entries.len()).then_some(i)
    }

    /// Moves `log_start_offset` to `offset` and drops entries wholly below it.
    pub(crate) fn drop_before(&mut self, offset: i64) {
        let mut dropped = 0;
        while let Some(e) = self.entries.front() {
            if e.last_offset() >= offset {
                break;
            }
            self.payload_bytes -= u64::from(e.payload_len);
            self.entries.pop_front();
            dropped += 1;
        }
        self.log_start_offset = self.log_start_offset.max(offset);
        if dropped > 0 {
            self.recompute_running_max(0);
        }
    }

    /// Drops every entry at or after `position` (truncation; entries there are in offset
    /// order). Returns the first offset dropped, if any.
    pub(crate) fn drop_from_position(&mut self, position: u64) -> Option<i64> {
        let mut first = None;
        while let Some(e) = self.entries.back() {
            if e.position < position {
                break;
            }
            first = Some(e.first_offset);
            self.payload_bytes -= u64::from(e.payload_len);
            self.entries.pop_back();
        }
        first
    }

    /// Recomputes `running_max_ts` from entry `i` on, stopping once it agrees again.
    fn recompute_running_max(&mut self, i: usize) {
        let mut prev = if i == 0 {
            i64::MIN
        } else {
            self.entries[i - 1].running_max_ts
        };
        for e in self.entries.range_mut(i..) {
            let m = prev.max(e.max_timestamp);
            if m == e.running_max_ts && prev != i64::MIN {
                break;
            }
            e.running_max_ts = m;
            prev = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(first: i64, last: i64, ts: i64, pos: u64) -> IdxRecord {
        IdxRecord {
            vchannel: 1,
            first_offset: first,
            last_offset: last,
            max_timestamp: ts,
            position: pos,
            payload_len: 10,
            flags: 0,
            term: 1,
            seq: pos,
        }
    }

    #[test]
    fn find_and_timestamps() {
        let mut v = VChannel::default();
        v.push(&rec(0, 4, 100, 0));
        v.push(&rec(5, 5, 50, 100));
        v.push(&rec(6, 9, 300, 200));
        assert_eq!(v.log_end_offset, 10);
        assert_eq!(v.find(0), Some(0));
        assert_eq!(v.find(4), Some(0));
        assert_eq!(v.find(5), Some(1));
        assert_eq!(v.find(9), Some(2));
        assert_eq!(v.find(10), None);
        assert_eq!(v.find_timestamp(60), Some(0));
        assert_eq!(v.find_timestamp(101), Some(2));
        assert_eq!(v.find_timestamp(301), None);
        v.drop_before(5);
        assert_eq!(v.log_start_offset, 5);
        assert_eq!(v.entries.len(), 2);
        assert_eq!(v.payload_bytes, 20);
        // entry 5 (ts 50) is now the first; ts 60 resolves to the entry at offset 6.
        assert_eq!(
            v.find_timestamp(60).map(|i| v.entries[i].first_offset),
            Some(6)
        );
        assert_eq!(v.drop_from_position(200), Some(6));
        assert_eq!(v.entries.len(), 1);
    }

    #[test]
    fn relocate_updates_or_inserts() {
        let mut v = VChannel::default();
        v.push(&rec(0, 4, 100, 0));
        v.push(&rec(5, 9, 100, 100));
        assert!(v.relocate(&rec(0, 4, 100, 5000)));
        assert_eq!(v.entries[0].position, 5000);
        v.entries.pop_front();
        v.payload_bytes -= 10;
        assert!(v.relocate(&rec(0, 4, 100, 6000)));
        assert_eq!(v.entries[0].position, 6000);
        assert_eq!(v.payload_bytes, 20);
        v.drop_before(5);
        assert!(!v.relocate(&rec(0, 4, 100, 7000)));
    }

    #[test]
    fn index_file_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![rec(0, 4, 100, 32), rec(5, 9, 200, 106)];
        write_index_file(dir.path(), 0, 180, &recs).unwrap();
        let p = crate::segment::index_path(dir.path(), 0);
        assert_eq!(read_index_file(&p, 0).unwrap(), (180, recs));
        assert!(read_index_file(&p, 1).unwrap_err().contains("base"));
        let mut b = fs::read(&p).unwrap();
        b[40] ^= 0xff;
        fs::write(&p, &b).unwrap();
        assert!(read_index_file(&p, 0).unwrap_err().contains("CRC"));
    }
}
