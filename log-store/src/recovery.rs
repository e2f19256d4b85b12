//! Opening a pchannel: load the checkpoint and the sealed index files, scan the active segment
//! past the checkpoint verifying every CRC, cut at the first torn or corrupt entry, and rebuild
//! the vchannel index. Only the unflushed tail is read, never the whole pchannel.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use parking_lot::{Mutex, RwLock};

use crate::checkpoint::Checkpoint;
use crate::entry::{EntryHeader, HEADER_LEN, HeaderError, crc_of, offsets_ok};
use crate::error::LogError;
use crate::index::{IdxRecord, VChannel, VChannelMap, read_index_file, write_index_file};
use crate::pchannel::{Inner, SegSlot, State, Writer};
use crate::recycle;
use crate::seal::Sealer;
use crate::segment::{
    SEGMENT_HEADER_LEN, Segment, check_header, garbage_after, index_path, parse_segment_name,
    sync_dir,
};
use crate::sync::Durability;
use crate::types::{EntryFlags, PChannelOptions, Position, VChannelId};
use crate::writeback::{FOLIO_MAX, Writeback};

/// Bytes dropped by recovery at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where the log was cut (everything from here in that segment was discarded).
    pub position: Position,
    /// Non-zero bytes discarded after the cut (up to the first all-zero 64 KiB block).
    pub discarded_bytes: u64,
    /// Why the entry at `position` was refused.
    pub reason: String,
}

/// What [`crate::PChannel::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Position of the checkpoint used, if one was loaded and agreed with the segments.
    pub checkpoint_position: Option<Position>,
    /// Why a checkpoint present on disk was not used.
    pub checkpoint_error: Option<String>,
    /// Segments opened.
    pub segments: usize,
    /// Bytes of entries read and CRC-checked by the scan.
    pub scanned_bytes: u64,
    /// Entries indexed in total.
    pub entries: u64,
    /// Sealed segments whose index file was missing or wrong and was rebuilt by a scan.
    pub rebuilt_indexes: Vec<(Position, String)>,
    /// Places where torn or corrupt data was cut.
    pub cuts: Vec<Cut>,
}

/// Applies recovered records to the vchannel states, checking offsets stay dense.
struct Rebuild {
    vchannels: VChannelMap,
    /// Entries below this position are already reflected in the checkpoint's vchannel states.
    covered: u64,
    from_checkpoint: Vec<VChannelId>,
}

impl Rebuild {
    fn apply(&mut self, r: &IdxRecord) -> Result<(), &'static str> {
        let id = VChannelId(r.vchannel);
        let v = self.vchannels.entry(id).or_insert_with(|| VChannel {
            log_start_offset: r.first_offset,
            log_end_offset: r.first_offset,
            ..VChannel::default()
        });
        if v.deleted {
            return Ok(());
        }
        if r.flags & EntryFlags::COPY != 0 {
            if v.entries.is_empty() && !self.from_checkpoint.contains(&id) {
                v.log_start_offset = v.log_start_offset.min(r.first_offset);
            }
            v.relocate(r);
            return Ok(());
        }
        if r.position >= self.covered && r.first_offset < v.log_end_offset {
            return Err("entry offsets overlap earlier entries of its vchannel");
        }
        if r.last_offset >= v.log_start_offset {
            v.push(r);
        } else {
            v.log_end_offset = v.log_end_offset.max(r.last_offset + 1);
        }
        Ok(())
    }
}

/// Result of scanning entries in one segment.
struct Scan {
    records: Vec<IdxRecord>,
    end: u64,
    stop: Option<&'static str>,
}

