//! The read path: offset and timestamp lookups through the index, and zero-copy reads of a
//! vchannel's entries as `Bytes` slices of the segment maps.

use bytes::Bytes;

use crate::entry::{EntryHeader, HEADER_LEN, crc_of};
use crate::error::LogError;
use crate::index::{VChannel, VEntry};
use crate::pchannel::{PChannel, State};
use crate::types::{EntryFlags, Position, ReadEntry, Term, TimestampHit, VChannelId};

impl PChannel {
    /// Reads entries of `vchannel` starting with the one containing `offset`, up to `max_bytes`
    /// of payload but always at least one whole entry. Reading at `log_end_offset` returns no
    /// entries; below `log_start_offset` or past the end is `OffsetOutOfRange`. A never-written
    /// vchannel reads as empty at offset 0.
    pub fn read(
        &self,
        vchannel: VChannelId,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<ReadEntry>, LogError> {
        let st = self.inner.state.read();
        let Some((v, i)) = locate(&st, vchannel, offset)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        for e in v.entries.range(i..) {
            if !out.is_empty() && total + e.payload_len as usize > max_bytes {
                break;
            }
            total += e.payload_len as usize;
            match load(&st, vchannel, e, self.inner.opts.verify_reads) {
                Ok(r) => out.push(r),
                // Hand out the good entries first; the next read reports the damage.
                Err(_) if !out.is_empty() => break,
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    /// Position of the entry of `vchannel` containing `offset` (the index lookup alone).
    pub fn position_of(
        &self,
        vchannel: VChannelId,
        offset: i64,
    ) -> Result<Option<Position>, LogError> {
        let st = self.inner.state.read();
        Ok(locate(&st, vchannel, offset)?.map(|(v, i)| Position(v.entries[i].position)))
    }

    /// The first entry of `vchannel` whose max timestamp is at least `timestamp` (Kafka
    /// ListOffsets by time; the caller then finds the exact record inside the entry).
    pub fn lookup_timestamp(&self, vchannel: VChannelId, timestamp: i64) -> Option<TimestampHit> {
        let st = self.inner.state.read();
        let v = st.vchannels.get(&vchannel).filter(|v| !v.deleted)?;
        v.find_timestamp(timestamp).map(|i| hit(&v.entries[i]))
    }

    /// The first entry holding the largest max timestamp of `vchannel` (ListOffsets
    /// MAX_TIMESTAMP, KIP-734).
    pub fn max_timestamp_entry(&self, vchannel: VChannelId) -> Option<TimestampHit> {
        let st = self.inner.state.read();
        let v = st.vchannels.get(&vchannel).filter(|v| !v.deleted)?;
        let max = v.entries.back()?.running_max_ts;
        v.find_timestamp(max).map(|i| hit(&v.entries[i]))
    }
}

fn hit(e: &VEntry) -> TimestampHit {
    TimestampHit {
        first_offset: e.first_offset,
        last_offset: e.last_offset(),
        max_timestamp: e.max_timestamp,
    }
}

/// Finds the vchannel and the index of the entry containing `offset`; `None` at the log end.
fn locate(
    st: &State,
    vchannel: VChannelId,
    offset: i64,
) -> Result<Option<(&VChannel, usize)>, LogError> {
    let Some(v) = st.vchannels.get(&vchannel) else {
        if offset == 0 {
            return Ok(None);
        }
        return Err(LogError::OffsetOutOfRange {
            vchannel,
            offset,
            log_start_offset: 0,
            log_end_offset: 0,
        });
    };
    if v.deleted {
        return Err(LogError::VChannelDeleted(vchannel));
    }
    if offset < v.log_start_offset || offset > v.log_end_offset {
        return Err(LogError::OffsetOutOfRange {
            vchannel,
            offset,
            log_start_offset: v.log_start_offset,
            log_end_offset: v.log_end_offset,
        });
    }
    Ok(v.find(offset).map(|i| (v, i)))
}

/// Builds the `ReadEntry` of an index entry, checking the header on disk agrees with the index.
fn load(st: &State, vchannel: VChannelId, e: &VEntry, verify: bool) -> Result<ReadEntry, LogError> {
    let pos = e.position;
    let Some(si) = st.segment_of(pos) else {
        return Err(LogError::corrupt(
            "",
            pos,
            "index points outside every segment",
        ));
    };
    let slot = &st.segments[si];
    let off = pos - slot.seg.base;
    let len = HEADER_LEN as u64 + u64::from(e.payload_len);
    if pos + len > slot.end {
        return Err(LogError::corrupt(
            &slot.seg.path,
            pos,
            "indexed entry runs past the segment's end",
        ));
    }
    let h = EntryHeader::decode(slot.seg.slice(off, HEADER_LEN as u64))
        .map_err(|err| LogError::corrupt(&slot.seg.path, pos, err.reason()))?;
    if h.vchannel != vchannel.0
        || h.first_offset != e.first_offset
        || h.payload_len != e.payload_len
    {
        return Err(LogError::corrupt(
            &slot.seg.path,
            pos,
            "entry header disagrees with the index",
        ));
    }
    if verify {
        let mut enc = [0u8; HEADER_LEN];
        enc.copy_from_slice(slot.seg.slice(off, HEADER_LEN as u64));
        let body = slot
            .seg
            .slice(off + HEADER_LEN as u64, u64::from(h.payload_len));
        if crc_of(&enc, &[body]) != h.crc {
            return Err(LogError::corrupt(&slot.seg.path, pos, "CRC mismatch"));
        }
    }
    let payload: Bytes = slot
        .seg
        .bytes(off + HEADER_LEN as u64, u64::from(h.payload_len));
    Ok(ReadEntry {
        first_offset: h.first_offset,
        last_offset: h.last_offset,
        max_timestamp: h.max_timestamp,
        flags: EntryFlags(h.flags & EntryFlags::CALLER_MASK),
        term: Term(h.term),
        position: Position(pos),
        payload,
    })
}
