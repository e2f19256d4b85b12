//! Early writeback: a per-pchannel thread that asks the kernel to start writing back the
//! segment pages the writer has finished with, every `PChannelOptions::writeback_bytes`.
//!
//! Why: when nothing syncs a pchannel for a while (the broker's `acks=1`), its pages stay dirty
//! until the kernel's flusher takes them (after 30 s by default), so the next segment roll,
//! checkpoint or caller of `sync` writes the whole backlog while the writer waits (0.6–0.9 s
//! for a 256 MiB segment, docs/benchmarks.md "Early writeback"). Starting writeback every
//! `writeback_bytes` keeps the backlog at most that deep (plus one folio).
//!
//! Only a hint, never a promise: `sync_file_range(SYNC_FILE_RANGE_WRITE)` queues the dirty
//! pages of a range for writing and returns without waiting. Nothing here moves the durable
//! position or is reported to anyone; durability still comes only from the group commit in
//! `sync.rs` (`msync(MS_SYNC)`), which waits for pages already under writeback like any other.
//! It is crash-safe because it writes file data early and nothing else: the same page writes
//! the kernel's flusher would issue later, with whatever the filesystem does for any data
//! writeback, but no inode or directory write, no fsync and no device cache flush. Any disk
//! state it can leave after a crash is one ordinary writeback could leave at any moment, and
//! recovery already cuts whatever a crash tears past the last sync (CRC and `seq` checks).
//!
//! The writer hands over only whole folios behind its write head (see [`FOLIO_MAX`]), so the
//! pages it appends to next are never under writeback. A hint holds its segment weakly: a
//! segment that is sealed and retired, recycled or truncated away before the thread gets to it
//! is skipped, and a queued hint never keeps a file open or stops retention from recycling it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::pchannel::Writer;
use crate::segment::Segment;

/// Largest folio the page cache builds (the PMD size with 4 KiB pages: x86-64, arm64).
/// Folios are naturally aligned, so a range ending at a multiple of this shares no folio with
/// the bytes after it: writeback of the range never locks the folio the writer appends to.
pub(crate) const FOLIO_MAX: u64 = 2 << 20;

/// A range of one segment's file offsets to start writing back.
#[derive(Debug)]
struct Hint {
    seg: Weak<Segment>,
    from: u64,
    to: u64,
}

#[derive(Debug, Default)]
struct Queue {
    hints: Vec<Hint>,
    /// The thread holds hints it took and has not issued yet.
    busy: bool,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    cv: Condvar,
    /// Bytes of ranges handed to the kernel.
    started: AtomicU64,
    /// Hints skipped because their segment was gone.
    stale: AtomicU64,
    /// Held by tests to keep taken hints from being issued.
    #[cfg(test)]
    gate: Mutex<()>,
}

