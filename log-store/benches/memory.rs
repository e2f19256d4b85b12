//! Heap bytes per idle vchannel (one small entry each), measured by a counting allocator over
//! 100,000 vchannels. The entries' bytes live in the mapped segment, not on the heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use log_store::{EntryFlags, EntryRef, PChannel, PChannelOptions, SyncPolicy, Term, VChannelId};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let opts = PChannelOptions {
        segment_bytes: 64 << 20,
        sync_policy: SyncPolicy::Never,
        checkpoint_interval: None,
        ..PChannelOptions::default()
    };
    let (pc, _) = PChannel::open(dir.path(), opts.clone()).unwrap();
    let payload = [1u8; 100];
    let before = LIVE.load(Ordering::Relaxed);
    for chunk in 0..N / 1000 {
        let entries: Vec<_> = (0..1000)
            .map(|i| EntryRef {
                vchannel: VChannelId(chunk * 1000 + i),
                first_offset: 0,
                last_offset: 0,
                max_timestamp: 0,
                flags: EntryFlags::default(),
                term: Term(1),
                prefix: &payload[..16],
                rest: &payload[16..],
            })
            .collect();
        pc.append(&entries).unwrap();
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "live heap per idle vchannel after appends: {} bytes",
        (after - before) as u64 / N
    );
    pc.close().unwrap();
    drop(pc);
    let before = LIVE.load(Ordering::Relaxed);
    let (pc, _) = PChannel::open(dir.path(), opts).unwrap();
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "live heap per idle vchannel after reopen: {} bytes",
        (after - before) as u64 / N
    );
    drop(pc);
}
