//! AddPartitionsToTxn: adds partitions to a producer's open transaction at its coordinator.
//! v0–v3 carry one transaction (what clients send); v4+ carry a batch of transactions, each
//! possibly `verify_only` (KIP-890: a partition leader asking whether a partition is in the
//! transaction).

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::txn::TXN_TOPIC;

/// Answers an AddPartitionsToTxn request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if header.api_version <= 3 {
        let results = add(
            broker,
            request.v3_and_below_transactional_id.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &request.v3_and_below_topics,
            false,
            header.api_version,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(request.transactions.len());
    for t in &request.transactions {
        let results = add(
            broker,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
            header.api_version,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// Adds one transaction's partitions; every partition gets the outcome.
async fn add(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let state = broker.cluster.state();
    let mut partitions = Vec::new();
    let mut unknown = false;
    for topic in topics {
        let known = state.topics.get(topic.name.as_str());
        for p in &topic.partitions {
            let exists = known
                .is_some_and(|info| usize::try_from(*p).is_ok_and(|i| i < info.partitions.len()));
            unknown |= !exists || topic.name.as_str() == TXN_TOPIC;
            partitions.push((topic.name.to_string(), *p, exists));
        }
    }
    // Kafka adds nothing when any partition is unknown: those get UNKNOWN_TOPIC_OR_PARTITION,
    // the rest OPERATION_NOT_ATTEMPTED.
    let outcome: Result<(), i16> = if unknown {
        Err(ResponseError::OperationNotAttempted.code())
    } else {
        let keys: Vec<(String, i32)> = partitions.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        broker
            .txns
            .add_partitions(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                &keys,
                verify_only,
            )
            .await
    };
    let fenced = ResponseError::ProducerFenced.code();
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (topic, p, exists) in partitions {
        let mut code = match outcome {
            Ok(()) => 0,
            Err(_) if !exists => ResponseError::UnknownTopicOrPartition.code(),
            Err(code) => code,
        };
        // PRODUCER_FENCED exists from v2 on; older clients know INVALID_PRODUCER_EPOCH.
        if code == fenced && version < 2 {
            code = ResponseError::InvalidProducerEpoch.code();
        }
        if code != 0 {
            broker.count_error("AddPartitionsToTxn", code);
        }
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(p)
            .with_partition_error_code(code);
        match results.iter_mut().find(|r| r.name.as_str() == topic) {
            Some(r) => r.results_by_partition.push(result),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(kafka_protocol::messages::TopicName(super::str_bytes(
                        &topic,
                    )))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    results
}
