//! Heartbeat: keeps a member's session alive and tells it when the group rebalances.

use std::time::Instant;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;

/// Answers a Heartbeat request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    let code = match broker.groups.home(broker, &group_id).await {
        Err(code) => code,
        Ok(_) => match broker.groups.get(&group_id) {
            None => ResponseError::UnknownMemberId.code(),
            Some(handle) => handle.group.lock().heartbeat(
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
                request.generation_id,
                Instant::now(),
            ),
        },
    };
    if code != 0 {
        broker.count_error("Heartbeat", code);
    }
    HeartbeatResponse::default().with_error_code(code)
}
