//! ListGroups: the groups this broker coordinates, with their protocol type, (v4+) state and
//! (v5+) type, optionally filtered by state and type.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use sluice_protocol::RequestHeader;

use super::str_bytes;
use crate::broker::Broker;
use crate::group::GroupState;

/// Answers a ListGroups request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let version = header.api_version;
    // Partitions that moved here since start-up are loaded before listing.
    broker.groups.load_local(broker).await;
    let filter: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut groups: Vec<ListedGroup> = broker
        .groups
        .all()
        .into_iter()
        .filter_map(|h| {
            let g = h.group.lock();
            if g.is_blank() || g.state == GroupState::Dead {
                return None;
            }
            let state = g.state_name();
            if !filter.is_empty() && !filter.contains(&state.to_ascii_lowercase()) {
                return None;
            }
            let group_type = g.group_type().name();
            if !types.is_empty() && !types.iter().any(|t| t == group_type) {
                return None;
            }
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(g.listed_protocol_type()));
            if version >= 4 {
                listed = listed.with_group_state(str_bytes(state));
            }
            if version >= 5 {
                listed = listed.with_group_type(str_bytes(group_type));
            }
            Some(listed)
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ListGroupsResponse::default().with_groups(groups)
}
