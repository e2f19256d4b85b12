//! JoinGroup: a member enters (or re-enters) a classic group; the answer waits until the
//! rebalance completes, and the leader's answer carries every member's subscription.

use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use slog::Logger;
use sluice_protocol::{RequestHeader, ResponseError};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::membership::JoinRequest;
use crate::group::state::JoinOutcome;

/// Answers a JoinGroup request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: JoinGroupRequest,
    peer: std::net::SocketAddr,
    _log: &Logger,
) -> JoinGroupResponse {
    let version = header.api_version;
    let group_id = request.group_id.to_string();
    let outcome = match broker.groups.home(broker, &group_id).await {
        Err(code) => JoinOutcome::error(code, request.member_id.as_str()),
        Ok(home) => {
            let handle = broker.groups.get_or_create(&group_id, &home);
            let session_timeout = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
            let rebalance_timeout = if version >= 1 {
                Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64)
            } else {
                session_timeout
            };
            let join = JoinRequest {
                member_id: request.member_id.to_string(),
                group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                // Kafka reports the member's address as InetAddress.toString() does.
                client_host: format!("/{}", peer.ip()),
                session_timeout,
                rebalance_timeout,
                protocol_type: request.protocol_type.to_string(),
                protocols: request
                    .protocols
                    .iter()
                    .map(|p| (p.name.to_string(), p.metadata.clone()))
                    .collect(),
                require_known_member_id: version >= 4,
                reason: request.reason.as_ref().map(|r| r.to_string()),
            };
            let receiver =
                handle
                    .group
                    .lock()
                    .join(join, Instant::now(), broker.groups.initial_delay);
            receiver.await.unwrap_or_else(|_| {
                JoinOutcome::error(
                    ResponseError::UnknownMemberId.code(),
                    request.member_id.as_str(),
                )
            })
        }
    };
    if outcome.error_code != 0 {
        broker.count_error("JoinGroup", outcome.error_code);
    }
    let mut response = JoinGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_generation_id(outcome.generation_id)
        .with_protocol_name(Some(str_bytes(
            outcome.protocol_name.as_deref().unwrap_or(""),
        )))
        .with_leader(str_bytes(&outcome.leader))
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(
            outcome
                .members
                .iter()
                .map(|(id, instance, metadata)| {
                    let mut m = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_metadata(metadata.clone());
                    if version >= 5 {
                        m = m.with_group_instance_id(instance.as_deref().map(str_bytes));
                    }
                    m
                })
                .collect(),
        );
    if version >= 7 {
        response = response
            .with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(outcome.protocol_name.as_deref().map(str_bytes));
    }
    if version >= 9 {
        response = response.with_skip_assignment(outcome.skip_assignment);
    }
    response
}
