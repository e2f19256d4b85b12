//! The append pipeline of a pchannel, one stage per module, run in this order:
//! validate (on the request's task, so CRC work spreads over cores) → idempotence and sequence
//! (on the pchannel's writer thread, which owns the per-producer state and assigns offsets) →
//! transaction (open transactions, LSO, aborted index) → persist and publish (the writer's group
//! commit, in `wal.rs`).

pub mod idempotence;
pub mod sequence;
pub mod transaction;
pub mod validate;

pub use sequence::{PreparedBatch, prepare};
pub use validate::{Limits, ValidatedBatches, validate};

/// Why a partition's append was refused; mapped to a Kafka error code by the handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The records field is not a sequence of well-formed v2 batches.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A batch is larger than `message.max.bytes` / `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The batch size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch of an older format (magic 0 or 1).
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    /// A timestamp outside what the topic accepts.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// An idempotent producer's batch does not continue its sequence.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer's epoch is older than the one on record (a fenced producer).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A batch a client may not write (a control batch).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The pchannel is closing or no longer served here.
    #[error("the pchannel is not served by this broker")]
    NotServing,
    /// The log store failed.
    #[error("storage error: {0}")]
    Storage(String),
}
