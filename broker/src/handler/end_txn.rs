//! EndTxn: commits or aborts a producer's transaction at its coordinator. Answered once the
//! decision is durable; the markers follow in the background.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;

/// Answers an EndTxn request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let outcome = broker
        .txns
        .end_txn(
            broker,
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await;
    let mut code = outcome.err().unwrap_or(0);
    if code == ResponseError::ProducerFenced.code() && header.api_version < 2 {
        code = ResponseError::InvalidProducerEpoch.code();
    }
    if code != 0 {
        broker.count_error("EndTxn", code);
    }
    let mut response = EndTxnResponse::default().with_error_code(code);
    if header.api_version >= 5 {
        response = response
            .with_producer_id(ProducerId(request.producer_id.0))
            .with_producer_epoch(request.producer_epoch);
    }
    response
}
