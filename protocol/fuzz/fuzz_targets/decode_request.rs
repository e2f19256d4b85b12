//! Fuzzes the request path a broker connection runs on untrusted bytes:
//! frame splitting, header, version check, bounds walk, typed decode, and the
//! batch views of any produce records.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sluice_protocol::timestamp::first_offset_at_or_after;
use sluice_protocol::{ApiVersionTable, BatchIter, FrameDecoder, Request, RequestHeader};

fuzz_target!(|data: &[u8]| {
    let table = ApiVersionTable::all();
    // The input as one frame body (most of the search space)...
    check(Bytes::copy_from_slice(data), &table);
    // ...and as a stream of size-prefixed frames under a small limit.
    let frames = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        check(frame, &table);
    }
});

fn check(mut frame: Bytes, table: &ApiVersionTable) {
    let Ok(header) = RequestHeader::decode(&mut frame) else {
        return;
    };
    let walked = sluice_protocol::bounds::check(header.api_key, header.api_version, &frame);
    let mut body = frame.clone();
    let decoded = Request::decode(&header, &mut body, table);
    // Differential check: where kafka-protocol decodes, the bounds walk must
    // have accepted and ended at the same byte, or the walk guards nothing.
    if decoded.is_ok() {
        assert_eq!(
            walked.ok(),
            Some(frame.len() - body.len()),
            "{:?} v{}",
            header.api_key,
            header.api_version
        );
    }
    let Ok(Request::Produce(produce)) = decoded else {
        return;
    };
    for topic in &produce.topic_data {
        for partition in &topic.partition_data {
            let Some(records) = &partition.records else {
                continue;
            };
            for batch in BatchIter::new(records)
                .with_max_batch_size(1 << 20)
                .flatten()
            {
                let _ = batch.verify_crc();
                let _ = first_offset_at_or_after(&batch, batch.base_timestamp());
            }
        }
    }
}
