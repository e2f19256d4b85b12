//! InitProducerId for idempotent producers: a fresh producer id at epoch 0 from the Raft-backed
//! blocks. Transactional ids need the transaction coordinator, which Sluice does not have yet.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use slog::{Logger, info, warn};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::{Broker, metadata_error_code};

/// Answers an InitProducerId request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: InitProducerIdRequest,
    log: &Logger,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        broker.count_error(
            "InitProducerId",
            ResponseError::CoordinatorNotAvailable.code(),
        );
        return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    // Kafka gives an idempotent producer a new id on every InitProducerId, including the
    // KIP-360 re-initialisation that carries the old id and epoch.
    match broker.producer_ids.next(&broker.cluster).await {
        Ok(id) => {
            info!(log, "producer id assigned"; "producer_id" => id);
            response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => {
            warn!(log, "producer id allocation failed"; "error" => %e);
            let code = metadata_error_code(&e);
            broker.count_error("InitProducerId", code);
            response.with_error_code(code)
        }
    }
}
