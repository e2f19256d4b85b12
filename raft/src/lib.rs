//! Sluice's embedded metadata store: a raft-rs group with durable storage, a TCP transport and
//! the metadata state machine (cluster, brokers, topics, placement, assignment, producer ids).
#![deny(missing_docs)]

pub mod command;
pub mod config;
pub mod error;
pub mod node;
pub mod peer;
pub mod placement;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod transport;

pub use command::{Command, CommandError, CommandResult};
pub use config::NodeConfig;
pub use node::{Change, MetadataStore, RaftStatus};
pub use error::{Error, Result};
pub use peer::{Peer, PeerConfig};
pub use state::MetadataState;

/// raft-rs's message type, re-exported for transports and tests.
pub use raft::eraftpb::{Message as RaftMessage, MessageType};
