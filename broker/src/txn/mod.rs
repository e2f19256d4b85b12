//! The transaction coordinator (KIP-98): transactional ids, their producer ids and epochs, the
//! partitions of each open transaction, and the two-phase end of a transaction — the decision
//! (PrepareCommit / PrepareAbort) made durable in `__transaction_state`, then markers written to
//! every partition of the transaction, then CompleteCommit / CompleteAbort. A transactional id
//! belongs to one partition of `__transaction_state`; the broker owning that partition's
//! pchannel is its coordinator, and rebuilds the state from the partition's log when it opens.

pub mod coordinator;
pub mod log;
pub mod markers;

use std::collections::BTreeSet;

pub use coordinator::TransactionCoordinator;

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";

/// The state of a transactional id, numbered as in Kafka's `TransactionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum TxnStatus {
    /// No transaction open.
    Empty = 0,
    /// A transaction is open.
    Ongoing = 1,
    /// Commit decided; markers being written.
    PrepareCommit = 2,
    /// Abort decided; markers being written.
    PrepareAbort = 3,
    /// The last transaction committed.
    CompleteCommit = 4,
    /// The last transaction aborted.
    CompleteAbort = 5,
    /// The transactional id expired.
    Dead = 6,
    /// Kafka's intermediate state while fencing; Sluice goes straight to PrepareAbort.
    PrepareEpochFence = 7,
}

impl TxnStatus {
    /// The status with this number.
    pub fn from_i8(v: i8) -> Option<TxnStatus> {
        Some(match v {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name Kafka's admin APIs (ListTransactions, DescribeTransactions) use.
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Whether the markers of a decided transaction are still being written.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
    }
}

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its current producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// The state.
    pub status: TxnStatus,
    /// The partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the state last changed, ms since the epoch.
    pub last_update_ms: i64,
    /// When the open transaction started, or -1.
    pub start_ms: i64,
}
