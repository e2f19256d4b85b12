//! The write path: validate a group of entries, write them into the active segment with one
//! `pwritev` per group (per segment), roll to a new segment when full, publish them to readers,
//! then group-commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::entry::{EntryHeader, HEADER_LEN, MAX_PAYLOAD, crc_of, offsets_ok};
use crate::error::LogError;
use crate::index::IdxRecord;
use crate::pchannel::{Inner, PChannel, SegSlot, Writer};
use crate::seal::{self, SealJob};
use crate::segment::{END_MARK_LEN, PAGE, SEGMENT_HEADER_LEN, Segment};
use crate::types::{AppendOutcome, EntryFlags, EntryRef, Position, SyncPolicy, VChannelId};

impl PChannel {
    /// Appends a group of entries, in order, and returns their positions.
    ///
    /// Each entry's `first_offset` must be its vchannel's `log_end_offset` (offsets are dense);
    /// the whole group is validated before anything is written. Under `SyncPolicy::Always` this
    /// returns after the group is durable; otherwise call [`PChannel::wait_durable`] with
    /// `outcome.end` when durability is needed.
    pub fn append(&self, entries: &[EntryRef<'_>]) -> Result<AppendOutcome, LogError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return Err(LogError::Closed);
        }
        let mut w = inner.writer.lock();
        validate(inner, entries)?;
        let mut records = Vec::with_capacity(entries.len());
        let mut positions = Vec::with_capacity(entries.len());
        let mut batch = Batch::with_capacity(entries.len());
        let mut res = Ok(());
        for e in entries {
            let parts = [e.prefix, e.rest];
            let payload_len = (e.prefix.len() + e.rest.len()) as u32;
            let header = EntryHeader {
                crc: 0,
                payload_len,
                flags: e.flags.0,
                vchannel: e.vchannel.0,
                first_offset: e.first_offset,
                last_offset: e.last_offset,
                max_timestamp: e.max_timestamp,
                term: e.term.0,
                seq: 0,
            };
            match write_entry(inner, &mut w, header, &parts, &mut records, &mut batch) {
                Ok(pos) => positions.push(Position(pos)),
                Err(err) => {
                    res = Err(err);
                    break;
                }
            }
        }
        if let Err(err) = write_batch(&mut w, &mut batch, &mut records) {
            res = res.and(Err(err));
        }
        // Whatever was written is published, so the segment and the index never disagree.
        publish(inner, &mut w, &records);
        let end = w.end_position();
        drop(w);
        res?;
        if inner.opts.sync_policy == SyncPolicy::Always {
            inner.wait_durable(Position(end))?;
        }
        Ok(AppendOutcome {
            positions,
            end: Position(end),
        })
    }
}

fn validate(inner: &Inner, entries: &[EntryRef<'_>]) -> Result<(), LogError> {
    let st = inner.state.read();
    // Next offsets of vchannels seen earlier in this group.
    let mut next: Vec<(VChannelId, i64)> = Vec::new();
    let max_entry = inner.opts.segment_bytes.saturating_sub(SEGMENT_HEADER_LEN);
    for e in entries {
        let v = e.vchannel;
        if e.flags.0 & !EntryFlags::CALLER_MASK != 0 {
            return Err(LogError::InvalidEntry {
                vchannel: v,
                reason: "reserved flag bits set",
            });
        }
        if !offsets_ok(e.first_offset, e.last_offset) {
            return Err(LogError::InvalidEntry {
                vchannel: v,
                reason: "offsets negative, reversed or more than u32::MAX apart",
            });
        }
        let payload = (e.prefix.len() + e.rest.len()) as u64;
        let size = payload + HEADER_LEN as u64;
        if payload > MAX_PAYLOAD || size > max_entry {
            return Err(LogError::EntryTooLarge {
                size,
                segment_bytes: inner.opts.segment_bytes,
            });
        }
        let expected = match next.iter_mut().find(|(id, _)| *id == v) {
            Some((_, n)) => *n,
            None => match st.vchannels.get(&v) {
                Some(vc) if vc.deleted => return Err(LogError::VChannelDeleted(v)),
                Some(vc) => vc.log_end_offset,
                None => 0,
            },
        };
        if e.first_offset != expected {
            return Err(LogError::OffsetMismatch {
                vchannel: v,
                expected,
                got: e.first_offset,
            });
        }
        match next.iter_mut().find(|(id, _)| *id == v) {
            Some((_, n)) => *n = e.last_offset + 1,
            None => next.push((v, e.last_offset + 1)),
        }
    }
    Ok(())
}

/// Entries placed at the writer's position but not written yet: [`write_batch`] writes them
/// with one `pwritev` (see `Segment::write` for why not through the map).
pub(crate) struct Batch<'a> {
    /// File offset of the first entry in the active segment.
    start: u64,
    headers: Vec<[u8; HEADER_LEN]>,
    /// Per entry: its header (`None`, from `headers` in order) then its parts.
    pieces: Vec<Option<&'a [u8]>>,
}

