//! The pchannel engine.
#![deny(missing_docs)]
