//! `produce TOPIC`: records from arguments or stdin lines, partitioned like the Java client,
//! encoded as real RecordBatch v2 batches and sent to each partition's leader.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Record,
    RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;

use super::ProduceArgs;
use super::offsets::partitions;
use super::topic::name;
use crate::args::Acks;
use crate::client::Cluster;
use crate::error::{ToolError, check};
use crate::partitioner::partition_for_key;
use crate::table::{Output, Table};

/// Records per batch (and per request).
const BATCH_RECORDS: usize = 1000;

/// One record before it is placed in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input {
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// The records to write: the value arguments, or one per stdin line.
fn inputs(args: &ProduceArgs) -> Result<Vec<Input>, ToolError> {
    let key = args.key.as_ref().map(|k| Bytes::from(k.clone()));
    if !args.values.is_empty() {
        return Ok(args
            .values
            .iter()
            .map(|v| Input {
                key: key.clone(),
                value: Bytes::from(v.clone()),
            })
            .collect());
    }
    let mut out = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| ToolError::Usage(format!("reading stdin: {e}")))?;
        out.push(split_line(
            &line,
            args.key_separator.as_deref(),
            key.as_ref(),
        ));
    }
    Ok(out)
}

/// A stdin line as a record: `KEY<SEP>VALUE` with a separator (no separator: key-less).
pub(crate) fn split_line(line: &str, sep: Option<&str>, key: Option<&Bytes>) -> Input {
    if let Some(sep) = sep
        && let Some((k, v)) = line.split_once(sep)
    {
        return Input {
            key: Some(Bytes::from(k.to_owned())),
            value: Bytes::from(v.to_owned()),
        };
    }
    Input {
        key: key.cloned(),
        value: Bytes::from(line.to_owned()),
    }
}

/// The partition of each record: explicit, murmur2 of the key, or one partition for all
/// key-less records of this run (the Java client's sticky partitioning).
pub(crate) fn assign(
    records: &[Input],
    explicit: Option<i32>,
    count: i32,
    sticky: i32,
) -> Vec<i32> {
    records
        .iter()
        .map(|r| match (explicit, &r.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, count),
            (None, None) => sticky,
        })
        .collect()
}

fn compression(s: &str) -> Result<Compression, ToolError> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => {
            return Err(ToolError::Usage(format!(
                "--compression must be none, gzip, snappy, lz4 or zstd, not {s:?}"
            )));
        }
    })
}

/// One v2 batch of `records`, not idempotent (producer id -1, base sequence -1).
pub(crate) fn encode_batch(
    records: &[&Input],
    headers: &[(String, String)],
    timestamp: i64,
    compression: Compression,
) -> Result<Bytes, ToolError> {
    let headers: IndexMap<StrBytes, Option<Bytes>> = headers
        .iter()
        .map(|(k, v)| {
            (
                StrBytes::from_string(k.clone()),
                Some(Bytes::from(v.clone())),
            )
        })
        .collect();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence stays constant;
            // this makes the base sequence -1 (no sequence), as a non-idempotent producer sends.
            sequence: i as i32 - 1,
            timestamp,
            key: r.key.clone(),
            value: Some(r.value.clone()),
            headers: headers.clone(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ToolError::Usage(format!("cannot encode records: {e}")))?;
    Ok(buf.freeze())
}

