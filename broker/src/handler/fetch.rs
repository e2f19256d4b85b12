//! Fetch: reads each partition's batches from its vchannel as slices of the segment maps and
//! long-polls on the pchannels' publish notifiers until `min_bytes` are there or `max_wait_ms`
//! passes. Fetch sessions (KIP-227) are declined with session id 0, so clients send full
//! fetches; answers are complete either way.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use log_store::{LogError, VChannelId};
use sluice_protocol::{RequestHeader, ResponseError, Splice};
use sluice_raft::state::MetadataState;
use tokio::sync::watch;

use super::{local_wal, route};
use crate::broker::Broker;

/// Partitions whose records are smaller than this are copied into one buffer: a separate
/// `iovec` per stored batch costs more than the copy.
const SPLICE_MIN_BYTES: usize = 16 * 1024;

/// Stands in for a partition's records in the response message while the frame carries the
/// stored batches themselves (see `sluice_protocol::Splice`). Zeroed by the allocator and never
/// read or written, so its pages are never touched.
static PLACEHOLDER: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(vec![0u8; 64 << 20]));

/// Answers a Fetch request: the response, and the stored batches that replace its records'
/// placeholders when it is encoded.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: FetchRequest,
) -> (FetchResponse, Vec<Splice>) {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if header.api_version >= 3 {
        request.max_bytes.max(0) as usize
    } else {
        usize::MAX
    };
    loop {
        let state = broker.cluster.state();
        // Subscribe before reading, so an append between the read and the wait still wakes us.
        let mut notifiers: Vec<watch::Receiver<u64>> = Vec::new();
        let mut budget = max_bytes;
        let mut total = 0usize;
        let mut any_error = false;
        let mut splices = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let (data, notifier, splice) =
                    read_partition(broker, &state, topic.topic.as_str(), p, budget, total == 0);
                splices.extend(splice);
                let len = data.records.as_ref().map_or(0, Bytes::len);
                if len > 0 {
                    broker
                        .metrics
                        .bytes_out
                        .with_label_values(&[topic.topic.as_str()])
                        .inc_by(len as u64);
                }
                budget = budget.saturating_sub(len);
                total += len;
                any_error |= data.error_code != 0;
                if let Some(mut n) = notifier {
                    n.borrow_and_update();
                    notifiers.push(n);
                }
                partitions.push(data);
            }
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions),
            );
        }
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || notifiers.is_empty() {
            let response = FetchResponse::default()
                .with_responses(topics)
                .with_session_id(0);
            return (response, splices);
        }
        let changed =
            futures_util::future::select_all(notifiers.iter_mut().map(|n| Box::pin(n.changed())));
        if tokio::time::timeout(deadline - now, changed).await.is_err() {
            let response = FetchResponse::default()
                .with_responses(topics)
                .with_session_id(0);
            return (response, splices);
        }
    }
}

/// Reads one partition; also returns the pchannel notifier to wait on when it is served here.
fn read_partition(
    broker: &Broker,
    state: &MetadataState,
    topic: &str,
    p: &FetchPartition,
    budget: usize,
    first_with_data: bool,
) -> (PartitionData, Option<watch::Receiver<u64>>, Option<Splice>) {
    let mut data = PartitionData::default()
        .with_partition_index(p.partition)
        .with_records(Some(Bytes::new()));
    let fail = |data: PartitionData, code: i16| {
        (
            data.with_error_code(code).with_high_watermark(-1),
            None,
            None,
        )
    };
    let route = match route(state, topic, p.partition) {
        Ok(r) => r,
        Err(code) => return fail(data, code),
    };
    if p.current_leader_epoch >= 0 && p.current_leader_epoch != route.leader_epoch {
        let code = if p.current_leader_epoch < route.leader_epoch {
            ResponseError::FencedLeaderEpoch
        } else {
            ResponseError::UnknownLeaderEpoch
        };
        return fail(data, code.code());
    }
    let wal = match local_wal(broker, &route) {
        Ok(w) => w,
        Err(code) => return fail(data, code),
    };
    let notifier = wal.subscribe();
    let vchannel = VChannelId(route.vchannel);
    let (log_start, log_end) = wal
        .log
        .vchannel_state(vchannel)
        .map_or((0, 0), |s| (s.log_start_offset, s.log_end_offset));
    data = data
        .with_high_watermark(log_end)
        .with_last_stable_offset(log_end)
        .with_log_start_offset(log_start);
    if p.fetch_offset < log_start || p.fetch_offset > log_end {
        return (
            data.with_error_code(ResponseError::OffsetOutOfRange.code()),
            None,
            None,
        );
    }
    // KIP-74: the first partition with data returns at least one batch, whatever the limits.
    let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
    if p.fetch_offset == log_end || (limit == 0 && !first_with_data) {
        return (data, Some(notifier), None);
    }
    match wal.log.read(vchannel, p.fetch_offset, limit.max(1)) {
        Ok(entries) => {
            let len: usize = entries.iter().map(|e| e.payload.len()).sum();
            let parts: Vec<Bytes> = entries.into_iter().map(|e| e.payload).collect();
            let (records, splice) = match parts.len() {
                0 => (Bytes::new(), None),
                1 if len >= SPLICE_MIN_BYTES => {
                    let splice = Splice {
                        placeholder: parts[0].clone(),
                        parts,
                    };
                    (splice.placeholder.clone(), Some(splice))
                }
                _ if len >= SPLICE_MIN_BYTES && len <= PLACEHOLDER.len() => {
                    let splice = Splice {
                        placeholder: PLACEHOLDER.slice(..len),
                        parts,
                    };
                    (splice.placeholder.clone(), Some(splice))
                }
                _ => {
                    let mut buf = BytesMut::with_capacity(len);
                    for part in &parts {
                        buf.extend_from_slice(part);
                    }
                    (buf.freeze(), None)
                }
            };
            (data.with_records(Some(records)), Some(notifier), splice)
        }
        Err(LogError::OffsetOutOfRange { .. }) => (
            data.with_error_code(ResponseError::OffsetOutOfRange.code()),
            None,
            None,
        ),
        Err(_) => (
            data.with_error_code(ResponseError::KafkaStorageError.code()),
            None,
            None,
        ),
    }
}
