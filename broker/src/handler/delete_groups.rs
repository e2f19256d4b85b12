//! DeleteGroups: removes empty groups and their committed offsets, writing tombstones to
//! `__consumer_offsets` first; a group with members gets NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use slog::{Logger, info};
use sluice_protocol::{RequestHeader, ResponseError};

use crate::broker::Broker;
use crate::group::GroupState;
use crate::group::offsets::OffsetsRecord;

/// Answers a DeleteGroups request.
pub async fn handle(
    broker: &Broker,
    _header: &RequestHeader,
    request: DeleteGroupsRequest,
    log: &Logger,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in &request.groups_names {
        let code = delete(broker, group_id.as_str(), log)
            .await
            .err()
            .unwrap_or(0);
        if code != 0 {
            broker.count_error("DeleteGroups", code);
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete(broker: &Broker, group_id: &str, log: &Logger) -> Result<(), i16> {
    let home = broker.groups.home(broker, group_id).await?;
    let handle = broker
        .groups
        .get(group_id)
        .ok_or(ResponseError::GroupIdNotFound.code())?;
    let _writes = handle.writes.lock().await;
    let records = {
        let g = handle.group.lock();
        match g.state {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound.code()),
            GroupState::Empty if g.is_blank() => {
                return Err(ResponseError::GroupIdNotFound.code());
            }
            GroupState::Empty if g.has_members() => {
                return Err(ResponseError::NonEmptyGroup.code());
            }
            GroupState::Empty => {}
            _ => return Err(ResponseError::NonEmptyGroup.code()),
        }
        let mut records: Vec<OffsetsRecord> = g
            .offsets
            .keys()
            .map(|(topic, partition)| OffsetsRecord::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            })
            .collect();
        records.push(OffsetsRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
        records
    };
    let _fence = broker.groups.append(&home, &records).await?;
    {
        let mut g = handle.group.lock();
        if g.state != GroupState::Empty || g.has_members() {
            // A member joined while the tombstones were written: the group lives on, without
            // the deleted offsets.
            g.offsets.clear();
            return Err(ResponseError::NonEmptyGroup.code());
        }
        g.state = GroupState::Dead;
        g.offsets.clear();
    }
    broker.groups.remove(group_id);
    info!(log, "group deleted"; "group" => group_id, "offsets" => records.len() - 1);
    Ok(())
}
