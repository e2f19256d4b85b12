//! The Sluice broker: the only crate that composes the protocol, the log store and the Raft
//! metadata store. It owns tokio, sockets, configuration, metrics and logging.

pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod coord;
pub mod dispatch;
pub mod group;
pub mod handler;
pub mod interbroker;
pub mod internal_topic;
pub mod lag;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod producer_ids;
pub mod server;
pub mod streaming;
pub mod topic_config;
pub mod txn;

pub use broker::run;
