//! The pchannel engine: a physical write-ahead log of preallocated, memory-mapped segment files
//! in which many vchannels (dense offset spaces) are interleaved.
//!
//! Entries are opaque payloads tagged with a vchannel id, offsets, a max timestamp, flags and a
//! term; the crate knows nothing of Kafka or async runtimes. See `DESIGN.md` for the on-disk
//! format and [`PChannel`] for the operations.
#![deny(missing_docs)]

mod append;
mod checkpoint;
mod entry;
mod error;
mod index;
mod pchannel;
mod read;
mod recovery;
mod recycle;
mod retention;
mod scan;
mod seal;
mod segment;
mod sync;
mod truncate;
mod types;
mod writeback;

pub use error::LogError;
pub use pchannel::PChannel;
pub use recovery::{Cut, RecoveryReport};
pub use retention::RetentionReport;
pub use scan::{ScanBatch, ScanEntry};
pub use types::{
    AppendOutcome, EntryFlags, EntryRef, PChannelOptions, Position, ReadEntry, Retention,
    SyncPolicy, Term, TimestampHit, VChannelId, VChannelState,
};

/// Format version of segment, index and checkpoint files (see `DESIGN.md`).
pub const FORMAT_VERSION: u32 = 1;
