//! AddOffsetsToTxn: adds the `__consumer_offsets` partition of a group to a producer's open
//! transaction, before the producer sends TxnOffsetCommit to the group's coordinator.

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};

/// Answers an AddOffsetsToTxn request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let outcome = match GroupCoordinator::coordinator_of(broker, request.group_id.as_str()) {
        Err(code) => Err(code),
        Ok((partition, _)) => {
            broker
                .txns
                .add_partitions(
                    broker,
                    request.transactional_id.as_str(),
                    request.producer_id.0,
                    request.producer_epoch,
                    &[(OFFSETS_TOPIC.to_string(), partition)],
                    false,
                )
                .await
        }
    };
    let mut code = outcome.err().unwrap_or(0);
    if code == ResponseError::ProducerFenced.code() && header.api_version < 2 {
        code = ResponseError::InvalidProducerEpoch.code();
    }
    if code != 0 {
        broker.count_error("AddOffsetsToTxn", code);
    }
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
