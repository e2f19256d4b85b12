//! DescribeTransactions: the state of transactional ids this broker coordinates.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use sluice_protocol::{RequestHeader, ResponseError};

use super::str_bytes;
use crate::broker::Broker;

/// Answers a DescribeTransactions request.
pub async fn handle(
    broker: &Arc<Broker>,
    _header: &RequestHeader,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in &request.transactional_ids {
        let mut out = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        let found = match broker.txns.home(broker, id.as_str()).await {
            Err(code) => Err(code),
            Ok(_) => match broker.txns.get(id.as_str()) {
                Some(handle) => Ok(handle.state.lock().await.clone()),
                None => Err(ResponseError::TransactionalIdNotFound.code()),
            },
        };
        match found {
            Ok(t) if t.producer_id >= 0 => {
                let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for (topic, p) in &t.partitions {
                    topics.entry(topic).or_default().push(*p);
                }
                out = out
                    .with_transaction_state(str_bytes(t.status.name()))
                    .with_transaction_timeout_ms(t.timeout_ms)
                    .with_transaction_start_time_ms(t.start_ms)
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_producer_epoch(t.producer_epoch)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(topic, partitions)| {
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(topic)))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    );
            }
            Ok(_) => out = out.with_error_code(ResponseError::TransactionalIdNotFound.code()),
            Err(code) => out = out.with_error_code(code),
        }
        if out.error_code != 0 {
            broker.count_error("DescribeTransactions", out.error_code);
        }
        states.push(out);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
