//! ListTransactions: the transactional ids this broker coordinates, filtered by state, producer
//! id and (v1) how long their transaction has been open. Admin clients ask every broker.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId};
use sluice_protocol::RequestHeader;

use super::str_bytes;
use crate::broker::Broker;
use crate::streaming::wal::now_ms;
use crate::txn::TxnStatus;

const STATES: [TxnStatus; 8] = [
    TxnStatus::Empty,
    TxnStatus::Ongoing,
    TxnStatus::PrepareCommit,
    TxnStatus::PrepareAbort,
    TxnStatus::CompleteCommit,
    TxnStatus::CompleteAbort,
    TxnStatus::Dead,
    TxnStatus::PrepareEpochFence,
];

/// Answers a ListTransactions request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    // Serve only what this broker coordinates now.
    broker.txns.load_local(broker).await;
    let unknown: Vec<_> = request
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.name() == f.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    let mut states = Vec::new();
    for handle in broker.txns.all() {
        let t = handle.state.lock().await.clone();
        if t.producer_id < 0 || broker.txns.home(broker, &t.transactional_id).await.is_err() {
            continue;
        }
        let state_ok = request.state_filters.is_empty()
            || request
                .state_filters
                .iter()
                .any(|f| f.as_str() == t.status.name());
        let producer_ok = request.producer_id_filters.is_empty()
            || request
                .producer_id_filters
                .contains(&ProducerId(t.producer_id));
        let duration_ok = header.api_version < 1
            || request.duration_filter < 0
            || (t.status == TxnStatus::Ongoing
                && now.saturating_sub(t.start_ms) >= request.duration_filter);
        if state_ok && producer_ok && duration_ok {
            states.push(
                TransactionState::default()
                    .with_transactional_id(kafka_protocol::messages::TransactionalId(str_bytes(
                        &t.transactional_id,
                    )))
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_transaction_state(str_bytes(t.status.name())),
            );
        }
    }
    states.sort_by(|a, b| a.transactional_id.as_str().cmp(b.transactional_id.as_str()));
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