/// The early-writeback thread of one pchannel and the queue that feeds it.
#[derive(Debug)]
pub(crate) struct Writeback {
    every: u64,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writeback {
    /// Starts the thread; `None` when `every` is 0 (disabled) or no thread can be spawned
    /// (the hint is optional, so the pchannel works without it).
    pub(crate) fn start(every: u64) -> Option<Writeback> {
        if every == 0 {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log-store-writeback".into())
            .spawn(move || run(&worker))
            .ok()?;
        Some(Writeback {
            every,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Called by the writer, under the writer lock, after bytes reached the active segment:
    /// once `every` bytes of whole folios lie behind the write head since the last hint,
    /// queues them. Never waits on the kernel.
    pub(crate) fn after_write(&self, w: &mut Writer) {
        let Some(seg) = &w.active else { return };
        let done = w.write_off / FOLIO_MAX * FOLIO_MAX;
        if done < w.writeback_from.saturating_add(self.every) {
            return;
        }
        let hint = Hint {
            seg: Arc::downgrade(seg),
            from: w.writeback_from,
            to: done,
        };
        w.writeback_from = done;
        {
            let mut q = self.shared.queue.lock();
            // Coalesce with a hint the thread has not taken yet.
            match q.hints.last_mut() {
                Some(last) if last.to == hint.from && Weak::ptr_eq(&last.seg, &hint.seg) => {
                    last.to = hint.to;
                }
                _ => q.hints.push(hint),
            }
        }
        self.shared.cv.notify_one();
    }

    /// Stops the thread (hints still queued are dropped: they were only hints). Idempotent.
    pub(crate) fn stop(&self) {
        self.shared.queue.lock().stop = true;
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared) {
    let mut hints = Vec::new();
    loop {
        {
            let mut q = shared.queue.lock();
            q.busy = false;
            while q.hints.is_empty() && !q.stop {
                shared.cv.wait(&mut q);
            }
            if q.stop {
                return;
            }
            std::mem::swap(&mut hints, &mut q.hints);
            q.busy = true;
        }
        #[cfg(test)]
        let _gate = shared.gate.lock();
        for h in hints.drain(..) {
            let Some(seg) = h.seg.upgrade() else {
                shared.stale.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            // An error (EIO, ENOSPC) is not lost by ignoring it here: without a wait flag
            // `sync_file_range` does not consume the file's writeback error, so the next sync
            // reports it.
            if seg.start_writeback(h.from, h.to - h.from).is_ok() {
                shared.started.fetch_add(h.to - h.from, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
impl Writeback {
    /// Bytes handed to the kernel and hints skipped as stale so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.shared.started.load(Ordering::Relaxed),
            self.shared.stale.load(Ordering::Relaxed),
        )
    }

    /// Keeps the thread from issuing the hints it takes until the guard drops.
    pub(crate) fn pause(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.shared.gate.lock()
    }

    /// Waits until the thread has taken every queued hint and issued or skipped it.
    pub(crate) fn drain(&self) {
        for _ in 0..10_000 {
            let q = self.shared.queue.lock();
            if q.hints.is_empty() && !q.busy {
                return;
            }
            drop(q);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("writeback thread did not drain its queue");
    }

    /// Whether the thread still runs (it holds the other reference to the queue).
    pub(crate) fn thread_running(&self) -> bool {
        Arc::strong_count(&self.shared) > 1
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    use super::*;
    use crate::pchannel::PChannel;
    use crate::types::{
        EntryFlags, EntryRef, PChannelOptions, Position, Retention, SyncPolicy, Term, VChannelId,
    };

    const SEG: u64 = 8 << 20;
    const LEN: usize = 60 << 10;

    fn options() -> PChannelOptions {
        PChannelOptions {
            segment_bytes: SEG,
            sync_policy: SyncPolicy::Never,
            checkpoint_interval: None,
            compact_live_ratio: 0.0,
            recycle_segments: 2,
            writeback_bytes: 1 << 20,
            ..PChannelOptions::default()
        }
    }

    fn payload(vchannel: u64, offset: i64) -> Vec<u8> {
        let seed = (vchannel << 40) ^ offset as u64;
        (0..LEN)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 2) as u8)
            .collect()
    }

    fn append(pc: &PChannel, vchannel: u64, offset: i64) -> Position {
        let p = payload(vchannel, offset);
        let e = EntryRef {
            vchannel: VChannelId(vchannel),
            first_offset: offset,
            last_offset: offset,
            max_timestamp: 0,
            flags: EntryFlags::default(),
            term: Term(1),
            prefix: &p[..16],
            rest: &p[16..],
        };
        pc.append(&[e]).unwrap().positions[0]
    }

    fn check_reads(pc: &PChannel, vchannel: u64, from: i64, to: i64) {
        let state = pc.vchannel_state(VChannelId(vchannel)).unwrap();
        assert_eq!((state.log_start_offset, state.log_end_offset), (from, to));
        for offset in from..to {
            let got = pc.read(VChannelId(vchannel), offset, 1).unwrap();
            assert_eq!(got[0].first_offset, offset);
            assert!(
                got[0].payload == payload(vchannel, offset),
                "offset {offset}"
            );
        }
    }

    fn writeback(pc: &PChannel) -> &Writeback {
        pc.inner.writeback.as_ref().expect("writeback enabled")
    }

    /// Dirty pages of `path` in file offsets `off..off + len`, by `cachestat(2)` (Linux 6.5);
    /// `None` where it cannot tell (older kernel, tmpfs where pages never get clean).
    fn dirty_pages(path: &Path, off: u64, len: u64) -> Option<u64> {
        const SYS_CACHESTAT: libc::c_long = 451; // the same number on every architecture
        const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
        let f = File::open(path).unwrap();
        // SAFETY: `fstatfs` and `cachestat` fill the structs passed; the fd is open.
        unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            if libc::fstatfs(f.as_raw_fd(), &mut fs) != 0
                || fs.f_type as libc::c_long == TMPFS_MAGIC
            {
                return None;
            }
            let range = [off, len];
            let mut stat = [0u64; 5]; // cache, dirty, writeback, evicted, recently evicted
            let rc = libc::syscall(
                SYS_CACHESTAT,
                f.as_raw_fd(),
                range.as_ptr(),
                stat.as_mut_ptr(),
                0,
            );
            (rc == 0).then_some(stat[1])
        }
    }

    #[test]
    fn appends_with_writeback_read_back_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let (pc, _) = PChannel::open(dir.path(), options()).unwrap();
        // Three segments and a half: hints in sealed segments and in the active one.
        let n = (SEG * 7 / 2 / LEN as u64) as i64;
        for offset in 0..n {
            append(&pc, 1, offset);
        }
        let wb = writeback(&pc);
        wb.drain();
        let (started, stale) = wb.counts();
        let (active, write_off, from) = {
            let w = pc.inner.writer.lock();
            (
                Arc::clone(w.active.as_ref().unwrap()),
                w.write_off,
                w.writeback_from,
            )
        };
        // Each full segment hands over its first three folios, the active one what lies
        // behind its head; never the folio being written.
        assert_eq!(from, write_off / FOLIO_MAX * FOLIO_MAX);
        assert!(from >= 2 * FOLIO_MAX, "{from} {write_off}");
        assert_eq!(
            started,
            3 * (SEG - FOLIO_MAX) + from,
            "bytes handed to the kernel"
        );
        assert_eq!(stale, 0);
        if let Some(dirty) = dirty_pages(&active.path, 0, from) {
            // The kernel took the hinted pages; the next page of the file it may not.
            assert!(
                dirty * 4096 <= from / 8,
                "{dirty} pages of {from} bytes still dirty"
            );
        }
        drop(active);
        check_reads(&pc, 1, 0, n);
        // Dropped without close: the next open recovers from the segments alone.
        drop(pc);
        let (pc, report) = PChannel::open(dir.path(), options()).unwrap();
        assert!(report.cuts.is_empty(), "{report:?}");
        check_reads(&pc, 1, 0, n);
        let next = append(&pc, 1, n);
        assert!(next.0 > 3 * SEG);
        pc.close().unwrap();
        let (pc, _) = PChannel::open(dir.path(), options()).unwrap();
        check_reads(&pc, 1, 0, n + 1);
    }

    #[test]
    fn the_thread_stops_with_the_pchannel() {
        let dir = tempfile::tempdir().unwrap();
        let (pc, _) = PChannel::open(dir.path(), options()).unwrap();
        assert!(writeback(&pc).thread_running());
        for offset in 0..100 {
            append(&pc, 1, offset);
        }
        pc.close().unwrap();
        assert!(!writeback(&pc).thread_running(), "close stops the thread");
        drop(pc);

        // Dropped without close, with hints queued.
        let (pc, _) = PChannel::open(dir.path(), options()).unwrap();
        let queue = Arc::downgrade(&writeback(&pc).shared);
        let paused = writeback(&pc).pause();
        for offset in 100..200 {
            append(&pc, 1, offset);
        }
        drop(paused);
        drop(pc);
        assert!(queue.upgrade().is_none(), "the thread let go of its queue");

        let off = PChannelOptions {
            writeback_bytes: 0,
            ..options()
        };
        let (pc, _) = PChannel::open(dir.path(), off).unwrap();
        assert!(pc.inner.writeback.is_none());
        check_reads(&pc, 1, 0, 200);
    }

    #[test]
    fn hints_queued_across_rolls_recycling_and_truncation_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let (pc, _) = PChannel::open(dir.path(), options()).unwrap();
        let paused = writeback(&pc).pause();
        let segments = |pc: &PChannel| pc.inner.state.read().segments.len();
        let mut next = 0;
        // Four segments: retention deletes a segment only once the next one is sealed, so the
        // one before the active segment stays.
        while segments(&pc) < 4 {
            append(&pc, 1, next);
            next += 1;
        }
        // Retention retires the first two sealed segments while hints to them are queued;
        // weak hints do not keep them from becoming spares.
        let all = Retention {
            ms: None,
            bytes: Some(0),
        };
        pc.set_retention(VChannelId(1), all).unwrap();
        let report = pc.enforce_retention(0).unwrap();
        assert_eq!(report.segments_deleted.len(), 2, "{report:?}");
        pc.set_retention(VChannelId(1), Retention::default())
            .unwrap();
        assert_eq!(pc.inner.sealer.spares(), 2, "both files kept as spares");
        let start = pc.vchannel_state(VChannelId(1)).unwrap().log_start_offset;
        // Roll onto a recycled spare (the standby made before retention ran is a new file, so
        // that may take a second roll), then truncate part of the new segment away.
        let active_recycled = |pc: &PChannel| {
            let st = pc.inner.state.read();
            st.segments.last().is_some_and(|s| s.seg.recycled)
        };
        while !active_recycled(&pc) {
            append(&pc, 1, next);
            next += 1;
        }
        let mut keep = Position(0);
        for i in 0..60 {
            let p = append(&pc, 1, next);
            next += 1;
            if i == 40 {
                keep = p;
            }
        }
        pc.truncate_after(keep).unwrap();
        next -= 19;
        drop(paused);
        let wb = writeback(&pc);
        wb.drain();
        let (started, stale) = wb.counts();
        assert!(
            stale >= 2,
            "hints to the retired segments were skipped ({stale})"
        );
        assert!(started > 0);
        check_reads(&pc, 1, start, next);
        append(&pc, 1, next);
        next += 1;
        drop(pc);
        let (pc, report) = PChannel::open(dir.path(), options()).unwrap();
        assert!(report.cuts.is_empty(), "{report:?}");
        check_reads(&pc, 1, start, next);
    }
}
