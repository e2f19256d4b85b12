//! Kafka wire protocol for Sluice: bytes in, typed requests out, response bytes back.
//!
//! The crate knows nothing of sockets or tokio. A broker connection loop uses it like this:
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use sluice_protocol::{
//!     ApiVersionTable, FrameDecoder, Request, RequestHeader, decode_request, encode_response,
//! };
//! use sluice_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataResponse};
//!
//! # let mut read_buf = BytesMut::new();
//! # sluice_protocol::test_support::put_request(
//! #     &mut read_buf, ApiKey::Metadata, 12, 7, Some("demo"),
//! #     &sluice_protocol::messages::MetadataRequest::default(),
//! # ).unwrap();
//! let table = ApiVersionTable::all();
//! let frames = FrameDecoder::new(100 * 1024 * 1024);
//! let mut out = BytesMut::new();
//! // `read_buf` is the connection's read buffer, filled from the socket.
//! while let Some(frame) = frames.decode(&mut read_buf).expect("oversize frame: close") {
//!     match decode_request(frame, &table) {
//!         Ok((header, Request::Metadata(_req))) => {
//!             let body = MetadataResponse::default();
//!             encode_response(&mut out, &header, &body).unwrap();
//!         }
//!         Ok((_header, _other)) => { /* dispatch.rs: one match on the request */ }
//!         Err(e) if e.api_versions_fallback().is_some() => { /* v0 ApiVersions answer */ }
//!         Err(_e) => { /* log, close the connection */ }
//!     }
//! }
//! assert!(!out.is_empty());
//! ```
#![deny(missing_docs)]

pub mod batch;
pub mod bounds;
mod bounds_schema;
pub mod consumer_protocol;
pub mod control;
pub mod decompress;
pub mod errors;
pub mod frame;
pub mod header;
pub mod request;
pub mod response;
pub mod test_support;
pub mod timestamp;
pub mod versions;
mod wire;

pub use batch::{BatchError, BatchIter, RecordBatchHeader};
pub use errors::{DecodeError, EncodeError, ErrorCode, ResponseError};
pub use frame::FrameDecoder;
pub use header::RequestHeader;
pub use request::{Request, decode_request};
pub use response::{
    ResponseParts, Splice, encode_response, encode_response_spliced, encode_response_to,
    encode_response_vectored,
};
pub use versions::{ApiVersionTable, SUPPORTED_APIS, SupportedApi};

/// The message types of the Kafka protocol (re-exported from `kafka-protocol`).
pub use kafka_protocol::messages;
/// Wire-level helper types of `kafka-protocol` (`StrBytes`, `Encodable`, ...).
pub use kafka_protocol::protocol;
