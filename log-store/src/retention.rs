//! Retention: per-vchannel time and size limits move `log_start_offset`; sealed segments with
//! no live entry left are deleted; sealed segments kept alive by only a little live data are
//! compacted by copying those entries forward into the active segment (offsets are kept, only
//! positions change) and then deleted.

use std::sync::Arc;

use crate::append::{Batch, publish, write_batch, write_entry};
use crate::entry::{EntryHeader, HEADER_LEN};
use crate::error::LogError;
use crate::pchannel::{PChannel, State};
use crate::recycle;
use crate::segment::{Segment, sync_dir};
use crate::types::{EntryFlags, Position, VChannelId};

/// What [`PChannel::enforce_retention`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Vchannels whose `log_start_offset` moved, with the new value.
    pub log_start_offsets: Vec<(VChannelId, i64)>,
    /// Base positions of the segments deleted.
    pub segments_deleted: Vec<Position>,
    /// Base positions of the segments whose live entries were copied forward.
    pub segments_compacted: Vec<Position>,
    /// Bytes (headers included) copied by compaction.
    pub bytes_copied: u64,
}

/// Live bytes (headers included) per segment, in `st.segments` order.
fn live_bytes(st: &State) -> Vec<u64> {
    let mut live = vec![0u64; st.segments.len()];
    for v in st.vchannels.values() {
        for e in &v.entries {
            if let Some(i) = st.segment_of(e.position) {
                live[i] += HEADER_LEN as u64 + u64::from(e.payload_len);
            }
        }
    }
    live
}

/// New log start offset of a vchannel under its retention settings.
fn retained_start(v: &crate::index::VChannel, now_ms: i64) -> i64 {
    let mut start = v.log_start_offset;
    let mut bytes = v.payload_bytes;
    for e in &v.entries {
        let expired = v
            .retention
            .ms
            .is_some_and(|ms| e.max_timestamp < now_ms.saturating_sub(ms));
        let oversize = v.retention.bytes.is_some_and(|b| bytes > b);
        if !expired && !oversize {
            break;
        }
        bytes -= u64::from(e.payload_len);
        start = e.last_offset() + 1;
    }
    start
}

impl PChannel {
    /// One retention pass at wall-clock `now_ms`: applies every vchannel's retention, compacts
    /// sparse sealed segments, makes the result durable with a checkpoint, then deletes sealed
    /// segments that hold no live entry.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, LogError> {
        let inner = &*self.inner;
        let mut report = RetentionReport::default();
        // Segments rolled before this pass count as sealed in it (a pending seal is short).
        inner.sealer.wait_idle();
        {
            let mut w = inner.writer.lock();
            let mut copies = Vec::new();
            {
                let mut st = inner.state.write();
                for (id, v) in st.vchannels.iter_mut() {
                    if v.deleted {
                        continue;
                    }
                    let start = retained_start(v, now_ms);
                    if start > v.log_start_offset {
                        v.drop_before(start);
                        report.log_start_offsets.push((*id, start));
                    }
                }
                report.log_start_offsets.sort_unstable();
                let ratio = inner.opts.compact_live_ratio;
                if ratio > 0.0 {
                    let live = live_bytes(&st);
                    let sealed = st.segments.len().saturating_sub(1);
                    let sparse: Vec<usize> = (0..sealed)
                        .filter(|&i| {
                            let size = st.segments[i].end - st.segments[i].seg.base;
                            live[i] > 0 && (live[i] as f64) <= ratio * size as f64
                        })
                        .collect();
                    for (id, v) in &st.vchannels {
                        for e in &v.entries {
                            if let Some(i) =
                                st.segment_of(e.position).filter(|i| sparse.contains(i))
                            {
                                copies.push((e.position, *id, Arc::clone(&st.segments[i].seg)));
                            }
                        }
                    }
                    report.segments_compacted = sparse
                        .iter()
                        .map(|&i| Position(st.segments[i].seg.base))
                        .collect();
                }
            }
            copies.sort_unstable_by_key(|c| c.0);
            let mut pending = Vec::new();
            for (pos, id, seg) in copies {
                let res = copy_entry(inner, &mut w, &seg, pos, id, &mut pending);
                if let Err(e) = res {
                    publish(inner, &mut w, &pending);
                    return Err(e);
                }
                report.bytes_copied += pending.last().map_or(0, |r| r.entry_len());
            }
            publish(inner, &mut w, &pending);
            if report.bytes_copied > 0 {
                w.compaction_floor = w.end_position();
            }
        }
        inner.checkpoint()?;
        report.segments_deleted = self.delete_dead_segments()?;
        Ok(report)
    }

    /// Deletes sealed segments without live entries (keeping up to `recycle_segments` of
    /// their files as spares); returns their bases.
    fn delete_dead_segments(&self) -> Result<Vec<Position>, LogError> {
        let inner = &*self.inner;
        let w = inner.writer.lock();
        let dead: Vec<Arc<Segment>> = {
            let mut st = inner.state.write();
            let live = live_bytes(&st);
            let Some(last) = st.segments.len().checked_sub(1) else {
                return Ok(Vec::new());
            };
            // A segment is deleted only once the one after it is sealed. Recovery scans a
            // segment that has no index file yet (a pending seal, or the active segment)
            // checking that its first entry's `seq` follows the previous segment's last one,
            // so that previous segment must still be there (`seal.rs`).
            let successor_sealed: Vec<bool> = (0..=last)
                .map(|i| st.segments.get(i + 1).is_some_and(|n| n.seg.is_sealed()))
                .collect();
            let mut i = 0;
            let mut dead = Vec::new();
            st.segments.retain(|s| {
                let keep = i == last || live[i] > 0 || !s.seg.is_sealed() || !successor_sealed[i];
                if !keep {
                    dead.push(Arc::clone(&s.seg));
                }
                i += 1;
                keep
            });
            dead
        };
        let bases: Vec<Position> = dead.iter().map(|s| Position(s.base)).collect();
        let keep = inner.opts.recycle_segments;
        for seg in dead {
            recycle::retire(&inner.dir, &inner.sealer, w.next_seq, seg, keep)?;
        }
        if !bases.is_empty() {
            sync_dir(&inner.dir)?;
        }
        Ok(bases)
    }
}

