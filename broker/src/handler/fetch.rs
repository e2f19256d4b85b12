//! Fetch: reads each partition's batches from its vchannel as slices of the segment maps and
//! long-polls on the pchannels' publish notifiers until `min_bytes` are there or `max_wait_ms`
//! passes. `read_committed` fetches stop at the last stable offset and carry the aborted
//! transactions overlapping what they return.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use log_store::{LogError, VChannelId};
use sluice_protocol::{RequestHeader, ResponseError, Splice};
use sluice_raft::state::MetadataState;
use tokio::sync::watch;

use super::fetch_session::Reported;
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
    let planned = broker.fetch_sessions.plan(&request, header.api_version);
    broker
        .metrics
        .fetch_sessions
        .set(broker.fetch_sessions.len() as i64);
    let plan = match planned {
        Ok(plan) => {
            let kind = match (plan.session_id, &plan.reported) {
                (0, _) => "full",
                (_, None) => "session_full",
                (_, Some(_)) => "incremental",
            };
            broker
                .metrics
                .fetch_requests
                .with_label_values(&[kind])
                .inc();
            plan
        }
        Err(code) => {
            broker.count_error("Fetch", code);
            return (FetchResponse::default().with_error_code(code), Vec::new());
        }
    };
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_committed = header.api_version >= 4 && request.isolation_level == 1;
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
        let mut answered: Vec<(&str, PartitionData)> = Vec::with_capacity(plan.partitions.len());
        for (i, (topic, p)) in plan.partitions.iter().enumerate() {
            let (data, notifier, splice) =
                read_partition(broker, &state, topic, p, budget, total == 0, read_committed);
            if let Some(mut n) = notifier {
                n.borrow_and_update();
                notifiers.push(n);
            }
            let len = data.records.as_ref().map_or(0, Bytes::len);
            // An incremental fetch leaves out partitions with nothing new to say (KIP-227).
            if let Some(reported) = &plan.reported
                && len == 0
                && data.error_code == 0
                && reported[i].as_ref() == Some(&reported_of(&data))
            {
                continue;
            }
            splices.extend(splice);
            budget = budget.saturating_sub(len);
            total += len;
            any_error |= data.error_code != 0;
            answered.push((topic.as_str(), data));
        }
        let now = Instant::now();
        let done = total >= min_bytes || any_error || now >= deadline || notifiers.is_empty();
        if done {
            return (respond(broker, plan.session_id, answered), splices);
        }
        let changed =
            futures_util::future::select_all(notifiers.iter_mut().map(|n| Box::pin(n.changed())));
        if tokio::time::timeout(deadline - now, changed).await.is_err() {
            return (respond(broker, plan.session_id, answered), splices);
        }
    }
}

fn reported_of(data: &PartitionData) -> Reported {
    Reported {
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        log_start_offset: data.log_start_offset,
    }
}

/// The response for the partitions answered, grouped by topic in first-seen order; tells the
/// session what its client now knows and counts the bytes sent.
fn respond(
    broker: &Broker,
    session_id: i32,
    answered: Vec<(&str, PartitionData)>,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut reported = Vec::with_capacity(answered.len());
    for (topic, data) in answered {
        let len = data.records.as_ref().map_or(0, Bytes::len);
        if len > 0 {
            broker
                .metrics
                .bytes_out
                .with_label_values(&[topic])
                .inc_by(len as u64);
        }
        if session_id != 0 && data.error_code == 0 {
            reported.push((
                (topic.to_string(), data.partition_index),
                reported_of(&data),
            ));
        }
        match topics.iter_mut().find(|t| t.topic.as_str() == topic) {
            Some(t) => t.partitions.push(data),
            None => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![data]),
            ),
        }
    }
    broker.fetch_sessions.reported(session_id, reported);
    FetchResponse::default()
        .with_responses(topics)
        .with_session_id(session_id)
}

/// Reads one partition; also returns the pchannel notifier to wait on when it is served here.
fn read_partition(
    broker: &Broker,
    state: &MetadataState,
    topic: &str,
    p: &FetchPartition,
    budget: usize,
    first_with_data: bool,
    read_committed: bool,
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
    if let Err(code) = route.check_leader_epoch(p.current_leader_epoch) {
        return fail(data, code);
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
    let stable = wal.txns.lock().last_stable_offset(vchannel, log_end);
    data = data
        .with_high_watermark(log_end)
        .with_last_stable_offset(stable)
        .with_log_start_offset(log_start);
    if read_committed {
        data = data.with_aborted_transactions(Some(Vec::new()));
    }
    if p.fetch_offset < log_start || p.fetch_offset > log_end {
        return (
            data.with_error_code(ResponseError::OffsetOutOfRange.code()),
            None,
            None,
        );
    }
    // KIP-74: the first partition with data returns at least one batch, whatever the limits.
    let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
    // read_committed readers stop at the LSO: the batches of open transactions wait.
    let visible_end = if read_committed { stable } else { log_end };
    if p.fetch_offset >= visible_end || (limit == 0 && !first_with_data) {
        return (data, Some(notifier), None);
    }
    match wal.log.read(vchannel, p.fetch_offset, limit.max(1)) {
        Ok(mut entries) => {
            if read_committed {
                entries.retain(|e| e.first_offset < visible_end);
                if let Some(last) = entries.last() {
                    let aborted = wal
                        .txns
                        .lock()
                        .aborted_between(vchannel, p.fetch_offset, last.last_offset + 1)
                        .into_iter()
                        .map(|a| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect();
                    data = data.with_aborted_transactions(Some(aborted));
                }
            }
            let len: usize = entries.iter().map(|e| e.payload.len()).sum();
            if let Some(first) = entries.first() {
                broker
                    .metrics
                    .count_fetch_read(&wal.log, first.position, len);
            }
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
