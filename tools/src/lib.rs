//! Sluice's operator tools: `sluice-admin` (admin CLI over the Kafka protocol) and
//! `sluice-bench` (load generator over librdkafka), with the client pieces they share.

pub mod admin;
pub mod args;
pub mod bench;
pub mod client;
pub mod error;
pub mod partitioner;
pub mod table;
