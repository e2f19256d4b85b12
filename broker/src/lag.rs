//! Consumer-group lag, computed by the broker that coordinates each group: its committed
//! offsets (the coordinator's cache) against each partition's log end offset, read locally for
//! partitions whose pchannel is served here and asked of the partition's leader with ListOffsets
//! otherwise, as kafka_exporter asks as a client. Exported as `sluice_consumergroup_lag` and
//! `sluice_consumergroup_current_offset`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use log_store::VChannelId;
use slog::{Logger, debug};

use crate::broker::Broker;
use crate::group::GroupCoordinator;
use crate::handler::{local_wal, route, str_bytes};
use crate::interbroker::PeerConnection;

/// How long a partition leader has to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// ListOffsets v1: the oldest version every Sluice broker serves, with one offset per partition.
const LIST_OFFSETS_VERSION: i16 = 1;
const LATEST: i64 = -1;

/// One committed offset of a group coordinated here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Committed {
    group: String,
    topic: String,
    partition: i32,
    offset: i64,
}

/// Computes the lag gauges; keeps a connection to each partition leader between rounds.
#[derive(Default)]
pub struct GroupLag {
    peers: HashMap<i32, PeerConnection>,
}

impl GroupLag {
    /// Recomputes the gauges. The gauges are replaced in one step once every log end offset
    /// is known, so a scrape never sees a half-built set.
    pub async fn refresh(&mut self, broker: &Broker, log: &Logger) {
        let committed = committed_here(broker);
        let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let state = broker.cluster.state();
        for c in &committed {
            let key = (c.topic.clone(), c.partition);
            if ends.contains_key(&key) {
                continue;
            }
            let Ok(r) = route(&state, &c.topic, c.partition) else {
                continue;
            };
            match (local_wal(broker, &r), r.leader) {
                (Ok(wal), _) => {
                    let end = wal
                        .log
                        .vchannel_state(VChannelId(r.vchannel))
                        .map_or(0, |s| s.log_end_offset);
                    ends.insert(key, end);
                }
                (Err(_), Some(leader)) if leader != broker.node_id() => {
                    let wanted = remote.entry(leader).or_default();
                    if !wanted.contains(&key) {
                        wanted.push(key);
                    }
                }
                _ => {}
            }
        }
        for (leader, partitions) in remote {
            match self.latest(broker, leader, &partitions).await {
                Ok(found) => ends.extend(found),
                Err(e) => {
                    self.peers.remove(&leader);
                    debug!(log, "log end offsets for group lag unavailable"; "broker" => leader, "error" => e);
                }
            }
        }
        let m = &broker.metrics;
        m.consumergroup_lag.reset();
        m.consumergroup_current_offset.reset();
        for c in &committed {
            let Some(&end) = ends.get(&(c.topic.clone(), c.partition)) else {
                continue;
            };
            let labels = [c.group.as_str(), c.topic.as_str(), &c.partition.to_string()];
            m.consumergroup_current_offset
                .with_label_values(&labels)
                .set(c.offset);
            m.consumergroup_lag
                .with_label_values(&labels)
                .set(lag(end, c.offset));
        }
    }

    /// Log end offsets of `partitions` from broker `leader` (ListOffsets latest).
    async fn latest(
        &mut self,
        broker: &Broker,
        leader: i32,
        partitions: &[(String, i32)],
    ) -> Result<Vec<((String, i32), i64)>, String> {
        let conn = match self.peers.entry(leader) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let addr = {
                    let state = broker.cluster.state();
                    let b = state.brokers.get(&leader).ok_or("not registered")?;
                    let l = b.listeners.first().ok_or("no listener")?;
                    format!("{}:{}", l.host, l.port)
                };
                let conn = PeerConnection::connect(&addr, PEER_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                e.insert(conn)
            }
        };
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(
                by_topic
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(str_bytes(t).into())
                            .with_partitions(
                                ps.iter()
                                    .map(|&p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(LATEST)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = conn
            .send(&request, LIST_OFFSETS_VERSION)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for t in &response.topics {
            for p in &t.partitions {
                // A partition that moved meanwhile is left out this round.
                if p.error_code == 0 && p.offset >= 0 {
                    out.push(((t.name.to_string(), p.partition_index), p.offset));
                }
            }
        }
        Ok(out)
    }
}

/// The committed offsets of every group whose coordinator is this broker.
fn committed_here(broker: &Broker) -> Vec<Committed> {
    let me = broker.node_id();
    let mut out = Vec::new();
    for handle in broker.groups.all() {
        let group = handle.group.lock();
        match GroupCoordinator::coordinator_of(broker, &group.group_id) {
            Ok((_, leader)) if leader == me => {}
            _ => continue,
        }
        for ((topic, partition), entry) in &group.offsets {
            out.push(Committed {
                group: group.group_id.clone(),
                topic: topic.clone(),
                partition: *partition,
                offset: entry.offset,
            });
        }
    }
    out.sort();
    out
}

/// Kafka's consumer lag: records after the committed offset, never negative (a commit past
/// the end, or a log truncated under it, counts as caught up).
fn lag(log_end_offset: i64, committed: i64) -> i64 {
    (log_end_offset - committed).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_records_after_the_commit() {
        assert_eq!(lag(10, 7), 3);
        assert_eq!(lag(10, 10), 0);
        assert_eq!(lag(5, 9), 0);
    }
}
