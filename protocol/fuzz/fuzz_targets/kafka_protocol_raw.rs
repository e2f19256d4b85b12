//! Control experiment: kafka-protocol's decoder WITHOUT Sluice's bounds walk,
//! to show what the walk guards against (expect an out-of-memory report).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_protocol::messages::MetadataRequest;
use sluice_protocol::protocol::Decodable;

fuzz_target!(|data: &[u8]| {
    let mut body = Bytes::copy_from_slice(data);
    let _ = MetadataRequest::decode(&mut body, 4);
});
