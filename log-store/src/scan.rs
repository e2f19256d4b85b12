//! Replay by position: the live entries of every vchannel, in log order, from a position on.
//!
//! It serves owners of per-pchannel state derived from the entries (the broker's
//! idempotent-producer state and transaction index): they snapshot that state at a known
//! position and, on open, rebuild it by replaying what follows, instead of reading every
//! vchannel from its start.

use crate::entry::{EntryHeader, HEADER_LEN, crc_of};
use crate::error::LogError;
use crate::pchannel::{PChannel, State};
use crate::segment::SEGMENT_HEADER_LEN;
use crate::types::{EntryFlags, Position, ReadEntry, Term, VChannelId};

/// One entry returned by [`PChannel::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// The vchannel the entry belongs to.
    pub vchannel: VChannelId,
    /// The entry, as [`PChannel::read`] returns it.
    pub entry: ReadEntry,
    /// The entry is a copy written by compaction: its offsets were appended earlier, at a
    /// position since reclaimed, and it now lives here. A replay that has already applied
    /// those offsets (from a snapshot) skips it.
    pub compaction_copy: bool,
}

/// What one call of [`PChannel::scan`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBatch {
    /// Entries in log order.
    pub entries: Vec<ScanEntry>,
    /// Where the next call continues: the next live entry, or the end of the log.
    pub next_position: Position,
    /// The batch reached the end of the log (`entries` may still hold entries): nothing more
    /// to replay for now.
    pub at_end: bool,
}

impl PChannel {
    /// The live entries of every vchannel in log (position) order, starting with the first
    /// entry at or after `from`, up to `max_bytes` of payload but at least one entry.
    ///
    /// Skipped: entries of deleted vchannels, entries wholly below their vchannel's
    /// `log_start_offset`, and originals that compaction copied forward (their copy comes
    /// later, flagged [`ScanEntry::compaction_copy`]), so every live entry appears exactly once.
    /// Continue with [`ScanBatch::next_position`] until [`ScanBatch::at_end`]. Dead entries
    /// are walked past (their headers only) under the state read lock, which holds up the
    /// writer's publishing meanwhile; `next_position` is always a live entry or the end, so
    /// a continuation starts without a walk.
    ///
    /// Snapshots: take the state at `p = end_position()` while no append runs, make `p`
    /// durable (`wait_durable`/`sync`), then write the snapshot; on open, replay
    /// `scan(p, ..)`. A snapshot whose position is past [`PChannel::end_position`] (entries
    /// lost or truncated after it was taken) must be discarded. Positions are never reused,
    /// except by [`PChannel::truncate_after`]: a snapshot above a truncation point is void.
    pub fn scan(&self, from: Position, max_bytes: usize) -> Result<ScanBatch, LogError> {
        let st = self.inner.state.read();
        let verify = self.inner.opts.verify_reads;
        let mut out = ScanBatch {
            entries: Vec::new(),
            next_position: from,
            at_end: false,
        };
        let Some(mut si) = st.segments.iter().position(|s| s.end > from.0) else {
            out.at_end = true;
            out.next_position = from.max(st.segments.last().map_or(from, |s| Position(s.end)));
            return Ok(out);
        };
        let mut pos = start_in(&st, si, from.0)?;
        let mut total = 0usize;
        loop {
            let slot = &st.segments[si];
            if pos >= slot.end {
                si += 1;
                match st.segments.get(si) {
                    Some(next) => {
                        pos = next.seg.base + SEGMENT_HEADER_LEN;
                        continue;
                    }
                    None => {
                        out.at_end = true;
                        break;
                    }
                }
            }
            let h = header_at(&st, si, pos)?;
            let len = h.entry_len();
            if !is_live(&st, &h, pos) {
                pos += len;
                continue;
            }
            if !out.entries.is_empty() && total + h.payload_len as usize > max_bytes {
                break;
            }
            match entry_at(&st, si, pos, &h, verify) {
                Ok(e) => out.entries.push(e),
                // Hand out the good entries first; the next call reports the damage.
                Err(_) if !out.entries.is_empty() => break,
                Err(err) => return Err(err),
            }
            total += h.payload_len as usize;
            pos += len;
        }
        out.next_position = Position(pos);
        Ok(out)
    }