fn scan(seg: &Segment, from: u64, mut seq: Option<u64>, rb: &mut Rebuild) -> Scan {
    let limit = seg.len();
    let mut off = from;
    let mut records = Vec::new();
    let stop = loop {
        if off + HEADER_LEN as u64 > limit {
            break None;
        }
        let h = match EntryHeader::decode(seg.slice(off, HEADER_LEN as u64)) {
            Ok(h) => h,
            Err(HeaderError::Zero) => break None,
            Err(e) => break Some(e.reason()),
        };
        if off + h.entry_len() > limit {
            break Some("entry length runs past the end of the segment");
        }
        let mut enc = [0u8; HEADER_LEN];
        enc.copy_from_slice(seg.slice(off, HEADER_LEN as u64));
        if crc_of(
            &enc,
            &[seg.slice(off + HEADER_LEN as u64, u64::from(h.payload_len))],
        ) != h.crc
        {
            break Some("CRC mismatch");
        }
        if seq.is_some_and(|s| s != h.seq) {
            break Some("sequence number out of order");
        }
        let r = IdxRecord {
            vchannel: h.vchannel,
            first_offset: h.first_offset,
            last_offset: h.last_offset,
            max_timestamp: h.max_timestamp,
            position: seg.base + off,
            payload_len: h.payload_len,
            flags: h.flags,
            term: h.term,
            seq: h.seq,
        };
        if let Err(reason) = rb.apply(&r) {
            break Some(reason);
        }
        records.push(r);
        seq = Some(h.seq + 1);
        off += h.entry_len();
    };
    Scan {
        records,
        end: off,
        stop,
    }
}

