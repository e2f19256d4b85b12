//! DescribeCluster (KIP-700): the live brokers, the controller and the cluster id.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use sluice_protocol::RequestHeader;

use super::str_bytes;
use crate::broker::Broker;

/// Answers from the applied metadata.
pub fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let state = broker.cluster.state();
    let brokers = broker
        .cluster
        .live_brokers(&state)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster.cluster_id(&state)))
        .with_controller_id(BrokerId(broker.cluster.controller_id()))
        .with_brokers(brokers)
}
