//! The pchannel handle: shared state, the single-writer lock, and the per-vchannel operations
//! that are neither append nor read (state queries, DeleteRecords, deletion, checkpoint, close).
//!
//! Locking: `writer` (a mutex) serialises every mutation — appends, metadata changes, retention,
//! truncation — so the pchannel has exactly one writer at a time. `state` (a read-write lock)
//! holds what readers need; the writer takes it for writing only to publish finished entries,
//! which is how readers never see a partial entry. Lock order: `ck_lock` → `writer` → `state`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};

use crate::checkpoint::{Checkpoint, VChannelRecord};
use crate::error::LogError;
use crate::index::{IdxRecord, VChannelMap};
use crate::recovery::{self, RecoveryReport};
use crate::seal::Sealer;
use crate::segment::Segment;
use crate::sync::{self, Durability};
use crate::types::{PChannelOptions, Position, Retention, VChannelId, VChannelState};
use crate::writeback::Writeback;

/// A segment as seen by readers: its map and the position just after its last entry.
#[derive(Debug, Clone)]
pub(crate) struct SegSlot {
    pub seg: Arc<Segment>,
    pub end: u64,
}

/// What readers see; changed only by the writer.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Sorted by base; the last one is active.
    pub segments: Vec<SegSlot>,
    pub vchannels: VChannelMap,
}

impl State {
    /// Index in `segments` of the segment holding `position`.
    pub(crate) fn segment_of(&self, position: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.seg.base <= position);
        (i > 0 && position < self.segments[i - 1].end).then(|| i - 1)
    }
}

/// The single writer's private state.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The segment being written; `None` until the pchannel's first entry, so a pchannel that
    /// is never written takes no disk space.
    pub active: Option<Arc<Segment>>,
    /// Base position of `active`, or where the first segment will start when there is none.
    pub base: u64,
    /// File offset in `active` where the next entry goes (0 while there is no segment).
    pub write_off: u64,
    pub next_seq: u64,
    /// Index records of the active segment, in position order (its future `.idx` file).
    pub active_records: Vec<IdxRecord>,
    /// In a recycled active segment, the bytes from `write_off` up to this file offset are
    /// zeros written in this life (the end mark and its padding, see `append::write_batch`);
    /// 0 when unknown.
    pub zeroed_to: u64,
    /// Truncation may not cut below this position: compaction copies live above it.
    pub compaction_floor: u64,
    /// File offset in `active` up to which written bytes were handed to early writeback
    /// (see `writeback.rs`); a multiple of `writeback::FOLIO_MAX`.
    pub writeback_from: u64,
    /// The segment thread was asked for the segment after `active` (`seal.rs`), which it
    /// makes once three quarters of `active` are written, so that the spare disk space is
    /// taken only near the roll.
    pub standby_requested: bool,
}

impl Writer {
    pub(crate) fn end_position(&self) -> u64 {
        self.base + self.write_off
    }
}

/// Shared insides of a [`PChannel`], also held by the flusher thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: PChannelOptions,
    pub writer: Mutex<Writer>,
    pub state: RwLock<State>,
    pub durability: Arc<Durability>,
    pub ck_lock: Mutex<()>,
    /// Position of the newest checkpoint written or loaded.
    pub ck_position: AtomicU64,
    pub closed: AtomicBool,
    /// The early-writeback thread, unless `writeback_bytes` is 0.
    pub writeback: Option<Writeback>,
    /// The thread that seals rolled segments.
    pub sealer: Sealer,
}