pub(super) async fn run(cluster: &mut Cluster, args: &ProduceArgs) -> Result<Output, ToolError> {
    let topic = &args.topic;
    let compression = compression(&args.compression)?;
    let all = partitions(cluster, topic, &[]).await?;
    if let Some(p) = args.partition
        && !all.iter().any(|x| x.partition == p)
    {
        let context = format!("topic {topic} has {} partitions; partition {p}", all.len());
        return Err(ToolError::kafka(context, 3, None));
    }
    let records = inputs(args)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let sticky = (now % all.len() as i64) as i32;
    let placed = assign(&records, args.partition, all.len() as i32, sticky);
    let mut by_partition: BTreeMap<i32, Vec<&Input>> = BTreeMap::new();
    for (r, p) in records.iter().zip(&placed) {
        by_partition.entry(*p).or_default().push(r);
    }
    let leader_of = |p: i32| all.iter().find(|x| x.partition == p).map(|x| x.leader);
    let mut table = Table::new(&["TOPIC", "PARTITION", "BASE_OFFSET", "RECORDS"]);
    let mut rows = Vec::new();
    for (partition, recs) in &by_partition {
        let leader = leader_of(*partition).expect("partitions come from the metadata");
        for chunk in recs.chunks(BATCH_RECORDS) {
            let batch = encode_batch(chunk, &args.headers, now, compression)?;
            let req = ProduceRequest::default()
                .with_acks(args.acks.wire())
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name(topic))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(*partition)
                                .with_records(Some(batch)),
                        ]),
                ]);
            let conn = cluster.broker(leader).await?;
            if args.acks == Acks::None {
                conn.send_only(&req, 11).await?;
                table.row([
                    topic.clone(),
                    partition.to_string(),
                    "-".to_owned(),
                    chunk.len().to_string(),
                ]);
                rows.push(
                    json!({"partition": partition, "base_offset": null, "records": chunk.len()}),
                );
                continue;
            }
            let resp = conn.send(&req, 11).await?;
            for t in &resp.responses {
                for p in &t.partition_responses {
                    let msg = p.error_message.as_ref().map(|m| m.as_str());
                    check(p.error_code, msg, || {
                        format!("produce to {topic} partition {}", p.index)
                    })?;
                    table.row([
                        topic.clone(),
                        p.index.to_string(),
                        p.base_offset.to_string(),
                        chunk.len().to_string(),
                    ]);
                    rows.push(json!({"partition": p.index, "base_offset": p.base_offset, "records": chunk.len()}));
                }
            }
        }
    }
    Ok(Output::table(
        &table,
        json!({"topic": topic, "records": records.len(), "batches": rows}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn input(key: Option<&str>, value: &str) -> Input {
        Input {
            key: key.map(|k| Bytes::from(k.to_owned())),
            value: Bytes::from(value.to_owned()),
        }
    }

    #[test]
    fn stdin_lines_split_at_the_first_separator() {
        assert_eq!(
            split_line("k:v:w", Some(":"), None),
            input(Some("k"), "v:w")
        );
        assert_eq!(split_line("plain", Some(":"), None), input(None, "plain"));
        let k = Bytes::from_static(b"K");
        assert_eq!(split_line("v", None, Some(&k)), input(Some("K"), "v"));
    }

    #[test]
    fn partitions_follow_explicit_then_key_then_sticky() {
        let recs = [input(Some("foobar"), "a"), input(None, "b")];
        assert_eq!(assign(&recs, Some(2), 4, 1), vec![2, 2]);
        assert_eq!(assign(&recs, None, 4, 1), vec![1357151166 % 4, 1]);
    }

    #[test]
    fn one_batch_per_call_with_no_sequence() {
        let recs = [input(Some("a"), "1"), input(None, "2"), input(None, "3")];
        let refs: Vec<&Input> = recs.iter().collect();
        let headers = [("h".to_owned(), "v".to_owned())];
        let batch = encode_batch(&refs, &headers, 1234, Compression::None).unwrap();
        let header = sluice_protocol::RecordBatchHeader::parse(&batch).unwrap();
        assert_eq!(header.total_len(), batch.len(), "exactly one batch");
        assert_eq!(header.last_offset_delta(), 2);
        assert_eq!(&batch[53..57], &(-1i32).to_be_bytes(), "base sequence");
        assert_eq!(&batch[43..51], &(-1i64).to_be_bytes(), "producer id");
        let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"a"[..]));
        assert_eq!(set.records[2].value.as_deref(), Some(&b"3"[..]));
        assert_eq!(set.records[1].timestamp, 1234);
        assert_eq!(set.records[1].headers.len(), 1);
    }

    #[test]
    fn compressed_batches_decode() {
        let recs: Vec<Input> = (0..50)
            .map(|i| input(None, &format!("value-{i}")))
            .collect();
        let refs: Vec<&Input> = recs.iter().collect();
        for c in ["gzip", "snappy", "lz4", "zstd"] {
            let batch = encode_batch(&refs, &[], 1, compression(c).unwrap()).unwrap();
            let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
            assert_eq!(set.records.len(), 50, "{c}");
            assert_eq!(set.records[49].value.as_deref(), Some(&b"value-49"[..]));
        }
        assert!(compression("brotli").is_err());
    }
}
