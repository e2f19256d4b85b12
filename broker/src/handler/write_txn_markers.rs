//! WriteTxnMarkers: a transaction coordinator (on another broker) asks this broker to write
//! commit or abort markers into partitions it owns.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_protocol::RequestHeader;

use crate::broker::Broker;
use crate::txn::markers::write_local;

/// Answers a WriteTxnMarkers request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(request.markers.len());
    for marker in &request.markers {
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in &marker.topics {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for &p in &topic.partition_indexes {
                let code = write_local(
                    broker,
                    marker.producer_id.0,
                    marker.producer_epoch,
                    marker.transaction_result,
                    marker.coordinator_epoch,
                    topic.name.as_str(),
                    p,
                )
                .await
                .err()
                .unwrap_or(0);
                if code != 0 {
                    broker.count_error("WriteTxnMarkers", code);
                }
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
