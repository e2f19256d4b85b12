//! Kafka wire protocol for Sluice.
#![deny(missing_docs)]
