//! The segment thread: it seals rolled segments and prepares the next one, so a roll does no
//! disk I/O on the writer's path.
//!
//! **Sealing.** When the active segment rolls, the writer queues it here; this thread shrinks
//! it to its used length, fsyncs it (its data and length), writes its index file and fsyncs the
//! directory. That fsync may have a whole backlog to write back (acks=1 syncs nothing, and a
//! busy disk makes any sync slow), so on the writer it stalled every append queued behind the
//! roll.
//!
//! **The standby segment.** Segment bases follow a fixed stride: a segment rolled out at any
//! fill level is followed by one at its base plus its capacity (positions in between are never
//! used; readers and recovery treat segments as ranges, not as a contiguous run). So the next
//! segment's base is known as soon as a segment becomes active, and once three quarters of the
//! active segment are written (so the extra disk space is taken only near the roll) this
//! thread makes that file, complete and durable: a recycled spare or a new file, preallocated,
//! header written, fsynced, name fsynced. The roll then only swaps it in. A standby is always
//! the newest file, so every segment that ever becomes non-last had its header made durable
//! before it was first written. `close` deletes an unused standby; after a crash, recovery
//! deletes a newest segment file that holds no valid entry and follows another
//! (`recovery::drop_unused_standby`).
//!
//! Why a crash loses nothing acknowledged as durable:
//! - durability never depended on the seal: "durable up to P" is raised only by
//!   `Inner::sync_to`, whose flush covers every segment range from the old durable point to
//!   the new one, a rolled segment's tail included (`sync.rs`);
//! - the index file, which vouches for the entries, is written only after the fsync that made
//!   them and the length durable, as before;
//! - recovery treats a non-last segment without index file (a pending seal) as a segment to
//!   scan: the scan stops at the zeros (or the end mark of a recycled file) after the last
//!   entry, or at the first entry that fails its checks; recovery then flushes it before
//!   writing its index, and the per-pchannel `seq` chain cuts any later segment whose entries
//!   do not follow (`recovery.rs`). An unused standby is deleted first, so the segment that was
//!   active at the crash is recovered as the last one, as before standbys existed.
//!
//! A sealing error is a write-back error: it is kept and returned by every later sync, so no
//! acks=all produce is acknowledged over data the kernel may have dropped. A failure to prepare
//! a standby only means the roll makes its segment itself, as before.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::error::LogError;
use crate::index::{IdxRecord, write_index_file};
use crate::recycle::Spare;
use crate::segment::{Segment, sync_dir};
use crate::sync::Durability;

/// One rolled segment to seal.
#[derive(Debug)]
pub(crate) struct SealJob {
    pub seg: Arc<Segment>,
    /// Bytes of the file holding entries (its length once sealed).
    pub used: u64,
    /// The segment's index records, in position order.
    pub records: Vec<IdxRecord>,
}

/// The standby segment wanted next.
#[derive(Debug, Clone, Copy)]
struct Prepare {
    base: u64,
    capacity: u64,
    /// The writer's next `seq` when asked: a spare is usable only if its `bound` is at most
    /// this (see `recycle.rs`).
    next_seq: u64,
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    seals: VecDeque<SealJob>,
    /// A seal is in progress (taken off the queue, not finished).
    sealing: bool,
    prepare: Option<Prepare>,
    /// The base of the standby being made.
    preparing: Option<u64>,
    standby: Option<Segment>,
    /// Files kept by retention for reuse as segments.
    spares: Vec<Spare>,
    /// Bumped when the log end moves back (truncation): a standby asked for before is void.
    generation: u64,
    stop: bool,
}