/// Copies the entry at `pos` of `seg` to the writer's position, flagged as a compaction copy.
fn copy_entry(
    inner: &crate::pchannel::Inner,
    w: &mut crate::pchannel::Writer,
    seg: &Segment,
    pos: u64,
    id: VChannelId,
    pending: &mut Vec<crate::index::IdxRecord>,
) -> Result<(), LogError> {
    let off = pos - seg.base;
    let mut h = EntryHeader::decode(seg.slice(off, HEADER_LEN as u64))
        .map_err(|e| LogError::corrupt(&seg.path, pos, e.reason()))?;
    if h.vchannel != id.0 {
        return Err(LogError::corrupt(
            &seg.path,
            pos,
            "entry header disagrees with the index",
        ));
    }
    h.flags |= EntryFlags::COPY;
    let payload = seg.slice(off + HEADER_LEN as u64, u64::from(h.payload_len));
    let mut batch = Batch::with_capacity(1);
    write_entry(inner, w, h, &[payload], pending, &mut batch)?;
    write_batch(w, &mut batch, pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IdxRecord, VChannel};
    use crate::types::Retention;

    fn with(entries: &[(i64, i64, i64)], retention: Retention) -> VChannel {
        let mut v = VChannel {
            retention,
            ..VChannel::default()
        };
        for (i, &(first, last, ts)) in entries.iter().enumerate() {
            v.push(&IdxRecord {
                vchannel: 1,
                first_offset: first,
                last_offset: last,
                max_timestamp: ts,
                position: i as u64 * 100,
                payload_len: 10,
                flags: 0,
                term: 0,
                seq: i as u64,
            });
        }
        v
    }

    #[test]
    fn time_and_size_limits() {
        let es = [(0, 4, 100), (5, 9, 200), (10, 10, 300)];
        let v = with(
            &es,
            Retention {
                ms: Some(50),
                bytes: None,
            },
        );
        assert_eq!(retained_start(&v, 240), 5);
        assert_eq!(retained_start(&v, 1000), 11);
        assert_eq!(retained_start(&v, 100), 0);
        let v = with(
            &es,
            Retention {
                ms: None,
                bytes: Some(20),
            },
        );
        assert_eq!(retained_start(&v, 0), 5);
        let v = with(
            &es,
            Retention {
                ms: None,
                bytes: Some(5),
            },
        );
        assert_eq!(retained_start(&v, 0), 11);
        let v = with(&es, Retention::default());
        assert_eq!(retained_start(&v, i64::MAX), 0);
    }
}
