//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): members send
//! ConsumerGroupHeartbeat, the coordinator computes their target assignment with a server-side
//! assignor (`uniform` or `range`), and each member reconciles towards it incrementally — a
//! partition moves to its new owner only after its previous owner revoked it, and members whose
//! partitions do not move keep consuming through a rebalance.
//!
//! A group id is either a classic group or a consumer group (see [`super::Group`]); committed
//! offsets are shared and durable, the membership state here is kept in memory only.

pub mod assignor;
pub mod group;
pub mod heartbeat;
pub mod member;
pub mod range;
pub mod reconcile;
pub mod uniform;

pub use assignor::Assignor;
pub use group::{ConsumerGroup, ConsumerGroupState, Topics};
pub use heartbeat::{HeartbeatError, HeartbeatRequest, HeartbeatResponse, Settings};
pub use member::{Assignment, ConsumerMember};

#[cfg(test)]
mod tests;
