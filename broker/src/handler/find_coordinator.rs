//! FindCoordinator: the broker owning the `__consumer_offsets` partition of a group (key type
//! 0) or of the `__transaction_state` partition of a transactional id (key type 1), computed
//! from the applied metadata; v0–v3 look up one key, v4 a batch.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::GroupCoordinator;
use crate::txn::TransactionCoordinator;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Answers a FindCoordinator request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let version = header.api_version;
    let key_type = if version >= 1 { request.key_type } else { 0 };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let found = lookup(broker, key_type, key.as_str());
                let mut c = Coordinator::default().with_key(key.clone());
                match found {
                    Ok((node_id, host, port)) => {
                        c = c
                            .with_node_id(BrokerId(node_id))
                            .with_host(str_bytes(&host))
                            .with_port(port)
                            .with_error_message(None);
                    }
                    Err((code, message)) => {
                        broker.count_error("FindCoordinator", code);
                        c = c
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(code)
                            .with_error_message(Some(str_bytes(&message)));
                    }
                }
                c
            })
            .collect();
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    let mut response = FindCoordinatorResponse::default();
    match lookup(broker, key_type, request.key.as_str()) {
        Ok((node_id, host, port)) => {
            response = response
                .with_node_id(BrokerId(node_id))
                .with_host(str_bytes(&host))
                .with_port(port);
            if version >= 1 {
                response = response.with_error_message(None);
            }
        }
        Err((code, message)) => {
            broker.count_error("FindCoordinator", code);
            response = response
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                response = response.with_error_message(Some(str_bytes(&message)));
            }
        }
    }
    response
}

/// The coordinator's (node id, host, port), or the error code and message.
fn lookup(broker: &Broker, key_type: i8, key: &str) -> Result<(i32, String, i32), (i16, String)> {
    let what = match key_type {
        KEY_TYPE_GROUP => "group id",
        KEY_TYPE_TRANSACTION => "transactional id",
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown coordinator key type {other}"),
            ));
        }
    };
    if key.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("the {what} is empty"),
        ));
    }
    let found = if key_type == KEY_TYPE_GROUP {
        GroupCoordinator::coordinator_of(broker, key)
    } else {
        TransactionCoordinator::coordinator_of(broker, key)
    };
    let (_, leader) = found.map_err(|code| {
        (
            code,
            format!("the internal partition of this {what} has no owner yet"),
        )
    })?;
    let state = broker.cluster.state();
    broker
        .cluster
        .live_brokers(&state)
        .into_iter()
        .find(|b| b.id == leader)
        .map(|b| (b.id, b.host, b.port))
        .ok_or_else(|| {
            (
                ResponseError::CoordinatorNotAvailable.code(),
                format!("coordinator broker {leader} is not live"),
            )
        })
}
