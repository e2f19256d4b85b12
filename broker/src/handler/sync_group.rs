//! SyncGroup: the leader hands in the assignment of the new generation; every member (leader
//! included) gets its own share once the leader's assignment arrived.

use std::time::Instant;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use slog::{Logger, warn};
use sluice_protocol::{RequestHeader, ResponseError};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::state::SyncOutcome;

/// Answers a SyncGroup request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: SyncGroupRequest,
    log: &Logger,
) -> SyncGroupResponse {
    let version = header.api_version;
    let group_id = request.group_id.to_string();
    let outcome = match broker.groups.home(broker, &group_id).await {
        Err(code) => SyncOutcome::error(code),
        Ok(home) => match broker.groups.get(&group_id) {
            None => SyncOutcome::error(ResponseError::UnknownMemberId.code()),
            Some(handle) => {
                let assignments = request
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                    .collect();
                let (receiver, completed) = handle.group.lock().sync(
                    request.member_id.as_str(),
                    request.group_instance_id.as_deref(),
                    request.generation_id,
                    request.protocol_type.as_deref(),
                    request.protocol_name.as_deref(),
                    assignments,
                    Instant::now(),
                );
                if completed {
                    // Kafka stores the group before answering the leader; the members already
                    // hold their assignments, so a failed write is logged, not returned.
                    if let Err(code) = broker.groups.store_group(&home, &handle).await {
                        warn!(log, "storing group metadata failed"; "group" => &group_id, "error_code" => code);
                    }
                }
                receiver
                    .await
                    .unwrap_or_else(|_| SyncOutcome::error(ResponseError::UnknownMemberId.code()))
            }
        },
    };
    if outcome.error_code != 0 {
        broker.count_error("SyncGroup", outcome.error_code);
    }
    let mut response = SyncGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_assignment(outcome.assignment);
    if version >= 5 {
        response = response
            .with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(outcome.protocol_name.as_deref().map(str_bytes));
    }
    response
}
