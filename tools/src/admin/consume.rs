//! `consume TOPIC`: resolves start offsets (ListOffsets), fetches from each partition's leader,
//! decodes the fetched batches with `RecordBatchDecoder` and prints text or JSON lines.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde_json::{Map, Value, json};

use super::ConsumeArgs;
use super::offsets::{PartitionLeader, list_offsets, partitions};
use super::topic::name;
use crate::args::Position;
use crate::client::{Cluster, split_batches};
use crate::error::{ToolError, check};

const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;

/// Where each partition starts: an exact offset, or ListOffsets for a position or time.
async fn start_offsets(
    cluster: &mut Cluster,
    topic: &str,
    parts: &[PartitionLeader],
    from: Position,
) -> Result<BTreeMap<i32, i64>, ToolError> {
    let Some(ts) = from.list_offsets_timestamp() else {
        let Position::Offset(o) = from else {
            unreachable!("only offsets have no timestamp")
        };
        return Ok(parts.iter().map(|p| (p.partition, o)).collect());
    };
    let found = list_offsets(cluster, topic, parts, ts).await?;
    let latest = if matches!(from, Position::Timestamp(_)) {
        list_offsets(cluster, topic, parts, -1).await?
    } else {
        BTreeMap::new()
    };
    Ok(found
        .into_iter()
        .map(|(p, (offset, _))| {
            // No record at or after the time: start at the end.
            let offset = if offset < 0 {
                latest.get(&p).map_or(0, |l| l.0)
            } else {
                offset
            };
            (p, offset)
        })
        .collect())
}

/// A record as one JSON line: key, headers and value as UTF-8 strings (base64 objects when not).
pub(crate) fn record_json(topic: &str, partition: i32, r: &Record) -> Value {
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_ref().map_or(Value::Null, bytes_json)))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": r.key.as_ref().map_or(Value::Null, bytes_json),
        "headers": headers,
        "value": r.value.as_ref().map_or(Value::Null, bytes_json),
    })
}

fn bytes_json(b: &Bytes) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(b)}),
    }
}

/// A record as a text line: the value, or KEY<TAB>VALUE.
pub(crate) fn record_text(r: &Record, print_key: bool) -> String {
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map_or("null".into(), |b| String::from_utf8_lossy(b).into_owned())
    };
    if print_key {
        format!("{}\t{}", text(&r.key), text(&r.value))
    } else {
        text(&r.value)
    }
}

pub(super) async fn run(
    cluster: &mut Cluster,
    args: &ConsumeArgs,
    json: bool,
) -> Result<(), ToolError> {
    let topic = &args.topic;
    let parts = partitions(cluster, topic, &args.partitions).await?;
    let mut position = start_offsets(cluster, topic, &parts, args.from).await?;
    let end: Option<BTreeMap<i32, i64>> = if args.follow {
        None
    } else {
        let latest = list_offsets(cluster, topic, &parts, -1).await?;
        Some(latest.into_iter().map(|(p, (o, _))| (p, o)).collect())
    };
    if let (Position::Offset(o), Some(end)) = (args.from, &end) {
        let earliest = list_offsets(cluster, topic, &parts, -2).await?;
        for p in &parts {
            let (lo, hi) = (earliest[&p.partition].0, end[&p.partition]);
            if o < lo || o > hi {
                let context = format!(
                    "consume {topic} partition {} from offset {o} (valid: {lo}..={hi})",
                    p.partition
                );
                return Err(ToolError::kafka(context, 1, None));
            }
        }
    }
    let as_json = json || args.format == "json";
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let limit = args.count.unwrap_or(u64::MAX);
    let write_err = |e: std::io::Error| ToolError::Usage(format!("writing to stdout: {e}"));
    while printed < limit {
        let active: Vec<PartitionLeader> = parts
            .iter()
            .filter(|p| {
                end.as_ref()
                    .is_none_or(|e| position[&p.partition] < e[&p.partition])
            })
            .copied()
            .collect();
        if active.is_empty() {
            break;
        }
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &active {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        for (leader, ps) in by_leader {
            let req = FetchRequest::default()
                .with_max_wait_ms(MAX_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(64 * 1024 * 1024)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name(topic))
                        .with_partitions(
                            ps.iter()
                                .map(|&p| {
                                    FetchPartition::default()
                                        .with_partition(p)
                                        .with_fetch_offset(position[&p])
                                        .with_partition_max_bytes(PARTITION_MAX_BYTES)
                                })
                                .collect(),
                        ),
                ]);
            let resp = cluster.broker(leader).await?.send(&req, 12).await?;
            check(resp.error_code, None, || format!("fetch from {topic}"))?;
            for t in resp.responses {
                for p in t.partitions {
                    let partition = p.partition_index;
                    // A partition this fetch did not ask for is ignored, not trusted.
                    let Some(&at) = position.get(&partition) else {
                        continue;
                    };
                    check(p.error_code, None, || {
                        format!("fetch {topic} partition {partition} at offset {at}")
                    })?;
                    for batch in split_batches(p.records.unwrap_or_default()) {
                        let next = batch_next_offset(&batch);
                        let is_control = batch.len() > 22 && (batch[22] & 0x20) != 0;
                        let set = RecordBatchDecoder::decode(&mut batch.clone()).map_err(|e| {
                            ToolError::Protocol {
                                addr: format!("broker {leader}"),
                                detail: format!("bad batch in {topic}/{partition}: {e}"),
                            }
                        })?;
                        for r in set.records.iter().filter(|r| !is_control && r.offset >= at) {
                            if printed >= limit
                                || end.as_ref().is_some_and(|e| r.offset >= e[&partition])
                            {
                                break;
                            }
                            let line = if as_json {
                                record_json(topic, partition, r).to_string()
                            } else {
                                record_text(r, args.print_key)
                            };
                            writeln!(out, "{line}").map_err(write_err)?;
                            printed += 1;
                            position.insert(partition, r.offset + 1);
                        }
                        if printed >= limit {
                            break;
                        }
                        // Skip control batches and compacted gaps as well.
                        let pos = position
                            .get_mut(&partition)
                            .expect("every partition has a position");
                        *pos = (*pos).max(next);
                    }
                }
            }
            out.flush().map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(())
}

/// The offset after a batch: base offset + last offset delta + 1.
fn batch_next_offset(batch: &[u8]) -> i64 {
    let base = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
    let delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
    base + delta as i64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched() -> Vec<Record> {
        let batch = sluice_protocol::test_support::record_batch(40, 1000, &[b"one", b"\xff\xfe"]);
        assert_eq!(batch_next_offset(&batch), 42);
        RecordBatchDecoder::decode(&mut Bytes::from(batch))
            .unwrap()
            .records
    }

    #[test]
    fn json_lines_carry_offsets_and_encode_binary() {
        let recs = fetched();
        let v = record_json("t", 3, &recs[0]);
        assert_eq!(v["offset"], 40);
        assert_eq!(v["partition"], 3);
        assert_eq!(v["value"], "one");
        assert_eq!(v["key"], Value::Null);
        assert_eq!(record_json("t", 3, &recs[1])["value"]["base64"], "//4=");
    }

    #[test]
    fn text_lines_print_value_or_key_tab_value() {
        let recs = fetched();
        assert_eq!(record_text(&recs[0], false), "one");
        assert_eq!(record_text(&recs[0], true), "null\tone");
    }
}