impl<'a> Batch<'a> {
    pub(crate) fn with_capacity(entries: usize) -> Batch<'a> {
        Batch {
            start: 0,
            headers: Vec::with_capacity(entries),
            pieces: Vec::with_capacity(3 * entries),
        }
    }
}

/// Zeros for the end mark and its padding (at most a page past an end mark).
static ZEROS: [u8; (PAGE + END_MARK_LEN) as usize] = [0; (PAGE + END_MARK_LEN) as usize];

/// Places one entry at the writer's position and adds its record to `pending`; fills in the
/// sequence number and CRC. If the entry does not fit, the batch is written, `pending`
/// published and the segment rolled first. The entry is not in the file until [`write_batch`]
/// and not visible to readers until [`publish`]. Returns its position.
pub(crate) fn write_entry<'a>(
    inner: &Inner,
    w: &mut Writer,
    mut header: EntryHeader,
    parts: &[&'a [u8]],
    pending: &mut Vec<IdxRecord>,
    batch: &mut Batch<'a>,
) -> Result<u64, LogError> {
    let len = header.entry_len();
    let fits = w
        .active
        .as_ref()
        .is_some_and(|a| w.write_off + len <= a.len());
    if !fits {
        if w.active.is_some() {
            write_batch(w, batch, pending)?;
            publish(inner, w, pending);
            pending.clear();
            roll(inner, w)?;
        } else {
            start_segment(inner, w, w.base)?;
        }
    }
    let active = w.active.as_ref().expect("a segment was just started");
    header.seq = w.next_seq;
    let mut enc = header.encode();
    header.crc = crc_of(&enc, parts);
    enc[0..4].copy_from_slice(&header.crc.to_le_bytes());
    let off = w.write_off;
    if batch.headers.is_empty() {
        batch.start = off;
    }
    batch.headers.push(enc);
    batch.pieces.push(None);
    batch.pieces.extend(parts.iter().map(|p| Some(*p)));
    w.write_off += len;
    w.next_seq += 1;
    pending.push(IdxRecord {
        vchannel: header.vchannel,
        first_offset: header.first_offset,
        last_offset: header.last_offset,
        max_timestamp: header.max_timestamp,
        position: active.base + off,
        payload_len: header.payload_len,
        flags: header.flags,
        term: header.term,
        seq: header.seq,
    });
    Ok(active.base + off)
}

/// Writes the batch's entries (the last `batch.headers.len()` records of `pending`) into the
/// active segment with one `pwritev`, followed in a recycled segment by the zero end mark.
/// On failure those entries are withdrawn: their records leave `pending` and the writer's
/// position and `seq` go back, so nothing unwritten is published.
pub(crate) fn write_batch(
    w: &mut Writer,
    batch: &mut Batch<'_>,
    pending: &mut Vec<IdxRecord>,
) -> Result<(), LogError> {
    let n = batch.headers.len();
    if n == 0 {
        return Ok(());
    }
    let active = Arc::clone(w.active.as_ref().expect("a batch needs an active segment"));
    let mut headers = batch.headers.iter();
    let mut slices: Vec<&[u8]> = batch
        .pieces
        .iter()
        .map(|p| p.unwrap_or_else(|| headers.next().expect("one header per entry")))
        .collect();
    let end = w.write_off;
    let mut zeroed_to = w.zeroed_to;
    if active.recycled && end + END_MARK_LEN > zeroed_to {
        // Stale bytes follow: a zero header after the last entry (see `recycle.rs`). Padded
        // to the page end, so the write ends on a page boundary: a page of a cold spare is
        // not read from the disk before being overwritten (only the page a group starts in
        // can be, if it left the page cache since the previous group wrote it), and later
        // groups that end before `zeroed_to` find their end mark already in place.
        zeroed_to = (end + END_MARK_LEN)
            .next_multiple_of(PAGE)
            .min(active.len());
        slices.push(&ZEROS[..(zeroed_to - end) as usize]);
    }
    let res = active.write(batch.start, &slices);
    drop(slices);
    match res {
        Ok(()) => w.zeroed_to = zeroed_to,
        Err(_) => {
            // Part of the batch may have reached the page cache: whole entries with the
            // `seq`s the next entries will take. Zeroed (best effort), so a scan cannot
            // pick them up behind a shorter retry.
            let _ = active.zero(batch.start, zeroed_to.max(end) - batch.start);
            w.write_off = batch.start;
            w.next_seq -= n as u64;
            w.zeroed_to = 0;
            pending.truncate(pending.len() - n);
        }
    }
    batch.headers.clear();
    batch.pieces.clear();
    res
}