/// A physical write-ahead log: a directory of mmap'ed segments holding many vchannels.
///
/// `PChannel` is `Send + Sync`; share it with an `Arc`. Appends and other mutations are
/// serialised by an internal writer mutex (one writer at a time); reads run concurrently with
/// the writer and only ever see whole, published entries.
#[derive(Debug)]
pub struct PChannel {
    pub(crate) inner: Arc<Inner>,
    /// The flusher thread, if the options call for one.
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl PChannel {
    /// Opens (creating if needed) the pchannel in `dir`, recovering after a crash: loads the
    /// checkpoint and the sealed index files, scans the active segment past the checkpoint
    /// verifying CRCs, and cuts at the first torn or corrupt entry (reported, never a panic).
    pub fn open(
        dir: impl AsRef<Path>,
        opts: PChannelOptions,
    ) -> Result<(PChannel, RecoveryReport), LogError> {
        let (inner, report) = recovery::open(dir.as_ref(), opts)?;
        if report.scanned_bytes > 0
            || !report.cuts.is_empty()
            || !report.rebuilt_indexes.is_empty()
            || report.checkpoint_error.is_some()
        {
            inner.checkpoint()?;
        }
        let inner = Arc::new(inner);
        let flusher = sync::spawn_flusher(Arc::clone(&inner));
        Ok((
            PChannel {
                inner,
                flusher: Mutex::new(flusher),
            },
            report,
        ))
    }

    /// The pchannel's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Flushes everything appended so far; returns the new durable position.
    pub fn sync(&self) -> Result<Position, LogError> {
        self.inner.sync()
    }

    /// Waits until the segment thread is idle: every segment rolled so far sealed (shrunk,
    /// fsynced and indexed, which it does after each roll, off the appenders' path) and the
    /// next segment, if already asked for, made.
    pub fn wait_sealed(&self) {
        self.inner.sealer.wait_idle();
    }

    /// Position up to which every entry is durable (see `sync.rs` for what that means).
    pub fn durable_position(&self) -> Position {
        Position(self.inner.durability.durable())
    }

    /// Position just after the last appended entry.
    pub fn end_position(&self) -> Position {
        Position(self.inner.durability.written())
    }

    /// Position where the active segment (the one being written, whose index lives only in
    /// memory) begins; reads from here on never touch a sealed segment. `None` before the
    /// first entry, when the pchannel has no segment.
    pub fn active_segment_base(&self) -> Option<Position> {
        let st = self.inner.state.read();
        st.segments.last().map(|s| Position(s.seg.base))
    }

    /// Blocks until `pos` is durable as the policy promises: under `Always` the caller joins
    /// (or leads) the next group flush, under `IntervalMs` it waits for the flusher thread,
    /// under `Never` it returns at once. Returns the durable position.
    pub fn wait_durable(&self, pos: Position) -> Result<Position, LogError> {
        self.inner.wait_durable(pos)
    }

    /// Writes a checkpoint now (after flushing), so the next open scans nothing before it.
    pub fn checkpoint(&self) -> Result<(), LogError> {
        self.inner.checkpoint()
    }

    /// State of `vchannel`: `None` if it has never been written.
    pub fn vchannel_state(&self, vchannel: VChannelId) -> Option<VChannelState> {
        let st = self.inner.state.read();
        st.vchannels
            .get(&vchannel)
            .filter(|v| !v.deleted)
            .map(|v| VChannelState {
                log_start_offset: v.log_start_offset,
                log_end_offset: v.log_end_offset,
                entry_count: v.entries.len() as u64,
                payload_bytes: v.payload_bytes,
                retention: v.retention,
            })
    }

    /// Ids of the live vchannels, sorted.
    pub fn vchannels(&self) -> Vec<VChannelId> {
        let st = self.inner.state.read();
        let mut ids: Vec<_> = st
            .vchannels
            .iter()
            .filter(|(_, v)| !v.deleted)
            .map(|(k, _)| *k)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sets the retention of `vchannel` (applied by [`PChannel::enforce_retention`]).
    ///
    /// Cheap: it is persisted by the next checkpoint (periodic, any metadata change, `close`),
    /// not at once, so after a crash the owner of the configuration (the broker, from its
    /// metadata) re-applies it.
    pub fn set_retention(
        &self,
        vchannel: VChannelId,
        retention: Retention,
    ) -> Result<(), LogError> {
        let _w = self.inner.writer.lock();
        let mut st = self.inner.state.write();
        let v = st.vchannels.entry(vchannel).or_default();
        if v.deleted {
            return Err(LogError::VChannelDeleted(vchannel));
        }
        v.retention = retention;
        Ok(())
    }

    /// Kafka DeleteRecords: moves `log_start_offset` up to `before_offset` (never down) and
    /// makes that durable with a checkpoint. Returns the new log start offset.
    pub fn delete_records(
        &self,
        vchannel: VChannelId,
        before_offset: i64,
    ) -> Result<i64, LogError> {
        let start = {
            let _w = self.inner.writer.lock();
            let mut st = self.inner.state.write();
            let v = st
                .vchannels
                .get_mut(&vchannel)
                .ok_or(LogError::UnknownVChannel(vchannel))?;
            if v.deleted {
                return Err(LogError::VChannelDeleted(vchannel));
            }
            if before_offset > v.log_end_offset || before_offset < 0 {
                return Err(LogError::OffsetOutOfRange {
                    vchannel,
                    offset: before_offset,
                    log_start_offset: v.log_start_offset,
                    log_end_offset: v.log_end_offset,
                });
            }
            v.drop_before(before_offset);
            v.log_start_offset
        };
        self.inner.checkpoint()?;
        Ok(start)
    }

    /// Deletes `vchannel`: its entries become dead (reclaimed by retention) and further appends
    /// to it fail. Durable on return.
    pub fn delete_vchannel(&self, vchannel: VChannelId) -> Result<(), LogError> {
        {
            let _w = self.inner.writer.lock();
            let mut st = self.inner.state.write();
            let v = st.vchannels.entry(vchannel).or_default();
            v.deleted = true;
            v.entries.clear();
            v.payload_bytes = 0;
        }
        self.inner.checkpoint()
    }

    /// Flushes, writes a final checkpoint and stops the background threads. Appends fail after.
    pub fn close(&self) -> Result<(), LogError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        // Flush before stopping the flusher, so its waiters see their positions durable.
        self.inner.sync()?;
        self.stop_threads();
        self.inner.checkpoint()
    }

    fn stop_threads(&self) {
        // Rolled segments get their index files before the pchannel closes.
        self.inner.sealer.stop();
        self.inner.durability.stop();
        if let Some(h) = self.flusher.lock().take() {
            let _ = h.join();
        }
        if let Some(wb) = &self.inner.writeback {
            wb.stop();
        }
    }
}

impl Drop for PChannel {
    /// Stops the background threads. Without `close`, the next open recovers from the last
    /// checkpoint as after a crash (the page cache still holds every appended byte).
    fn drop(&mut self) {
        self.stop_threads();
    }
}

impl Inner {
    /// Writes a checkpoint of the state at the current log end, once that end is durable.
    ///
    /// The state is taken under the writer lock, but the sync runs after it is released, so
    /// appends go on while it writes back: the checkpoint names a position, and everything
    /// before it is durable before the file is written. A truncation in between voids it
    /// (the epoch changed), and the state is taken again.
    pub(crate) fn checkpoint(&self) -> Result<(), LogError> {
        let _ck = self.ck_lock.lock();
        loop {
            let epoch = self.durability.epoch();
            let ck = {
                let w = self.writer.lock();
                let st = self.state.read();
                let mut vchannels: Vec<_> = st
                    .vchannels
                    .iter()
                    .map(|(id, v)| VChannelRecord {
                        id: *id,
                        log_start_offset: v.log_start_offset,
                        log_end_offset: v.log_end_offset,
                        retention: v.retention,
                        deleted: v.deleted,
                    })
                    .collect();
                vchannels.sort_unstable_by_key(|v| v.id);
                Checkpoint {
                    position: w.end_position(),
                    active_base: w.base,
                    next_seq: w.next_seq,
                    compaction_floor: w.compaction_floor,
                    vchannels,
                    records: w.active_records.clone(),
                }
            };
            let durable = self.sync()?;
            if durable.0 < ck.position || self.durability.epoch() != epoch {
                // A truncation moved the end back meanwhile: take the state again.
                continue;
            }
            ck.write(&self.dir)?;
            self.ck_position.store(ck.position, Ordering::Release);
            return Ok(());
        }
    }
}
