//! The small value types of the public API: ids, positions, flags, entries and options.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// One vchannel (a topic-partition) inside a pchannel. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VChannelId(pub u64);

/// The assignment term (leader epoch) under which an entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Term(pub u64);

/// A logical byte position in a pchannel. Positions grow monotonically across segments; a
/// segment is named by its first position and an entry's position is that of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Flags stored with an entry. The low byte is the caller's; the high byte is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntryFlags(pub u16);

impl EntryFlags {
    /// The entry is a control batch (Kafka transaction marker, KIP-98).
    pub const CONTROL: EntryFlags = EntryFlags(0x0001);
    /// The entry belongs to a transaction.
    pub const TRANSACTIONAL: EntryFlags = EntryFlags(0x0002);
    /// Internal: the entry is a copy written by compaction (its offsets already existed).
    pub(crate) const COPY: u16 = 0x8000;
    /// Bits callers may set.
    pub(crate) const CALLER_MASK: u16 = 0x00ff;

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: EntryFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets.
    pub fn union(self, other: EntryFlags) -> EntryFlags {
        EntryFlags(self.0 | other.0)
    }
}

/// One entry to append, borrowed from the caller.
///
/// The payload is stored contiguously as `prefix` followed by `rest` (the broker passes the
/// rewritten first bytes of a Kafka batch and the untouched remainder).
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// The vchannel the entry belongs to.
    pub vchannel: VChannelId,
    /// First offset covered; must equal the vchannel's `log_end_offset`.
    pub first_offset: i64,
    /// Last offset covered (inclusive).
    pub last_offset: i64,
    /// Largest timestamp in the entry, in ms.
    pub max_timestamp: i64,
    /// Caller flags ([`EntryFlags::CONTROL`], [`EntryFlags::TRANSACTIONAL`], ...).
    pub flags: EntryFlags,
    /// Term of the writer.
    pub term: Term,
    /// First part of the payload.
    pub prefix: &'a [u8],
    /// Second part of the payload.
    pub rest: &'a [u8],
}

/// One entry returned by a read: a zero-copy slice of the segment map and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// First offset covered.
    pub first_offset: i64,
    /// Last offset covered (inclusive).
    pub last_offset: i64,
    /// Largest timestamp in the entry, in ms.
    pub max_timestamp: i64,
    /// Caller flags given at append.
    pub flags: EntryFlags,
    /// Term given at append.
    pub term: Term,
    /// Position of the entry in the pchannel.
    pub position: Position,
    /// The payload (`prefix` + `rest` as appended), sharing the segment's memory map.
    pub payload: Bytes,
}

/// What [`crate::PChannel::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Position of each entry, in the order given.
    pub positions: Vec<Position>,
    /// Position just after the last entry: pass it to [`crate::PChannel::wait_durable`].
    pub end: Position,
}

/// When appended bytes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every `append` returns only after an msync that covers it (appenders share one).
    Always,
    /// A flusher thread syncs every `n` ms; `wait_durable` waits for it.
    IntervalMs(u64),
    /// Never sync on behalf of appends (page cache only); `sync()` still works.
    Never,
}

/// Options of [`crate::PChannel::open`].
#[derive(Debug, Clone)]
pub struct PChannelOptions {
    /// Size of each preallocated segment file (default 1 GiB).
    pub segment_bytes: u64,
    /// Durability policy (default `IntervalMs(10)`).
    pub sync_policy: SyncPolicy,
    /// How often the background thread writes a checkpoint; `None` writes them only on
    /// metadata changes and `close`.
    pub checkpoint_interval: Option<Duration>,
    /// A sealed segment whose live bytes are at most this fraction of its size is compacted by
    /// [`crate::PChannel::enforce_retention`] (0 disables compaction; default 0.25).
    pub compact_live_ratio: f64,
    /// Verify each entry's CRC when it is read (default true): damage in sealed or
    /// checkpointed data, which open does not re-read, then surfaces as `LogError::Corrupt`.
    pub verify_reads: bool,
    /// How many files of sealed segments deleted by retention are kept as spares and reused
    /// when the active segment rolls (default 2; 0 deletes them). A reused file's blocks are
    /// already allocated and written, so syncs over them commit no block allocation.
    pub recycle_segments: usize,
    /// Every time this many bytes have been appended, a background thread asks the kernel to
    /// start writing them back (`sync_file_range`), so pages no sync has covered yet do not
    /// pile up into a backlog that a later sync, segment roll or the kernel makes the writer
    /// wait for. A hint only: what is durable still depends on `sync_policy` alone. 0 (the
    /// default) disables it; the broker sets 32 MiB (`wal.writeback.bytes`).
    pub writeback_bytes: u64,
}

impl Default for PChannelOptions {
    fn default() -> Self {
        PChannelOptions {
            segment_bytes: 1 << 30,
            sync_policy: SyncPolicy::IntervalMs(10),
            checkpoint_interval: Some(Duration::from_secs(30)),
            compact_live_ratio: 0.25,
            verify_reads: true,
            recycle_segments: 2,
            writeback_bytes: 0,
        }
    }
}

/// Retention settings of one vchannel (Kafka's `retention.ms` / `retention.bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Entries whose max timestamp is older than `now - ms` are removed.
    pub ms: Option<i64>,
    /// Oldest entries are removed while the vchannel holds more than this many payload bytes.
    pub bytes: Option<u64>,
}

/// State of one vchannel, from [`crate::PChannel::vchannel_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VChannelState {
    /// First offset still readable.
    pub log_start_offset: i64,
    /// Next offset to be assigned.
    pub log_end_offset: i64,
    /// Entries stored (live).
    pub entry_count: u64,
    /// Payload bytes stored (live).
    pub payload_bytes: u64,
    /// Retention settings.
    pub retention: Retention,
}

/// Result of a timestamp lookup: the first entry whose max timestamp is at least the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampHit {
    /// First offset of the entry.
    pub first_offset: i64,
    /// Last offset of the entry.
    pub last_offset: i64,
    /// The entry's max timestamp.
    pub max_timestamp: i64,
}
