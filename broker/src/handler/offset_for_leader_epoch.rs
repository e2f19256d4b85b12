//! OffsetForLeaderEpoch (KIP-101/KIP-320): the end offset of a leader epoch, so consumers can
//! detect log truncation after a leader change. A partition's leader epoch is its pchannel's
//! term, stored with every entry; terms only grow along a vchannel's offsets, so the end of
//! epoch E is found by binary search for the first entry whose term exceeds E.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use log_store::VChannelId;
use sluice_protocol::{RequestHeader, ResponseError};

use super::{local_wal, route};
use crate::broker::Broker;
use crate::streaming::Wal;

/// Answers an OffsetForLeaderEpoch request.
pub fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let state = broker.cluster.state();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let out = EpochEndOffset::default().with_partition(p.partition);
                    let result = (|| {
                        let route = route(&state, topic.topic.as_str(), p.partition)?;
                        route.check_leader_epoch(p.current_leader_epoch)?;
                        let wal = local_wal(broker, &route)?;
                        epoch_end(
                            &wal,
                            VChannelId(route.vchannel),
                            p.leader_epoch,
                            route.leader_epoch,
                        )
                    })();
                    match result {
                        Ok((epoch, end_offset)) => {
                            out.with_leader_epoch(epoch).with_end_offset(end_offset)
                        }
                        Err(code) => out
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// `(largest epoch ≤ requested present in the log, its end offset)`, or `(-1, -1)`.
fn epoch_end(
    wal: &Wal,
    vchannel: VChannelId,
    requested: i32,
    current: i32,
) -> Result<(i32, i64), i16> {
    let (log_start, log_end) = wal
        .log
        .vchannel_state(vchannel)
        .map_or((0, 0), |s| (s.log_start_offset, s.log_end_offset));
    if requested >= current {
        return Ok(if requested == current {
            (current, log_end)
        } else {
            (-1, -1)
        });
    }
    let term_at = |offset: i64| -> Result<(i64, i32), i16> {
        let entries = wal
            .log
            .read(vchannel, offset, 1)
            .map_err(|_| ResponseError::KafkaStorageError.code())?;
        let e = entries
            .first()
            .ok_or(ResponseError::KafkaStorageError.code())?;
        Ok((e.first_offset, i32::try_from(e.term.0).unwrap_or(i32::MAX)))
    };
    // Smallest offset whose entry's term is above `requested`.
    let (mut lo, mut hi) = (log_start, log_end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if term_at(mid)?.1 > requested {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if lo == log_start {
        return Ok((-1, -1));
    }
    let end = if lo == log_end {
        log_end
    } else {
        term_at(lo)?.0
    };
    let (_, epoch) = term_at(lo - 1)?;
    Ok((epoch, end))
}