/// The segment thread of one pchannel, its queue and its standby.
#[derive(Debug)]
pub(crate) struct Sealer {
    dir: PathBuf,
    durability: Arc<Durability>,
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sealer {
    /// Starts the thread; `durability` receives sealing errors; `spares` are the spare files
    /// found on open.
    pub(crate) fn start(
        dir: PathBuf,
        durability: Arc<Durability>,
        spares: Vec<Spare>,
    ) -> Result<Sealer, LogError> {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::new((
            Mutex::new(State {
                spares,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let shared = Arc::clone(&state);
        let thread_dir = dir.clone();
        let thread_durability = Arc::clone(&durability);
        let thread = std::thread::Builder::new()
            .name("log-store-seal".into())
            .spawn(move || run(&thread_dir, &shared, &thread_durability))
            .map_err(|e| LogError::io(Path::new("log-store-seal"), e))?;
        Ok(Sealer {
            dir,
            durability,
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a rolled segment; seals it here if the thread has stopped (an append that
    /// raced with `close`).
    pub(crate) fn submit(&self, job: SealJob) {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        if g.stop {
            drop(g);
            seal_or_fail(&self.dir, &job, &self.durability);
            return;
        }
        g.seals.push_back(job);
        cv.notify_all();
    }

    /// Asks for the standby segment with base `base` (replacing an earlier request).
    pub(crate) fn request_standby(&self, base: u64, capacity: u64, next_seq: u64) {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        if g.stop {
            return;
        }
        let generation = g.generation;
        g.prepare = Some(Prepare {
            base,
            capacity,
            next_seq,
            generation,
        });
        cv.notify_all();
    }

    /// The standby segment with base `base`, waiting for it if it is being made right now;
    /// `None` if there is none (the caller makes the segment itself). A request for `base` not
    /// started yet is withdrawn; a standby for another base is deleted.
    pub(crate) fn take_standby(&self, base: u64) -> Option<Segment> {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        while g.preparing == Some(base) {
            cv.wait(&mut g);
        }
        if g.prepare.is_some_and(|p| p.base == base) {
            g.prepare = None;
        }
        match g.standby.take() {
            Some(seg) if seg.base == base => Some(seg),
            Some(other) => {
                drop(g);
                discard(&self.dir, other);
                None
            }
            None => None,
        }
    }

    /// Forgets the standby (deleting its file) and any request for one, after waiting for one
    /// being made: for truncation, which moves the log end back.
    pub(crate) fn reset_standby(&self) {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        g.generation += 1;
        g.prepare = None;
        while g.preparing.is_some() {
            cv.wait(&mut g);
        }
        let standby = g.standby.take();
        drop(g);
        if let Some(seg) = standby {
            discard(&self.dir, seg);
        }
    }

    /// A spare usable for a segment written after `next_seq` (unusable ones are deleted).
    pub(crate) fn take_spare(&self, next_seq: u64) -> Option<Spare> {
        let (m, _) = &*self.state;
        take_usable_spare(&self.dir, &mut m.lock().spares, next_seq)
    }

    /// Keeps `spare` for reuse if fewer than `keep` are kept; `false` if there is no room.
    pub(crate) fn keep_spare(&self, spare: Spare, keep: usize) -> bool {
        let (m, _) = &*self.state;
        let mut g = m.lock();
        if g.spares.len() >= keep {
            return false;
        }
        g.spares.push(spare);
        true
    }

    /// Whether fewer than `keep` spares are kept.
    pub(crate) fn has_room_for_spare(&self, keep: usize) -> bool {
        self.state.0.lock().spares.len() < keep
    }

    /// Spares kept.
    #[cfg(test)]
    pub(crate) fn spares(&self) -> usize {
        self.state.0.lock().spares.len()
    }

    /// Waits until the thread has nothing left to do: every segment queued so far sealed (or
    /// failed to be) and the standby asked for made (or failed to be).
    pub(crate) fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        while g.sealing || !g.seals.is_empty() || g.preparing.is_some() || g.prepare.is_some() {
            cv.wait(&mut g);
        }
    }

    /// Seals what is queued, stops the thread and deletes the standby. Idempotent.
    pub(crate) fn stop(&self) {
        {
            let (m, cv) = &*self.state;
            let mut g = m.lock();
            g.stop = true;
            g.prepare = None;
            cv.notify_all();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        let standby = self.state.0.lock().standby.take();
        if let Some(seg) = standby {
            discard(&self.dir, seg);
        }
    }
}

/// What the thread does next.
enum Work {
    Prepare(Prepare, Option<Spare>),
    Seal(SealJob),
}

fn run(dir: &Path, state: &(Mutex<State>, Condvar), durability: &Durability) {
    let (m, cv) = state;
    loop {
        let work = {
            let mut g = m.lock();
            loop {
                // A standby first: the next roll may be waiting for it, and making it writes
                // a few bytes where a seal may write a whole backlog.
                if let Some(p) = g.prepare.take() {
                    if p.generation != g.generation || g.standby.is_some() {
                        cv.notify_all();
                        continue;
                    }
                    g.preparing = Some(p.base);
                    let spare = take_usable_spare(dir, &mut g.spares, p.next_seq);
                    break Work::Prepare(p, spare);
                }
                if let Some(job) = g.seals.pop_front() {
                    g.sealing = true;
                    break Work::Seal(job);
                }
                if g.stop {
                    return;
                }
                cv.wait(&mut g);
            }
        };
        match work {
            Work::Prepare(p, spare) => {
                // An error leaves no standby: the roll makes the segment and reports it.
                let made = make_segment(dir, spare, p.base, p.capacity).ok();
                let mut g = m.lock();
                g.preparing = None;
                let void = match made {
                    Some(seg) if p.generation == g.generation && !g.stop => {
                        g.standby = Some(seg);
                        None
                    }
                    other => other,
                };
                cv.notify_all();
                drop(g);
                if let Some(seg) = void {
                    discard(dir, seg);
                }
            }
            Work::Seal(job) => {
                seal_or_fail(dir, &job, durability);
                drop(job);
                let mut g = m.lock();
                g.sealing = false;
                cv.notify_all();
            }
        }
    }
}

/// [`seal`], and a failure recorded as a write-back error.
fn seal_or_fail(dir: &Path, job: &SealJob, durability: &Durability) {
    if let Err(e) = seal(dir, job) {
        durability.fail(format!(
            "sealing the segment at position {} failed: {e}",
            job.seg.base
        ));
    }
}

/// Shrinks and fsyncs the segment, then writes its index file and makes its name durable.
fn seal(dir: &Path, job: &SealJob) -> Result<(), LogError> {
    job.seg.shrink_to(job.used)?;
    write_index_file(dir, job.seg.base, job.used, &job.records)?;
    job.seg.mark_sealed();
    Ok(())
}

/// The segment with base `base`, durable on return: made from `spare` if it can be, else a
/// new file.
pub(crate) fn make_segment(
    dir: &Path,
    spare: Option<Spare>,
    base: u64,
    capacity: u64,
) -> Result<Segment, LogError> {
    if let Some(s) = spare {
        // A spare that cannot be reused (gone, unreadable) is dropped: a new file may still
        // work, and the next roll would meet the same fault.
        match Segment::recycle(dir, &s.path, base, capacity) {
            Ok(seg) => return Ok(seg),
            Err(_) => {
                let _ = std::fs::remove_file(&s.path);
            }
        }
    }
    Segment::create(dir, base, capacity)
}

/// Pops a spare whose `bound` is at most `next_seq`. One with a higher bound (truncation moved
/// `seq` back since it was made) could hold entries with `seq`s a new segment will use, so it
/// is deleted instead.
fn take_usable_spare(dir: &Path, spares: &mut Vec<Spare>, next_seq: u64) -> Option<Spare> {
    while let Some(s) = spares.pop() {
        if s.bound <= next_seq {
            return Some(s);
        }
        let _ = std::fs::remove_file(&s.path);
        let _ = sync_dir(dir);
    }
    None
}

/// Deletes a standby that will not be used; its name is gone for good once the directory is
/// fsynced (a crash before that leaves an empty last segment, which recovery takes as the
/// active one).
fn discard(dir: &Path, seg: Segment) {
    let path = seg.path.clone();
    drop(seg);
    let _ = std::fs::remove_file(&path);
    let _ = sync_dir(dir);
}
