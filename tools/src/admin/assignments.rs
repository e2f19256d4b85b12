//! `cluster assignments`: each pchannel with its owner, term and state, and the placement of
//! partitions (vchannels) on pchannels, as any Kafka client can see them. Metadata gives each
//! partition's leader and leader epoch (its pchannel's term); DescribeLogDirs, asked of every
//! live broker, lists the pchannels that broker serves (a Sluice broker reports one log dir per
//! pchannel, `.../pchannels/pchannel-NNNN`) and the partitions stored in each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use serde_json::{Value, json};

use super::config::{self, Target};
use super::topic::topic_str;
use crate::client::Cluster;
use crate::error::{ToolError, check, error_name};
use crate::table::{Output, Table};

/// UNKNOWN_TOPIC_OR_PARTITION, for a topic named on the command line that does not exist.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// A pchannel as one live broker reports it.
#[derive(Debug, Default)]
struct Served {
    owner: i32,
    log_dir: String,
    /// (topic, partition) → bytes.
    partitions: BTreeMap<(String, i32), i64>,
}

/// The pchannel id of a Sluice log dir (`.../pchannel-0007` → 7).
fn pchannel_of(log_dir: &str) -> Option<u32> {
    Path::new(log_dir)
        .file_name()?
        .to_str()?
        .strip_prefix("pchannel-")?
        .parse()
        .ok()
}

