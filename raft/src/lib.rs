//! The embedded Raft metadata store.
#![deny(missing_docs)]