/// Makes written records visible: index entries, segment end, written watermark; then hands
/// the folios now behind the write head to early writeback.
pub(crate) fn publish(inner: &Inner, w: &mut Writer, records: &[IdxRecord]) {
    {
        let mut st = inner.state.write();
        for r in records {
            let v = st.vchannels.entry(VChannelId(r.vchannel)).or_default();
            if r.flags & EntryFlags::COPY != 0 {
                v.relocate(r);
            } else {
                v.push(r);
            }
        }
        let end = w.end_position();
        if let Some(last) = st.segments.last_mut() {
            last.end = end;
        }
    }
    w.active_records.extend_from_slice(records);
    if !w.standby_requested
        && let Some(active) = &w.active
        && w.write_off >= active.len() / 4 * 3
    {
        w.standby_requested = true;
        inner.sealer.request_standby(
            active.base + active.len(),
            inner.opts.segment_bytes,
            w.next_seq,
        );
    }
    // Under the writer lock, so a checkpoint never claims a position sync has not covered.
    inner.durability.set_written(w.end_position());
    if let Some(wb) = &inner.writeback {
        wb.after_write(w);
    }
}

/// Rolls to the next segment, at the active one's base plus its capacity (a fixed stride, so
/// the segment thread can make it ahead: `seal.rs`), and hands the old one to the segment
/// thread to seal. With the standby ready the writer does no disk I/O here.
pub(crate) fn roll(inner: &Inner, w: &mut Writer) -> Result<(), LogError> {
    let used = w.write_off;
    let old = Arc::clone(w.active.as_ref().expect("roll needs an active segment"));
    let base = old.base + old.len();
    let seg = match inner.sealer.take_standby(base) {
        Some(seg) => seg,
        None => new_segment(inner, w, base)?,
    };
    let records = std::mem::take(&mut w.active_records);
    install(inner, w, seg);
    inner.sealer.submit(SealJob {
        seg: old,
        used,
        records,
    });
    Ok(())
}

/// Starts the first segment, at `base`.
fn start_segment(inner: &Inner, w: &mut Writer, base: u64) -> Result<(), LogError> {
    let seg = new_segment(inner, w, base)?;
    install(inner, w, seg);
    Ok(())
}

/// The segment with base `base`, made here: a recycled spare if one is usable, else a new file.
fn new_segment(inner: &Inner, w: &Writer, base: u64) -> Result<Segment, LogError> {
    let spare = inner.sealer.take_spare(w.next_seq);
    seal::make_segment(&inner.dir, spare, base, inner.opts.segment_bytes)
}

/// Makes `seg` the active segment.
fn install(inner: &Inner, w: &mut Writer, seg: Segment) {
    let seg = Arc::new(seg);
    let base = seg.base;
    inner.state.write().segments.push(SegSlot {
        seg: Arc::clone(&seg),
        end: base + SEGMENT_HEADER_LEN,
    });
    w.standby_requested = false;
    w.active = Some(seg);
    w.base = base;
    w.write_off = SEGMENT_HEADER_LEN;
    w.active_records.clear();
    w.zeroed_to = 0;
    w.writeback_from = 0;
}
