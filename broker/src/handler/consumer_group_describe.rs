//! ConsumerGroupDescribe (KIP-848): state, epochs, assignor and members (subscriptions, current
//! and target assignments) of consumer groups. A group that is not a consumer group gets
//! GROUP_ID_NOT_FOUND, as from Kafka: AdminClient then falls back to DescribeGroups.

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use sluice_protocol::{RequestHeader, ResponseError};
use uuid::Uuid;

use super::consumer_group_heartbeat::settings;
use super::str_bytes;
use crate::broker::Broker;
use crate::group::GroupState;
use crate::group::consumer::{self, ConsumerGroup};

/// `authorized_operations` when not computed (Kafka's INT32_MIN).
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// ConsumerGroupDescribe v1's member type of a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// Answers a ConsumerGroupDescribe request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let version = header.api_version;
    let topic_names = broker.cluster.state().topic_ids.clone();
    let default_assignor = settings(broker).default_assignor();
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in &request.group_ids {
        let mut described = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(OPERATIONS_OMITTED);
        let found = match broker.groups.home(broker, group_id.as_str()).await {
            Err(code) => Err((code, None)),
            Ok(_) => broker
                .groups
                .get(group_id.as_str())
                .ok_or((
                    ResponseError::GroupIdNotFound.code(),
                    Some(format!("Group {} not found.", group_id.as_str())),
                ))
                .and_then(|handle| {
                    let g = handle.group.lock();
                    match &g.consumer {
                        Some(c) if g.state != GroupState::Dead => {
                            Ok(describe(c, &topic_names, default_assignor, version))
                        }
                        _ => Err((
                            ResponseError::GroupIdNotFound.code(),
                            Some(format!("Group {} is not a consumer group.", g.group_id)),
                        )),
                    }
                }),
        };
        match found {
            Ok(d) => {
                described = d
                    .with_group_id(group_id.clone())
                    .with_authorized_operations(OPERATIONS_OMITTED)
            }
            Err((code, message)) => {
                broker.count_error("ConsumerGroupDescribe", code);
                described = described
                    .with_error_code(code)
                    .with_error_message(message.as_deref().map(str_bytes));
            }
        }
        groups.push(described);
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn describe(
    c: &ConsumerGroup,
    topic_names: &BTreeMap<Uuid, String>,
    default_assignor: consumer::Assignor,
    version: i16,
) -> DescribedGroup {
    let members = c
        .members
        .values()
        .map(|m| {
            let target = c.target.get(&m.member_id).cloned().unwrap_or_default();
            let mut member = Member::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                .with_member_epoch(m.member_epoch())
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .iter()
                        .map(|t| TopicName(str_bytes(t)))
                        .collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(str_bytes))
                .with_assignment(assignment(&m.current.assigned, topic_names))
                .with_target_assignment(assignment(&target, topic_names));
            if version >= 1 {
                member = member.with_member_type(MEMBER_TYPE_CONSUMER);
            }
            member
        })
        .collect();
    DescribedGroup::default()
        .with_group_state(str_bytes(c.state().name()))
        .with_group_epoch(c.group_epoch)
        .with_assignment_epoch(c.assignment_epoch)
        .with_assignor_name(str_bytes(c.preferred_assignor(default_assignor).name()))
        .with_members(members)
}

/// An assignment with topic names; partitions of topics deleted meanwhile are left out.
fn assignment(a: &consumer::Assignment, topic_names: &BTreeMap<Uuid, String>) -> Assignment {
    Assignment::default().with_topic_partitions(
        a.iter()
            .filter_map(|(id, partitions)| {
                let name = topic_names.get(id)?;
                Some(
                    TopicPartitions::default()
                        .with_topic_id(*id)
                        .with_topic_name(TopicName(str_bytes(name)))
                        .with_partitions(partitions.iter().copied().collect()),
                )
            })
            .collect(),
    )
}
