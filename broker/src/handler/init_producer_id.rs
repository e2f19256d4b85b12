//! InitProducerId: for idempotent producers a fresh producer id at epoch 0 from the Raft-backed
//! blocks; for transactional producers the transactional id's producer id at a bumped epoch,
//! from its transaction coordinator (which fences older instances).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use slog::{Logger, info, warn};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::{Broker, metadata_error_code};

/// Answers an InitProducerId request.
pub async fn handle(
    broker: &std::sync::Arc<Broker>,
    header: &RequestHeader,
    request: InitProducerIdRequest,
    log: &Logger,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = &request.transactional_id {
        let expected =
            (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let result = broker
            .txns
            .init_producer_id(
                broker,
                transactional_id.as_str(),
                request.transaction_timeout_ms,
                expected,
            )
            .await;
        return match result {
            Ok((producer_id, epoch)) => {
                info!(log, "transactional producer initialised";
                    "transactional_id" => transactional_id.as_str(),
                    "producer_id" => producer_id, "epoch" => epoch);
                response
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch)
            }
            Err(mut code) => {
                // PRODUCER_FENCED exists from v4 on.
                if code == ResponseError::ProducerFenced.code() && header.api_version < 4 {
                    code = ResponseError::InvalidProducerEpoch.code();
                }
                broker.count_error("InitProducerId", code);
                response.with_error_code(code)
            }
        };
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
