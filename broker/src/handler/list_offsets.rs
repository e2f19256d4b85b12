//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734) and by timestamp, where
//! the index finds the first batch whose max timestamp reaches the target and the batch's
//! records give the exact offset.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use log_store::VChannelId;
use sluice_protocol::decompress::DEFAULT_MAX_DECOMPRESSED;
use sluice_protocol::timestamp::first_record_at_or_after;
use sluice_protocol::{RecordBatchHeader, RequestHeader, ResponseError};

use super::{local_wal, route};
use crate::broker::Broker;
use crate::streaming::Wal;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

/// Answers a ListOffsets request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let state = broker.cluster.state();
    // read_committed consumers' "latest" is the last stable offset (KIP-98).
    let read_committed = header.api_version >= 2 && request.isolation_level == 1;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut out = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = (|| {
                        let route = route(&state, topic.name.as_str(), p.partition_index)?;
                        route.check_leader_epoch(p.current_leader_epoch)?;
                        let wal = local_wal(broker, &route)?;
                        lookup(
                            &wal,
                            VChannelId(route.vchannel),
                            p.timestamp,
                            read_committed,
                        )
                        .map(|found| (found, route.leader_epoch))
                    })();
                    match result {
                        Ok(((offset, timestamp), epoch)) => {
                            out = out.with_offset(offset).with_timestamp(timestamp);
                            if header.api_version >= 4 {
                                out = out.with_leader_epoch(epoch);
                            }
                        }
                        Err(code) => {
                            out = out.with_error_code(code).with_offset(-1).with_timestamp(-1);
                        }
                    }
                    out
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(offset, timestamp)` for one query; `(-1, -1)` when no record has a timestamp ≥ the target.
fn lookup(
    wal: &Wal,
    vchannel: VChannelId,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64), i16> {
    let (log_start, mut log_end) = wal
        .log
        .vchannel_state(vchannel)
        .map_or((0, 0), |s| (s.log_start_offset, s.log_end_offset));
    if read_committed {
        log_end = wal.txns.lock().last_stable_offset(vchannel, log_end);
    }
    match timestamp {
        EARLIEST => Ok((log_start, -1)),
        LATEST => Ok((log_end, -1)),
        MAX_TIMESTAMP => match wal.log.max_timestamp_entry(vchannel) {
            None => Ok((-1, -1)),
            Some(hit) => Ok(
                find_in_entry(wal, vchannel, hit.first_offset, hit.max_timestamp)?
                    .unwrap_or((-1, -1)),
            ),
        },
        t if t < 0 => Err(ResponseError::InvalidRequest.code()),
        t => match wal.log.lookup_timestamp(vchannel, t) {
            None => Ok((-1, -1)),
            Some(hit) => Ok(find_in_entry(wal, vchannel, hit.first_offset, t)?
                .map_or((-1, -1), |(o, ts)| (o.max(log_start), ts))),
        },
    }
}

/// `(offset, timestamp)` of the first record at or after `target` in the entry at
/// `first_offset`: the index finds the batch, the batch's records give the record.
fn find_in_entry(
    wal: &Wal,
    vchannel: VChannelId,
    first_offset: i64,
    target: i64,
) -> Result<Option<(i64, i64)>, i16> {
    let entries = wal
        .log
        .read(vchannel, first_offset, 1)
        .map_err(|_| ResponseError::KafkaStorageError.code())?;
    let Some(entry) = entries.first() else {
        return Ok(None);
    };
    let batch = RecordBatchHeader::parse(&entry.payload)
        .map_err(|_| ResponseError::CorruptMessage.code())?;
    first_record_at_or_after(&batch, target, DEFAULT_MAX_DECOMPRESSED)
        .map_err(|_| ResponseError::CorruptMessage.code())
}