pub(super) async fn assignments(
    cluster: &mut Cluster,
    only: &[String],
    exclude_internal: bool,
) -> Result<Output, ToolError> {
    let md = cluster.metadata(None, false).await?;
    for t in only {
        if !md.topics.iter().any(|m| topic_str(m) == *t) {
            return Err(ToolError::kafka(
                format!("describe the placement of topic {t}"),
                UNKNOWN_TOPIC_OR_PARTITION,
                None,
            ));
        }
    }
    let mut brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();

    // Every live broker lists the pchannels it serves. A broker that just died stays in
    // Metadata until its lease runs out: it is reported, not fatal.
    let mut served: BTreeMap<u32, Served> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for &id in &brokers {
        let resp = match log_dirs(cluster, id).await {
            Ok(resp) => resp,
            Err(ToolError::Connection { .. }) => {
                unreachable.push(id);
                continue;
            }
            Err(e) => return Err(e),
        };
        check(resp.error_code, None, || {
            format!("describe the log dirs of broker {id}")
        })?;
        for r in &resp.results {
            check(r.error_code, None, || {
                format!("describe log dir {} of broker {id}", r.log_dir.as_str())
            })?;
            let Some(pchannel) = pchannel_of(r.log_dir.as_str()) else {
                continue;
            };
            let entry = served.entry(pchannel).or_insert_with(|| Served {
                owner: id,
                log_dir: r.log_dir.to_string(),
                ..Served::default()
            });
            for t in &r.topics {
                for p in &t.partitions {
                    entry
                        .partitions
                        .insert((t.name.to_string(), p.partition_index), p.partition_size);
                }
            }
        }
    }
    let reachable = brokers.iter().find(|id| !unreachable.contains(id)).copied();
    let pool = pool_size(cluster, reachable).await;

    // Partition → (pchannel, bytes), and each pchannel's term from its partitions' epochs.
    let mut placed: BTreeMap<(String, i32), (u32, i64)> = BTreeMap::new();
    for (&pc, s) in &served {
        for (tp, &bytes) in &s.partitions {
            placed.insert(tp.clone(), (pc, bytes));
        }
    }
    let mut terms: BTreeMap<u32, i32> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut topics: Vec<_> = md.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        let topic = topic_str(t);
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in parts {
            let here = placed.get(&(topic.clone(), p.partition_index)).copied();
            if let Some((pc, _)) = here {
                let term = terms.entry(pc).or_insert(p.leader_epoch);
                *term = (*term).max(p.leader_epoch);
            }
            let shown = if only.is_empty() {
                !(exclude_internal && t.is_internal)
            } else {
                only.contains(&topic)
            };
            if shown {
                rows.push((topic.clone(), p, here));
            }
        }
    }

    let ids: BTreeSet<u32> = served.keys().copied().chain(0..pool.unwrap_or(0)).collect();
    let mut pc_table = Table::new(&[
        "PCHANNEL",
        "OWNER",
        "TERM",
        "STATE",
        "PARTITIONS",
        "BYTES",
        "LOG_DIR",
    ]);
    let mut pc_json = Vec::new();
    for id in ids {
        let s = served.get(&id);
        let term = terms.get(&id).copied();
        let state = if s.is_some() {
            "ASSIGNED"
        } else {
            "UNAVAILABLE"
        };
        let bytes: Option<i64> = s.map(|s| s.partitions.values().sum());
        pc_table.row([
            id.to_string(),
            s.map_or("-".into(), |s| s.owner.to_string()),
            term.map_or("-".into(), |t| t.to_string()),
            state.to_owned(),
            s.map_or("-".into(), |s| s.partitions.len().to_string()),
            bytes.map_or("-".into(), |b| b.to_string()),
            s.map_or("-".into(), |s| s.log_dir.clone()),
        ]);
        pc_json.push(json!({
            "pchannel": id,
            "owner": s.map(|s| s.owner),
            "term": term,
            "state": state,
            "partitions": s.map(|s| s.partitions.len()),
            "bytes": bytes,
            "log_dir": s.map(|s| s.log_dir.as_str()),
        }));
    }

    let mut p_table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "PCHANNEL",
        "LEADER",
        "LEADER_EPOCH",
        "BYTES",
        "ERROR",
    ]);
    let mut p_json = Vec::new();
    for (topic, p, here) in &rows {
        let error = (p.error_code != 0).then(|| error_name(p.error_code));
        p_table.row([
            topic.clone(),
            p.partition_index.to_string(),
            here.map_or("-".into(), |(pc, _)| pc.to_string()),
            p.leader_id.0.to_string(),
            p.leader_epoch.to_string(),
            here.map_or("-".into(), |(_, b)| b.to_string()),
            error.clone().unwrap_or_else(|| "-".into()),
        ]);
        p_json.push(json!({
            "topic": topic,
            "partition": p.partition_index,
            "pchannel": here.map(|(pc, _)| pc),
            "leader": p.leader_id.0,
            "leader_epoch": p.leader_epoch,
            "bytes": here.map(|(_, b)| b),
            "error": error,
        }));
    }
    let mut text = format!("{}\n{}", pc_table.render(), p_table.render());
    if !unreachable.is_empty() {
        let ids: Vec<String> = unreachable.iter().map(i32::to_string).collect();
        text.push_str(&format!(
            "\nunreachable brokers (their pchannels show as UNAVAILABLE): {}\n",
            ids.join(", ")
        ));
    }
    Ok(Output {
        text,
        json: json!({
            "pchannels": pc_json,
            "partitions": Value::Array(p_json),
            "unreachable_brokers": unreachable,
        }),
    })
}

async fn log_dirs(cluster: &mut Cluster, id: i32) -> Result<DescribeLogDirsResponse, ToolError> {
    let req = DescribeLogDirsRequest::default().with_topics(None);
    cluster.broker(id).await?.send(&req, 4).await
}

/// The size of the pchannel pool, from the `pchannels` config of a broker (`None` when the
/// broker does not have one: not a Sluice broker).
async fn pool_size(cluster: &mut Cluster, broker: Option<i32>) -> Option<u32> {
    let configs = config::describe(cluster, &Target::broker(broker?), true)
        .await
        .ok()?;
    configs
        .iter()
        .find(|c| c.name == "pchannels")
        .and_then(|c| c.value.as_deref()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dirs_name_their_pchannel() {
        assert_eq!(
            pchannel_of("/var/lib/sluice/pchannels/pchannel-0007"),
            Some(7)
        );
        assert_eq!(pchannel_of("pchannel-0123/"), Some(123));
        assert_eq!(pchannel_of("/var/lib/kafka"), None);
        assert_eq!(pchannel_of("/x/pchannel-abc"), None);
    }
}
