//! The one error type of the log store, [`LogError`].

use std::io;
use std::path::PathBuf;

use crate::types::{Position, VChannelId};

/// Everything that can go wrong in the log store.
///
/// Bad bytes on disk surface as [`LogError::Corrupt`] (or are cut by recovery and reported in a
/// [`crate::RecoveryReport`]); they are never a panic.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A system call on a file of the pchannel failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Bytes on disk do not match the format of `DESIGN.md`.
    #[error("corrupt data in {path} at position {position}: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// The logical pchannel position (or file offset for side files) of the damage.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// The offset is below the vchannel's `log_start_offset` or past its `log_end_offset`.
    #[error(
        "offset {offset} out of range for vchannel {vchannel:?} \
         (log_start_offset {log_start_offset}, log_end_offset {log_end_offset})"
    )]
    OffsetOutOfRange {
        /// The vchannel read.
        vchannel: VChannelId,
        /// The offset asked for.
        offset: i64,
        /// First offset still stored.
        log_start_offset: i64,
        /// Next offset to be assigned.
        log_end_offset: i64,
    },
    /// An append's first offset is not the vchannel's next offset (offsets must be dense).
    #[error("vchannel {vchannel:?} expects first offset {expected}, got {got}")]
    OffsetMismatch {
        /// The vchannel appended to.
        vchannel: VChannelId,
        /// The vchannel's `log_end_offset`.
        expected: i64,
        /// The entry's first offset.
        got: i64,
    },
    /// An entry's fields are inconsistent (e.g. last offset below first offset, reserved flags).
    #[error("invalid entry for vchannel {vchannel:?}: {reason}")]
    InvalidEntry {
        /// The vchannel appended to.
        vchannel: VChannelId,
        /// What is wrong.
        reason: &'static str,
    },
    /// An entry does not fit in one segment.
    #[error("entry of {size} bytes does not fit in a segment of {segment_bytes} bytes")]
    EntryTooLarge {
        /// Header plus payload size.
        size: u64,
        /// Configured segment size.
        segment_bytes: u64,
    },
    /// The vchannel was deleted with [`crate::PChannel::delete_vchannel`].
    #[error("vchannel {0:?} was deleted")]
    VChannelDeleted(VChannelId),
    /// The vchannel has never been written to.
    #[error("unknown vchannel {0:?}")]
    UnknownVChannel(VChannelId),
    /// A position that must start an entry does not.
    #[error("position {position} is not the start of an entry: {reason}")]
    InvalidPosition {
        /// The position given.
        position: Position,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The pchannel was closed.
    #[error("pchannel is closed")]
    Closed,
    /// An earlier write-back of the pchannel failed (sealing a rolled segment); nothing is
    /// made durable after it, since the kernel may have dropped the pages it could not write.
    #[error("pchannel write-back failed earlier: {0}")]
    WriteBackFailed(String),
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}
