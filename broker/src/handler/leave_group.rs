//! LeaveGroup: members leave a classic group (v0–v2 one member id; v3+ a batch of members,
//! static ones by `group.instance.id`), and the group rebalances without them.

use std::time::Instant;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;

/// Answers a LeaveGroup request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let version = header.api_version;
    let group_id = request.group_id.to_string();
    let handle = match broker.groups.home(broker, &group_id).await {
        Err(code) => Err(code),
        Ok(_) => broker
            .groups
            .get(&group_id)
            .ok_or(ResponseError::UnknownMemberId.code()),
    };
    let now = Instant::now();
    if version < 3 {
        let code = match handle {
            Err(code) => code,
            Ok(h) => h
                .group
                .lock()
                .leave(request.member_id.as_str(), None, None, now),
        };
        if code != 0 {
            broker.count_error("LeaveGroup", code);
        }
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let handle = match handle {
        Err(code) => {
            broker.count_error("LeaveGroup", code);
            return LeaveGroupResponse::default().with_error_code(code);
        }
        Ok(h) => h,
    };
    let mut members = Vec::with_capacity(request.members.len());
    {
        let mut group = handle.group.lock();
        for m in &request.members {
            let code = group.leave(
                m.member_id.as_str(),
                m.group_instance_id.as_deref(),
                m.reason.as_deref(),
                now,
            );
            if code != 0 {
                broker.count_error("LeaveGroup", code);
            }
            members.push(
                MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(code),
            );
        }
    }
    LeaveGroupResponse::default().with_members(members)
}