/// Checks records loaded from an index file or checkpoint against the segment: contiguous
/// from the header to `end`, and the first and last headers on disk agree.
fn check_known(seg: &Segment, records: &[IdxRecord], end: u64) -> Result<(), String> {
    if end > seg.len() || end < SEGMENT_HEADER_LEN {
        return Err("index end lies outside the segment".into());
    }
    let mut off = SEGMENT_HEADER_LEN;
    for r in records {
        if r.position != seg.base.saturating_add(off) || !offsets_ok(r.first_offset, r.last_offset)
        {
            return Err(format!("index record at {} is not contiguous", r.position));
        }
        off += r.entry_len();
    }
    if off != end {
        return Err("index records do not end where the index says".into());
    }
    // Within one segment a vchannel's appended entries are dense (copies are exempt).
    let mut next: HashMap<u64, i64> = HashMap::new();
    for r in records.iter().filter(|r| r.flags & EntryFlags::COPY == 0) {
        if let Some(n) = next.insert(r.vchannel, r.last_offset + 1)
            && n != r.first_offset
        {
            return Err(format!(
                "index record at {} breaks its vchannel's offsets",
                r.position
            ));
        }
    }
    for r in [records.first(), records.last()].into_iter().flatten() {
        let h = EntryHeader::decode(seg.slice(r.position - seg.base, HEADER_LEN as u64))
            .map_err(|e| format!("index points at a bad header: {}", e.reason()))?;
        if (h.vchannel, h.first_offset, h.payload_len, h.seq)
            != (r.vchannel, r.first_offset, r.payload_len, r.seq)
        {
            return Err(format!("index disagrees with the entry at {}", r.position));
        }
    }
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut segs = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let e = e.map_err(|e| LogError::io(dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(e.path());
        } else if let Some(base) = parse_segment_name(name) {
            segs.push((base, e.path()));
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

/// Deletes the last segment file if it is a standby made ahead of a roll that never held an
/// entry (`seal.rs`): no valid entry at its first entry's place, no index file, and a segment
/// before it. Recovery then sees the log as it was before the standby was made, the segment
/// that was active at the crash last. Nothing durable is lost: an entry there is durable only
/// once a sync covered it, and a valid one would keep the file.
fn drop_unused_standby(dir: &Path, segs: &mut Vec<(u64, PathBuf)>) -> Result<(), LogError> {
    let [.., _, (base, path)] = segs.as_slice() else {
        return Ok(());
    };
    if index_path(dir, *base).exists() {
        return Ok(());
    }
    let file = fs::File::open(path).map_err(|e| LogError::io(path, e))?;
    let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    let mut enc = [0u8; HEADER_LEN];
    let holds_entry = file.read_exact_at(&mut enc, SEGMENT_HEADER_LEN).is_ok()
        && EntryHeader::decode(&enc).is_ok_and(|e| {
            let at = SEGMENT_HEADER_LEN + HEADER_LEN as u64;
            let mut payload = vec![0u8; e.payload_len as usize];
            at + u64::from(e.payload_len) <= len
                && file.read_exact_at(&mut payload, at).is_ok()
                && crc_of(&enc, &[&payload]) == e.crc
        });
    drop(file);
    if holds_entry {
        return Ok(());
    }
    fs::remove_file(path).map_err(|e| LogError::io(path, e))?;
    sync_dir(dir)?;
    segs.pop();
    Ok(())
}

/// Opens or creates the pchannel in `dir`.
pub(crate) fn open(dir: &Path, opts: PChannelOptions) -> Result<(Inner, RecoveryReport), LogError> {
    assert!(
        opts.segment_bytes > SEGMENT_HEADER_LEN + HEADER_LEN as u64,
        "segment_bytes too small"
    );
    fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
    let mut report = RecoveryReport::default();
    let ck = Checkpoint::load(dir).unwrap_or_else(|e| {
        report.checkpoint_error = Some(e);
        None
    });
    // A pchannel without segments (never written) stays without: the first append creates one.
    let mut segs = list_segments(dir)?;
    drop_unused_standby(dir, &mut segs)?;
    let spares = recycle::load_spares(dir, opts.recycle_segments)?;
    let mut rb = Rebuild {
        vchannels: VChannelMap::default(),
        covered: 0,
        from_checkpoint: Vec::new(),
    };
    if let Some(ck) = &ck {
        for v in &ck.vchannels {
            rb.from_checkpoint.push(v.id);
            rb.vchannels.insert(
                v.id,
                VChannel {
                    log_start_offset: v.log_start_offset,
                    log_end_offset: v.log_end_offset,
                    retention: v.retention,
                    deleted: v.deleted,
                    ..VChannel::default()
                },
            );
        }
        rb.covered = ck.position;
        rb.from_checkpoint.sort_unstable();
    }
    let mut slots: Vec<SegSlot> = Vec::new();
    let mut active_records = Vec::new();
    let mut next_seq = ck.as_ref().map_or(0, |c| c.next_seq);
    let mut ck_consistent = true;
    let mut prev_seq: Option<u64> = None;
    let n = segs.len();
    for (i, (base, path)) in segs.into_iter().enumerate() {
        let last = i + 1 == n;
        if slots.last().is_some_and(|prev| prev.end > base) {
            return Err(LogError::corrupt(
                &path,
                base,
                "segment overlaps the previous one",
            ));
        }
        let seg = Segment::open(
            path.clone(),
            base,
            if last { opts.segment_bytes } else { 0 },
        )?;
        if let Err(reason) = check_header(seg.slice(0, SEGMENT_HEADER_LEN.min(seg.len())), base) {
            if !last {
                return Err(LogError::corrupt(&path, base, reason));
            }
            let discarded = garbage_after(&seg, 0);
            // Cheaper than zeroing through the map, and it also clears stale bytes a recycled
            // file may hold past the first all-zero block.
            seg.discard_tail(0, opts.segment_bytes)?;
            seg.write_header()?;
            report.cuts.push(Cut {
                position: Position(base),
                discarded_bytes: discarded,
                reason: reason.into(),
            });
        }
        let idx = index_path(dir, base);
        let mut known: Option<(Vec<IdxRecord>, u64)> = None;
        let mut seq = prev_seq;
        // The checkpoint's records describe its active segment, which may no longer be the
        // last one: a standby made ahead of the roll (`seal.rs`) follows it. A sealed segment
        // that has its index file is read from that instead.
        let from_checkpoint = ck
            .as_ref()
            .filter(|c| c.active_base == base && (last || !idx.exists()));
        let mut scan_after_known = last;
        if let Some(c) = from_checkpoint {
            let end = c.position.saturating_sub(base);
            match check_known(&seg, &c.records, end) {
                Ok(()) => {
                    known = Some((c.records.clone(), end));
                    seq = Some(c.next_seq);
                    // Entries may follow the checkpoint in this segment.
                    scan_after_known = true;
                }
                Err(e) => {
                    report.checkpoint_error = Some(e);
                    ck_consistent = false;
                }
            }
        }
        if known.is_none() && idx.exists() {
            match read_index_file(&idx, base)
                .and_then(|(used, recs)| check_known(&seg, &recs, used).map(|_| (recs, used)))
            {
                Ok(k) => known = Some(k),
                Err(e) => report.rebuilt_indexes.push((Position(base), e)),
            }
        } else if known.is_none() && !last {
            report
                .rebuilt_indexes
                .push((Position(base), "index file missing".into()));
        }
        // A segment with no usable index is scanned whole (an index file may rightly be empty:
        // a rolled segment whose entries a crash took away).
        let scan_from_start = known.is_none();
        let (mut records, from) = known.unwrap_or((Vec::new(), SEGMENT_HEADER_LEN));
        for r in &records {
            // Known records were verified by CRC before they were indexed; a refusal here
            // means the index file is inconsistent, so that one entry is skipped.
            let _ = rb.apply(r);
        }
        let mut end = from;
        if scan_after_known || scan_from_start {
            let seq = records.last().map(|r| r.seq + 1).or(seq);
            let s = scan(&seg, from, seq, &mut rb);
            report.scanned_bytes += s.end - from;
            end = s.end;
            records.extend(s.records);
            if last && seg.recycled {
                // Stale bytes of the file's earlier life lie past the end (`recycle.rs`).
                let cut = recycle::end_recycled_tail(&seg, end, s.stop, opts.segment_bytes)?;
                report.cuts.extend(cut);
            } else {
                let discarded = garbage_after(&seg, end);
                if s.stop.is_some() || discarded > 0 {
                    let reason = s.stop.unwrap_or("non-zero bytes after the last entry");
                    report.cuts.push(Cut {
                        position: Position(base + end),
                        discarded_bytes: discarded,
                        reason: reason.into(),
                    });
                    if last {
                        seg.zero(end, discarded)?;
                        seg.flush(end, discarded)?;
                    }
                }
            }
            if !last {
                // A rolled segment whose seal was pending when the process died may hold
                // entries only in the page cache: make them durable before the index file
                // vouches for them (and before the durable position is set past them).
                seg.flush(0, end)?;
                write_index_file(dir, base, end, &records)?;
            }
        }
        if last && idx.exists() {
            fs::remove_file(&idx).map_err(|e| LogError::io(&idx, e))?;
        }
        if let Some(r) = records.last() {
            next_seq = next_seq.max(r.seq + 1);
            prev_seq = Some(r.seq + 1);
        }
        report.entries += records.len() as u64;
        if last {
            seg.flush(0, end)?;
            active_records = records;
        }
        slots.push(SegSlot {
            seg: Arc::new(seg),
            end: base + end,
        });
    }
    if !ck_consistent {
        // The checkpoint's end offsets may count entries that are gone: trust the entries.
        for v in rb.vchannels.values_mut() {
            if let Some(e) = v.entries.back() {
                v.log_end_offset = e.last_offset() + 1;
            }
        }
    }
    report.checkpoint_position = ck.as_ref().map(|c| Position(c.position));
    report.segments = slots.len();
    let (active, base, write_off) = match slots.last() {
        Some(s) => (Some(Arc::clone(&s.seg)), s.seg.base, s.end - s.seg.base),
        None => (None, ck.as_ref().map_or(0, |c| c.position), 0),
    };
    // Every segment but the active one was sealed before, or is sealed now (index rebuilt).
    for s in slots.iter().rev().skip(1) {
        s.seg.mark_sealed();
    }
    let durability = Arc::new(Durability::new(base + write_off));
    let sealer = Sealer::start(dir.to_path_buf(), Arc::clone(&durability), spares)?;
    let writer = Writer {
        active,
        base,
        write_off,
        next_seq,
        active_records,
        zeroed_to: 0,
        compaction_floor: ck.as_ref().map_or(0, |c| c.compaction_floor),
        // The next append asks for it if the active segment is far enough along.
        standby_requested: false,
        // Recovery flushed the active segment up to its end.
        writeback_from: write_off / FOLIO_MAX * FOLIO_MAX,
    };
    let inner = Inner {
        dir: dir.to_path_buf(),
        writeback: Writeback::start(opts.writeback_bytes),
        opts,
        writer: Mutex::new(writer),
        state: RwLock::new(State {
            segments: slots,
            vchannels: rb.vchannels,
        }),
        durability,
        sealer,
        ck_lock: Mutex::new(()),
        ck_position: AtomicU64::new(ck.as_ref().map_or(0, |c| c.position)),
        closed: AtomicBool::new(false),
    };
    Ok((inner, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::crc_of;

    fn record(v: u64, first: i64, last: i64, position: u64, len: u32, seq: u64) -> IdxRecord {
        IdxRecord {
            vchannel: v,
            first_offset: first,
            last_offset: last,
            max_timestamp: 0,
            position,
            payload_len: len,
            flags: 0,
            term: 1,
            seq,
        }
    }

    /// Writes entries with the given (vchannel, first, last, len) into a fresh segment.
    fn segment_with(dir: &Path, entries: &[(u64, i64, i64, u32)]) -> (Segment, Vec<IdxRecord>) {
        let seg = Segment::create(dir, 0, 1 << 16).unwrap();
        let mut off = SEGMENT_HEADER_LEN;
        let mut recs = Vec::new();
        for (seq, &(v, first, last, len)) in entries.iter().enumerate() {
            let mut h = EntryHeader {
                crc: 0,
                payload_len: len,
                flags: 0,
                vchannel: v,
                first_offset: first,
                last_offset: last,
                max_timestamp: 0,
                term: 1,
                seq: seq as u64,
            };
            let payload = vec![seq as u8 + 1; len as usize];
            h.crc = crc_of(&h.encode(), &[&payload]);
            seg.write(off, &[&h.encode(), &payload]).unwrap();
            recs.push(record(v, first, last, off, len, seq as u64));
            off += h.entry_len();
        }
        (seg, recs)
    }

    fn rebuild() -> Rebuild {
        Rebuild {
            vchannels: VChannelMap::default(),
            covered: 0,
            from_checkpoint: Vec::new(),
        }
    }

    #[test]
    fn scan_stops_at_zero_header_and_at_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, recs) = segment_with(dir.path(), &[(1, 0, 4, 10), (2, 0, 0, 20), (1, 5, 5, 30)]);
        let s = scan(&seg, SEGMENT_HEADER_LEN, Some(0), &mut rebuild());
        assert_eq!(s.records, recs);
        assert_eq!(s.stop, None);
        assert_eq!(s.end, SEGMENT_HEADER_LEN + 3 * 64 + 60);
        // An entry repeating offsets of its vchannel is refused.
        let (seg, _) = segment_with(dir.path(), &[(1, 0, 4, 10), (1, 3, 6, 10)]);
        let s = scan(&seg, SEGMENT_HEADER_LEN, None, &mut rebuild());
        assert_eq!(s.records.len(), 1);
        assert_eq!(
            s.stop,
            Some("entry offsets overlap earlier entries of its vchannel")
        );
        // A wrong starting sequence number is refused.
        let s = scan(&seg, SEGMENT_HEADER_LEN, Some(5), &mut rebuild());
        assert_eq!(s.stop, Some("sequence number out of order"));
    }

    #[test]
    fn known_records_are_checked_against_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, recs) = segment_with(dir.path(), &[(1, 0, 4, 10), (2, 0, 0, 20), (1, 5, 5, 30)]);
        let end = SEGMENT_HEADER_LEN + 3 * 64 + 60;
        check_known(&seg, &recs, end).unwrap();
        assert!(check_known(&seg, &recs, end + 1).is_err());
        let mut bad = recs.clone();
        bad[2].first_offset = 6;
        bad[2].last_offset = 6;
        assert!(
            check_known(&seg, &bad, end)
                .unwrap_err()
                .contains("offsets")
        );
        let mut bad = recs.clone();
        bad[2].seq = 9;
        assert!(
            check_known(&seg, &bad, end)
                .unwrap_err()
                .contains("disagrees")
        );
        assert_eq!(garbage_after(&seg, end), 0);
        seg.write(end + 100, &[b"junk"]).unwrap();
        assert_eq!(garbage_after(&seg, end), crate::segment::PROBE_CHUNK - end);
    }
}
