//! The group coordinator: classic groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup),
//! consumer groups of KIP-848 (ConsumerGroupHeartbeat, in [`consumer`]), and committed offsets
//! stored durably in the internal topic `__consumer_offsets`. A group belongs to one partition
//! of that topic; the broker that owns the partition's pchannel is the group's coordinator.

pub mod commit_queue;
pub mod consumer;
pub mod cooperative;
pub mod coordinator;
pub mod expiration;
pub mod group_type;
pub mod heartbeat_hold;
pub mod membership;
pub mod offsets;
pub mod rebalance;
pub mod state;
pub mod static_member;

pub use coordinator::{GroupCoordinator, GroupHandle, Home};
pub use group_type::GroupType;
pub use state::{Group, GroupState};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Why a group operation failed inside the coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// A record of `__consumer_offsets` could not be decoded.
    #[error("corrupt __consumer_offsets record: {0}")]
    CorruptRecord(&'static str),
    /// A record batch could not be encoded or decoded.
    #[error("record batch codec: {0}")]
    Encode(String),
    /// Reading the offsets partition failed.
    #[error("reading __consumer_offsets failed: {0}")]
    Read(#[from] log_store::LogError),
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's `String.hashCode` over UTF-16
/// code units, and `Utils.abs` mapping `i32::MIN` to 0 (so the result is never negative).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "".hashCode() == 0; "a".hashCode() == 97; "my-group".hashCode() == -1_906_497_762.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("my-group", 50), 1_906_497_762 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Utils.abs maps it to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for g in ["console-consumer-12345", "zzzzzzzzzzzz", "ü-group"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p), "{g}: {p}");
        }
    }
}
