//! The crate's one error type: storage failures, proposal outcomes and command rejections.

use std::io;
use std::path::PathBuf;

use crate::command::CommandError;

/// Everything that can go wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a Raft file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A Raft file is corrupt or truncated; the store refuses to start rather than lose data.
    #[error("corrupt Raft file {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// This node is not the leader; retry on `leader` if known. `propose` forwards to the
    /// leader instead and returns this only on a node without a Raft listener; membership
    /// changes (`add_voter`, `remove_voter`) still return it on followers.
    #[error("not the Raft leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<u64>,
    },
    /// The proposal was overwritten by another leader's entry; it was not applied. `propose`
    /// sends such a command again by itself; membership changes return this.
    #[error("proposal dropped by a leader change")]
    ProposalDropped,
    /// A snapshot replaced the log under the proposal (on the proposer, or on the leader of
    /// a forwarded one): it may or may not have been applied.
    #[error("proposal outcome unknown (log replaced by a snapshot)")]
    OutcomeUnknown,
    /// The command was applied deterministically and rejected by the state machine.
    #[error("command rejected: {0}")]
    Rejected(#[from] CommandError),
    /// The operation did not complete in time; a proposal may still be applied later.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The store is shutting down or has stopped.
    #[error("the metadata store has stopped")]
    Stopped,
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// raft-rs reported an error.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A snapshot or command could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
