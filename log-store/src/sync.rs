//! Group commit: who flushes which bytes, and waiting until a position is durable.
//!
//! "Durable up to P" means every entry ending at or before P has been written back by
//! `msync(MS_SYNC)` of its segment's range (on Linux an fdatasync of that range, which also
//! commits the block allocation needed to read it back after a power loss). One caller at a
//! time flushes; callers that arrive while a flush runs wait for it and then let one of them
//! flush everything written meanwhile, so many appenders share one msync.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::LogError;
use crate::pchannel::Inner;
use crate::segment::END_MARK_LEN;
use crate::types::{Position, SyncPolicy};

#[derive(Debug, Default)]
struct DState {
    written: u64,
    durable: u64,
    syncing: bool,
    /// Bumped by truncation, so a flush that started before it cannot raise `durable` past it.
    epoch: u64,
    stop: bool,
    /// A background write-back failed (`seal.rs`): every later sync fails with this.
    failed: Option<String>,
}

/// Written/durable watermarks and the condition variable appenders wait on.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    m: Mutex<DState>,
    cv: Condvar,
    /// Only the flusher thread waits here, so flushes by others do not wake it.
    flusher_cv: Condvar,
}

impl Durability {
    pub(crate) fn new(position: u64) -> Durability {
        let d = Durability::default();
        {
            let mut g = d.m.lock();
            g.written = position;
            g.durable = position;
        }
        d
    }

    pub(crate) fn set_written(&self, end: u64) {
        let mut g = self.m.lock();
        g.written = g.written.max(end);
    }

    pub(crate) fn durable(&self) -> u64 {
        self.m.lock().durable
    }

    pub(crate) fn written(&self) -> u64 {
        self.m.lock().written
    }

    /// Bumped by every truncation: a position taken before a change of epoch may name
    /// entries that are gone.
    pub(crate) fn epoch(&self) -> u64 {
        self.m.lock().epoch
    }

    /// After truncation to `end`: nothing above it is written or durable any more.
    pub(crate) fn reset_to(&self, end: u64) {
        let mut g = self.m.lock();
        g.epoch += 1;
        g.written = end;
        g.durable = g.durable.min(end);
        self.cv.notify_all();
    }

    /// Records a failed write-back; syncs fail from now on.
    pub(crate) fn fail(&self, reason: String) {
        let mut g = self.m.lock();
        g.failed.get_or_insert(reason);
        self.cv.notify_all();
    }

    pub(crate) fn stop(&self) {
        self.m.lock().stop = true;
        self.cv.notify_all();
        self.flusher_cv.notify_all();
    }
}

impl Inner {
    /// Flushes everything written so far; returns the new durable position.
    pub(crate) fn sync(&self) -> Result<Position, LogError> {
        let target = self.durability.written();
        self.sync_to(target, true)
    }

    /// Waits until `pos` is durable; flushes itself when `flush` and no one else is flushing.
    fn sync_to(&self, pos: u64, flush: bool) -> Result<Position, LogError> {
        let d = &self.durability;
        let mut g = d.m.lock();
        loop {
            if let Some(reason) = &g.failed {
                return Err(LogError::WriteBackFailed(reason.clone()));
            }
            if g.durable >= pos {
                return Ok(Position(g.durable));
            }
            if !flush && g.stop {
                return Err(LogError::Closed);
            }
            if g.syncing || !flush {
                d.cv.wait(&mut g);
                continue;
            }
            g.syncing = true;
            let (from, target, epoch) = (g.durable, g.written, g.epoch);
            drop(g);
            let res = self.flush_range(from, target);
            g = d.m.lock();
            g.syncing = false;
            if res.is_ok() && g.epoch == epoch {
                g.durable = g.durable.max(target);
            }
            d.cv.notify_all();
            res?;
        }
    }

    /// msync of every segment range within `[from, to)`.
    fn flush_range(&self, from: u64, to: u64) -> Result<(), LogError> {
        if from >= to {
            return Ok(());
        }
        let ranges: Vec<_> = {
            let st = self.state.read();
            let n = st.segments.len();
            st.segments
                .iter()
                .enumerate()
                .filter(|(_, s)| s.seg.base < to && s.end > from)
                .map(|(i, s)| {
                    let mut b = to.min(s.end);
                    if i + 1 == n && s.seg.recycled {
                        // The end mark after the last entry is durable with it (`recycle.rs`).
                        b = (b + END_MARK_LEN).min(s.seg.base + s.seg.len());
                    }
                    (Arc::clone(&s.seg), from.max(s.seg.base), b)
                })
                .collect()
        };
        for (seg, a, b) in ranges {
            seg.flush(a - seg.base, b - a)?;
        }
        Ok(())
    }

    /// Blocks until `pos` is durable under the pchannel's policy (see `PChannel::wait_durable`).
    pub(crate) fn wait_durable(&self, pos: Position) -> Result<Position, LogError> {
        match self.opts.sync_policy {
            SyncPolicy::Always => self.sync_to(pos.0, true),
            SyncPolicy::IntervalMs(_) => self.sync_to(pos.0, false),
            SyncPolicy::Never => Ok(Position(self.durability.durable())),
        }
    }
}

/// Starts the background thread: interval flushes and periodic checkpoints.
pub(crate) fn spawn_flusher(inner: Arc<Inner>) -> Option<JoinHandle<()>> {
    let interval = match inner.opts.sync_policy {
        SyncPolicy::IntervalMs(ms) => Some(Duration::from_millis(ms.max(1))),
        _ => None,
    };
    let ck_every = inner.opts.checkpoint_interval;
    if interval.is_none() && ck_every.is_none() {
        return None;
    }
    let tick = interval
        .unwrap_or(Duration::from_secs(3600))
        .min(ck_every.unwrap_or(Duration::MAX));
    let spawned = std::thread::Builder::new()
        .name("log-store-flusher".into())
        .spawn(move || {
            let mut last_ck = Instant::now();
            let mut ck_position = inner.durability.written();
            loop {
                {
                    let mut g = inner.durability.m.lock();
                    if !g.stop {
                        inner.durability.flusher_cv.wait_for(&mut g, tick);
                    }
                    if g.stop {
                        // Wake waiters so they see the stop; close() does the final flush.
                        inner.durability.cv.notify_all();
                        return;
                    }
                }
                // Errors here resurface to the next caller of sync/append, which sees the same disk.
                if interval.is_some() {
                    let _ = inner.sync();
                }
                if let Some(every) = ck_every {
                    let written = inner.durability.written();
                    if last_ck.elapsed() >= every && written != ck_position {
                        if inner.checkpoint().is_ok() {
                            ck_position = written;
                        }
                        last_ck = Instant::now();
                    }
                }
            }
        });
    spawned.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_move_forward_and_reset_on_truncation() {
        let d = Durability::new(32);
        assert_eq!((d.written(), d.durable()), (32, 32));
        d.set_written(100);
        d.set_written(50);
        assert_eq!(d.written(), 100);
        d.m.lock().durable = 100;
        d.reset_to(70);
        assert_eq!((d.written(), d.durable()), (70, 70));
        assert_eq!(d.m.lock().epoch, 1);
    }
}