    /// Position covered by the newest checkpoint (written or loaded at open): every entry
    /// below it is durable, and open scans only what follows it.
    pub fn checkpoint_position(&self) -> Position {
        Position(
            self.inner
                .ck_position
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }
}

/// Position of the first entry at or after `from` in segment `si` (or its end).
fn start_in(st: &State, si: usize, from: u64) -> Result<u64, LogError> {
    let slot = &st.segments[si];
    let first = slot.seg.base + SEGMENT_HEADER_LEN;
    if from <= first {
        return Ok(first);
    }
    // The usual case: `from` is where an earlier batch stopped, the start of a live entry.
    if let Ok(h) = header_at(st, si, from)
        && is_live(st, &h, from)
    {
        return Ok(from);
    }
    // Otherwise walk the segment's headers (its entries are contiguous from the header on).
    let mut pos = first;
    while pos < from && pos < slot.end {
        pos += header_at(st, si, pos)?.entry_len();
    }
    Ok(pos)
}

/// The entry header at `pos` of segment `si`, checked to fit before the segment's end.
fn header_at(st: &State, si: usize, pos: u64) -> Result<EntryHeader, LogError> {
    let slot = &st.segments[si];
    let seg = &slot.seg;
    if pos + HEADER_LEN as u64 > slot.end {
        return Err(LogError::corrupt(
            &seg.path,
            pos,
            "entry header runs past the segment's end",
        ));
    }
    let h = EntryHeader::decode(seg.slice(pos - seg.base, HEADER_LEN as u64))
        .map_err(|e| LogError::corrupt(&seg.path, pos, e.reason()))?;
    if pos + h.entry_len() > slot.end {
        return Err(LogError::corrupt(
            &seg.path,
            pos,
            "entry runs past the segment's end",
        ));
    }
    Ok(h)
}

/// Whether the index holds the entry with header `h` at `pos`: its vchannel is live, its
/// offsets are not below the log start, and compaction has not moved it elsewhere.
fn is_live(st: &State, h: &EntryHeader, pos: u64) -> bool {
    let Some(v) = st.vchannels.get(&VChannelId(h.vchannel)) else {
        return false;
    };
    if v.deleted {
        return false;
    }
    v.find(h.first_offset)
        .map(|i| &v.entries[i])
        .is_some_and(|e| e.first_offset == h.first_offset && e.position == pos)
}

/// Builds the [`ScanEntry`] at `pos`, checking the CRC when `verify`.
fn entry_at(
    st: &State,
    si: usize,
    pos: u64,
    h: &EntryHeader,
    verify: bool,
) -> Result<ScanEntry, LogError> {
    let seg = &st.segments[si].seg;
    let off = pos - seg.base;
    let body_off = off + HEADER_LEN as u64;
    let body_len = u64::from(h.payload_len);
    if verify {
        let mut enc = [0u8; HEADER_LEN];
        enc.copy_from_slice(seg.slice(off, HEADER_LEN as u64));
        if crc_of(&enc, &[seg.slice(body_off, body_len)]) != h.crc {
            return Err(LogError::corrupt(&seg.path, pos, "CRC mismatch"));
        }
    }
    Ok(ScanEntry {
        vchannel: VChannelId(h.vchannel),
        entry: ReadEntry {
            first_offset: h.first_offset,
            last_offset: h.last_offset,
            max_timestamp: h.max_timestamp,
            flags: EntryFlags(h.flags & EntryFlags::CALLER_MASK),
            term: Term(h.term),
            position: Position(pos),
            payload: seg.bytes(body_off, body_len),
        },
        compaction_copy: h.flags & EntryFlags::COPY != 0,
    })
}
