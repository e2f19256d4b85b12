//! Sluice's embedded metadata store: a raft-rs group with durable storage, a TCP transport and
//! the metadata state machine (cluster, brokers, topics, placement, assignment, producer ids).
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use sluice_raft::{Command, CommandResult, MetadataStore, NodeConfig};
//!
//! # async fn example(logger: slog::Logger) -> sluice_raft::Result<()> {
//! // No peers: a one-voter group, created on first boot and reused afterwards.
//! let store = MetadataStore::start(NodeConfig::single(1, "./sluice-data/__raft"), logger).await?;
//! store.wait_initialized().await?;
//! let result = store
//!     .propose(Command::CreateTopic {
//!         name: "orders".into(),
//!         topic_id: uuid::Uuid::new_v4(),
//!         partitions: 3,
//!         configs: BTreeMap::new(),
//!     })
//!     .await?;
//! if let CommandResult::PartitionsCreated { placement, .. } = result {
//!     println!("(partition, vchannel, pchannel): {placement:?}");
//! }
//! let state = store.read().await?; // linearizable
//! assert!(state.topics.contains_key("orders"));
//! store.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod command;
pub mod config;
mod driver;
pub mod error;
pub mod forward;
pub mod node;
pub mod peer;
pub mod placement;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod transport;

pub use command::{Command, CommandError, CommandResult};
pub use config::{NodeConfig, PeerConfig};
pub use error::{Error, Result};
pub use node::{Change, MetadataStore, RaftStatus, VoterProgress};
pub use peer::Peer;
pub use state::MetadataState;

/// raft-rs's message types, re-exported for transports and tests.
pub use raft::eraftpb::{Message as RaftMessage, MessageType};
