//! Removal of committed offsets nobody will read again (Kafka's offset expiration): offsets of
//! topics that were deleted, and offsets of empty groups older than
//! `offsets.retention.minutes`. Each removal is a tombstone in `__consumer_offsets`, written
//! before the cache forgets the offset, so a reload agrees with the cache.

use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, info, warn};
use sluice_raft::state::MetadataState;
use tokio::sync::watch;

use super::offsets::OffsetsRecord;
use super::state::{Group, GroupState};
use crate::broker::Broker;
use crate::streaming::wal::now_ms;

/// The offsets of `group` to remove: those of topics missing from the metadata, and, while the
/// group is empty, those committed more than `retention` ago.
pub fn stale_offsets(
    group: &Group,
    state: &MetadataState,
    now_ms: i64,
    retention: Duration,
) -> Vec<(String, i32)> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let empty = group.state == GroupState::Empty && !group.has_members();
    let mut stale: Vec<(String, i32)> = group
        .offsets
        .iter()
        .filter(|((topic, partition), entry)| {
            let gone = state.topics.get(topic).is_none_or(|t| {
                usize::try_from(*partition).map_or(true, |p| p >= t.partitions.len())
            });
            let expired = empty && now_ms.saturating_sub(entry.commit_timestamp) > retention_ms;
            gone || expired
        })
        .map(|(key, _)| key.clone())
        .collect();
    stale.sort();
    stale
}

/// Removes stale offsets of every group served here, every
/// `offsets.retention.check.interval.ms`, until shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>, log: Logger) {
    let mut ticker = tokio::time::interval(broker.config.offsets_retention_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let state = broker.cluster.state();
        for handle in broker.groups.all() {
            let (group_id, stale) = {
                let g = handle.group.lock();
                let stale = stale_offsets(&g, &state, now_ms(), broker.config.offsets_retention);
                (g.group_id.clone(), stale)
            };
            if stale.is_empty() {
                continue;
            }
            let Ok(home) = broker.groups.home(&broker, &group_id).await else {
                continue;
            };
            let _writes = handle.writes.lock().await;
            let records: Vec<OffsetsRecord> = stale
                .iter()
                .map(|(topic, partition)| OffsetsRecord::Offset {
                    group: group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                })
                .collect();
            match broker.groups.append(&home, &records).await {
                Ok(_fence) => {
                    let mut g = handle.group.lock();
                    for key in &stale {
                        g.offsets.remove(key);
                    }
                    info!(log, "removed expired offsets"; "group" => &group_id,
                        "partitions" => stale.len(), "group_state" => g.state.name());
                }
                Err(code) => {
                    warn!(log, "removing expired offsets failed"; "group" => &group_id, "error_code" => code);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::offsets::OffsetEntry;

    fn entry(commit_timestamp: i64) -> OffsetEntry {
        OffsetEntry {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp,
        }
    }

    #[test]
    fn deleted_topics_and_old_offsets_of_empty_groups_are_stale() {
        let mut g = Group::new("g", 0, &Logger::root(slog::Discard, slog::o!()));
        g.offsets.insert(("gone".into(), 0), entry(1_000));
        g.offsets.insert(("old".into(), 0), entry(1_000));
        g.offsets.insert(("fresh".into(), 0), entry(9_000));
        let mut state = MetadataState::default();
        for name in ["old", "fresh"] {
            let info = sluice_raft::state::TopicInfo {
                topic_id: uuid::Uuid::nil(),
                name: name.into(),
                partitions: vec![sluice_raft::state::PartitionInfo {
                    vchannel: 1,
                    pchannel: 0,
                }],
                configs: Default::default(),
            };
            std::sync::Arc::make_mut(&mut state.topics).insert(name.into(), info);
        }
        let retention = Duration::from_secs(5);
        assert_eq!(
            stale_offsets(&g, &state, 10_000, retention),
            vec![("gone".to_string(), 0), ("old".to_string(), 0)]
        );
        // A group with members keeps its old offsets; deleted topics still go.
        g.state = GroupState::Stable;
        assert_eq!(
            stale_offsets(&g, &state, 10_000, retention),
            vec![("gone".to_string(), 0)]
        );
    }
}
