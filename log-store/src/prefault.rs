//! The prefaulter: a background thread that faults in the active segment's pages ahead of the
//! writer (`MADV_POPULATE_WRITE`), so appends copy into resident pages instead of taking a page
//! fault (and, on ext4, a journal handle) for every 4 KiB on the append path.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::pchannel::Inner;
use crate::segment::Segment;

/// Populated per step, so a roll or a stop is noticed quickly.
const STEP: u64 = 1 << 20;

#[derive(Debug, Default)]
struct Wanted {
    seg: Option<Arc<Segment>>,
    /// File offset of `seg` up to which pages are wanted.
    upto: u64,
    stop: bool,
}

/// What the writer asks of the prefaulter thread.
#[derive(Debug, Default)]
pub(crate) struct Prefaulter {
    m: Mutex<Wanted>,
    cv: Condvar,
}

impl Prefaulter {
    /// Asks for the pages of `seg` below file offset `upto`.
    pub(crate) fn request(&self, seg: &Arc<Segment>, upto: u64) {
        let mut g = self.m.lock();
        if !g.seg.as_ref().is_some_and(|s| Arc::ptr_eq(s, seg)) {
            g.seg = Some(Arc::clone(seg));
        }
        g.upto = upto;
        self.cv.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.m.lock().stop = true;
        self.cv.notify_one();
    }
}

/// Starts the prefaulter thread if `prefault_bytes` is set.
pub(crate) fn spawn_prefaulter(inner: Arc<Inner>) -> Option<JoinHandle<()>> {
    if inner.opts.prefault_bytes == 0 {
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("log-store-prefault".into())
        .spawn(move || {
            let p = &inner.prefaulter;
            // The segment being worked on, by identity only: holding an `Arc` of a sealed
            // segment would keep retention from recycling its file.
            let mut current: Option<(u64, usize)> = None;
            let mut done = 0u64;
            let id = |s: &Arc<Segment>| (s.base, Arc::as_ptr(s) as usize);
            loop {
                let (seg, upto) = {
                    let mut g = p.m.lock();
                    loop {
                        if g.stop {
                            return;
                        }
                        if let Some(s) = &g.seg
                            && (current != Some(id(s)) || g.upto > done)
                        {
                            break;
                        }
                        p.cv.wait(&mut g);
                    }
                    (g.seg.clone().expect("checked above"), g.upto)
                };
                if current != Some(id(&seg)) {
                    current = Some(id(&seg));
                    done = 0;
                }
                let to = (done + STEP).min(upto);
                // Best effort: a failure (old kernel, segment shrunk by sealing) only costs
                // the writer its own page faults.
                seg.prefault(done, to - done);
                done = to;
            }
        });
    spawned.ok()
}
