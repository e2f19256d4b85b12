//! DescribeGroups: state, protocol and members (with subscriptions and assignments) of each
//! classic group; an unknown group, or a consumer group (KIP-848, see ConsumerGroupDescribe), is
//! described as `Dead` with no members, as Kafka does before v6.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use sluice_protocol::RequestHeader;

use super::str_bytes;
use crate::broker::Broker;

/// `authorized_operations` when the client did not ask for them (Kafka's INT32_MIN).
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Answers a DescribeGroups request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = header.api_version;
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in &request.groups {
        let mut described = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_group_state(str_bytes("Dead"));
        if version >= 3 {
            described = described.with_authorized_operations(OPERATIONS_OMITTED);
        }
        match broker.groups.home(broker, group_id.as_str()).await {
            Err(code) => {
                broker.count_error("DescribeGroups", code);
                described = described.with_error_code(code);
            }
            Ok(_) => {
                let classic = broker
                    .groups
                    .get(group_id.as_str())
                    .filter(|h| h.group.lock().consumer.is_none());
                if let Some(handle) = classic {
                    let g = handle.group.lock();
                    let protocol = g.protocol.clone().unwrap_or_default();
                    let members = g
                        .members
                        .values()
                        .map(|m| {
                            let mut d = DescribedGroupMember::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_member_metadata(m.metadata(&protocol))
                                .with_member_assignment(m.assignment.clone());
                            if version >= 4 {
                                d = d.with_group_instance_id(
                                    m.group_instance_id.as_deref().map(str_bytes),
                                );
                            }
                            d
                        })
                        .collect();
                    described = described
                        .with_group_state(str_bytes(g.state.name()))
                        .with_protocol_type(str_bytes(g.protocol_type.as_deref().unwrap_or("")))
                        .with_protocol_data(str_bytes(&protocol))
                        .with_members(members);
                }
            }
        }
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
