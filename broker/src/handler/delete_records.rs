//! DeleteRecords: moves a partition's log start offset forward (offset -1 means the high
//! watermark); the log store frees segments once no live data remains in them.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use log_store::VChannelId;
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};

use super::{local_wal, route};
use crate::broker::Broker;

/// Answers a DeleteRecords request.
pub fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: DeleteRecordsRequest,
    log: &Logger,
) -> DeleteRecordsResponse {
    let state = broker.cluster.state();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let out = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let result = (|| {
                        let route = route(&state, topic.name.as_str(), p.partition_index)?;
                        let wal = local_wal(broker, &route)?;
                        let vchannel = VChannelId(route.vchannel);
                        let (log_start, log_end) =
                            wal.log.vchannel_state(vchannel).map_or((0, 0), |s| (s.log_start_offset, s.log_end_offset));
                        let target = if p.offset == -1 { log_end } else { p.offset };
                        if target < 0 || target > log_end {
                            return Err(ResponseError::OffsetOutOfRange.code());
                        }
                        if target <= log_start {
                            return Ok(log_start);
                        }
                        wal.log
                            .delete_records(vchannel, target)
                            .map_err(|_| ResponseError::KafkaStorageError.code())
                    })();
                    match result {
                        Ok(low_watermark) => {
                            info!(log, "records deleted"; "topic" => topic.name.as_str(),
                                "partition" => p.partition_index, "log_start_offset" => low_watermark);
                            out.with_low_watermark(low_watermark)
                        }
                        Err(code) => {
                            broker.count_error("DeleteRecords", code);
                            out.with_error_code(code).with_low_watermark(-1)
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
