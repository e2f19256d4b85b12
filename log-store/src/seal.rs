//! Sealing rolled segments off the writer's path.
//!
//! When the active segment rolls, the writer starts the next segment and hands the old one to
//! this thread, which shrinks it to its used length, fsyncs it (its data and length), writes
//! its index file and fsyncs the directory. That fsync may have a whole backlog to write back
//! (acks=1 syncs nothing, and a busy disk makes any sync slow), so on the writer it stalled
//! every append queued behind the roll.
//!
//! Why a crash while a seal is pending loses nothing acknowledged as durable:
//! - durability never depended on the seal: "durable up to P" is raised only by
//!   `Inner::sync_to`, whose flush covers every segment range from the old durable point to
//!   the new one, the rolled segment's tail included (`sync.rs`);
//! - the index file, which vouches for the entries, is written only after the fsync that made
//!   them and the length durable, as before;
//! - recovery already treats a sealed segment without an index file, or one still at its
//!   preallocated length, as a segment to scan: the scan stops at the zeros (or the end mark of
//!   a recycled file) after the last entry, rebuilds the index, and the per-pchannel `seq` chain
//!   cuts any later segment whose entries do not follow (`recovery.rs`).
//!
//! A sealing error is a write-back error: it is kept and returned by every later sync, so no
//! acks=all produce is acknowledged over data the kernel may have dropped.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::error::LogError;
use crate::index::{IdxRecord, write_index_file};
use crate::segment::Segment;
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

#[derive(Debug, Default)]
struct SealState {
    queue: VecDeque<SealJob>,
    /// A job is being sealed (taken off the queue, not finished).
    busy: bool,
    stop: bool,
}

/// The sealing thread of one pchannel and its queue.
#[derive(Debug)]
pub(crate) struct Sealer {
    state: Arc<(Mutex<SealState>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sealer {
    /// Starts the thread; `durability` receives sealing errors.
    pub(crate) fn start(dir: PathBuf, durability: Arc<Durability>) -> Result<Sealer, LogError> {
        let state: Arc<(Mutex<SealState>, Condvar)> = Arc::default();
        let shared = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("log-store-seal".into())
            .spawn(move || run(&dir, &shared, &durability))
            .map_err(|e| LogError::io(std::path::Path::new("log-store-seal"), e))?;
        Ok(Sealer {
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a rolled segment.
    pub(crate) fn submit(&self, job: SealJob) {
        let (m, cv) = &*self.state;
        m.lock().queue.push_back(job);
        cv.notify_all();
    }

    /// Waits until every segment queued so far is sealed (or failed to be).
    pub(crate) fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        while g.busy || !g.queue.is_empty() {
            cv.wait(&mut g);
        }
    }

    /// Seals what is queued, then stops the thread. Idempotent.
    pub(crate) fn stop(&self) {
        {
            let (m, cv) = &*self.state;
            m.lock().stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn run(dir: &std::path::Path, state: &(Mutex<SealState>, Condvar), durability: &Durability) {
    let (m, cv) = state;
    loop {
        let job = {
            let mut g = m.lock();
            loop {
                if let Some(job) = g.queue.pop_front() {
                    g.busy = true;
                    break job;
                }
                if g.stop {
                    return;
                }
                cv.wait(&mut g);
            }
        };
        let sealed = seal(dir, &job);
        if let Err(e) = sealed {
            durability.fail(format!(
                "sealing the segment at position {} failed: {e}",
                job.seg.base
            ));
        }
        drop(job);
        let mut g = m.lock();
        g.busy = false;
        cv.notify_all();
    }
}

/// Shrinks and fsyncs the segment, then writes its index file and makes its name durable.
fn seal(dir: &std::path::Path, job: &SealJob) -> Result<(), LogError> {
    job.seg.shrink_to(job.used)?;
    write_index_file(dir, job.seg.base, job.used, &job.records)?;
    job.seg.mark_sealed();
    Ok(())
}
