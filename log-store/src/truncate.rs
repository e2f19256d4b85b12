//! Truncation after a given entry, for replication: a follower whose log diverged from the new
//! leader drops its uncommitted tail (Raft §5.3) before appending the leader's entries.

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;

use crate::entry::{EntryHeader, HEADER_LEN};
use crate::error::LogError;
use crate::index::read_index_file;
use crate::pchannel::PChannel;
use crate::segment::{Segment, index_path, sync_dir};
use crate::types::{EntryFlags, Position};
use crate::writeback::FOLIO_MAX;

impl PChannel {
    /// Removes every entry after the entry starting at `position` (which is kept) and returns
    /// the new end position. Each vchannel's `log_end_offset` falls back to the first offset
    /// removed. Durable on return.
    ///
    /// Only uncommitted entries that no reader was served should be truncated: `Bytes` from an
    /// earlier read of a removed entry may see zeros. Truncation below the last compaction is
    /// refused (those copies are the only home of older entries).
    pub fn truncate_after(&self, position: Position) -> Result<Position, LogError> {
        let inner = &*self.inner;
        let pos = position.0;
        let cut = {
            let mut w = inner.writer.lock();
            // Truncation reads and rewrites sealed segments' index files: let pending seals
            // finish first (no roll can queue another while the writer lock is held). The
            // standby made for the current end is void once the end moves back.
            inner.sealer.wait_idle();
            inner.sealer.reset_standby();
            w.standby_requested = false;
            if pos < w.compaction_floor {
                return Err(LogError::InvalidPosition {
                    position,
                    reason: "below the last compaction",
                });
            }
            let (si, seg, seg_end, last) = {
                let st = inner.state.read();
                let si = st.segment_of(pos).ok_or(LogError::InvalidPosition {
                    position,
                    reason: "not inside any segment",
                })?;
                let s = &st.segments[si];
                (si, Arc::clone(&s.seg), s.end, si + 1 == st.segments.len())
            };
            let mut records = if last {
                w.active_records.clone()
            } else {
                read_index_file(&index_path(&inner.dir, seg.base), seg.base)
                    .map_err(|e| LogError::corrupt(index_path(&inner.dir, seg.base), 0, e))?
                    .1
            };
            let Ok(ri) = records.binary_search_by_key(&pos, |r| r.position) else {
                return Err(LogError::InvalidPosition {
                    position,
                    reason: "no entry starts here",
                });
            };
            let h = EntryHeader::decode(seg.slice(pos - seg.base, HEADER_LEN as u64))
                .map_err(|e| LogError::corrupt(&seg.path, pos, e.reason()))?;
            let cut = pos + h.entry_len();
            // Records of every removed entry, to know each vchannel's first removed offset even
            // where retention already dropped it from the index.
            let mut removed_records = records.split_off(ri + 1);
            {
                let st = inner.state.read();
                let n = st.segments.len();
                for (i, s) in st.segments.iter().enumerate().skip(si + 1) {
                    if i + 1 == n {
                        removed_records.extend_from_slice(&w.active_records);
                    } else if let Ok((_, recs)) =
                        read_index_file(&index_path(&inner.dir, s.seg.base), s.seg.base)
                    {
                        removed_records.extend(recs);
                    }
                }
            }
            let mut first_removed: HashMap<u64, i64> = HashMap::new();
            for r in removed_records
                .iter()
                .filter(|r| r.flags & EntryFlags::COPY == 0)
            {
                let f = first_removed.entry(r.vchannel).or_insert(r.first_offset);
                *f = (*f).min(r.first_offset);
            }
            let removed: Vec<Arc<Segment>> = {
                let mut st = inner.state.write();
                for (id, v) in st.vchannels.iter_mut() {
                    let dropped = v.drop_from_position(cut);
                    if let Some(first) = first_removed.get(&id.0).copied().or(dropped) {
                        v.log_end_offset = first;
                        v.log_start_offset = v.log_start_offset.min(first);
                    }
                }
                let removed = st.segments.drain(si + 1..).map(|s| s.seg).collect();
                st.segments[si].end = cut;
                removed
            };
            // Later segments go first, so a crash part-way leaves a prefix of the old log.
            for s in removed.iter().rev() {
                fs::remove_file(&s.path).map_err(|e| LogError::io(&s.path, e))?;
                let _ = fs::remove_file(index_path(&inner.dir, s.base));
            }
            sync_dir(&inner.dir)?;
            let seg = if last {
                seg
            } else {
                let idx = index_path(&inner.dir, seg.base);
                fs::remove_file(&idx).map_err(|e| LogError::io(&idx, e))?;
                let reopened = Arc::new(Segment::open(
                    seg.path.clone(),
                    seg.base,
                    inner.opts.segment_bytes,
                )?);
                inner.state.write().segments[si].seg = Arc::clone(&reopened);
                reopened
            };
            let tail = seg_end - cut;
            seg.zero(cut - seg.base, tail)?;
            seg.flush(cut - seg.base, tail)?;
            w.base = seg.base;
            w.write_off = cut - seg.base;
            w.next_seq = h.seq + 1;
            w.standby_requested = false;
            w.active = Some(seg);
            w.active_records = records;
            w.zeroed_to = 0;
            // The checkpoint below syncs everything before the cut: nothing there to hint.
            w.writeback_from = w.write_off / FOLIO_MAX * FOLIO_MAX;
            inner.durability.reset_to(cut);
            cut
        };
        inner.checkpoint()?;
        Ok(Position(cut))
    }
}
