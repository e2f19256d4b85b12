//! Inputs the fuzzer once failed on (protocol/fuzz/regressions/), replayed through the public API.

use bytes::Bytes;
use sluice_protocol::timestamp::first_offset_at_or_after;
use sluice_protocol::{ApiVersionTable, BatchIter, Request, decode_request};

#[test]
fn fuzz_regressions_decode_without_panic_or_huge_allocation() {
    let dir = format!("{}/fuzz/regressions", env!("CARGO_MANIFEST_DIR"));
    let table = ApiVersionTable::all();
    let (mut n, mut batches) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        n += 1;
        let Ok((_, Request::Produce(req))) = decode_request(Bytes::from(data), &table) else {
            // The DescribeConfigs input must be refused by the bounds walk, not decoded.
            continue;
        };
        for t in &req.topic_data {
            for p in &t.partition_data {
                for batch in BatchIter::new(p.records.as_deref().unwrap_or_default()).flatten() {
                    // The snappy batch declaring 4 GiB must fail, not allocate it.
                    let result = first_offset_at_or_after(&batch, batch.base_timestamp());
                    assert!(result.is_err(), "{result:?}");
                    batches += 1;
                }
            }
        }
    }
    assert!(n >= 1 && batches >= 1, "{n} inputs, {batches} batches");
}
