//! Minimal answers that keep real clients talking: one broker (node 1, this
//! listener) leading partition 0 of every topic, empty logs, no committed offsets.

use std::time::Duration;

use bytes::BytesMut;
use sluice_protocol::messages::create_topics_response::CreatableTopicResult;
use sluice_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use sluice_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_protocol::messages::find_coordinator_response::Coordinator;
use sluice_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sluice_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sluice_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use sluice_protocol::messages::*;
use sluice_protocol::protocol::StrBytes;
use sluice_protocol::{ApiVersionTable, Request, RequestHeader, encode_response};

const HOST: &str = "127.0.0.1";

/// Appends the answer to `req` to `out` (nothing for acks=0 produce or unknown APIs).
pub fn respond(
    out: &mut BytesMut,
    h: &RequestHeader,
    req: Request,
    table: &ApiVersionTable,
    port: u16,
) {
    let v = h.api_version;
    let result = match req {
        Request::ApiVersions(_) => encode_response(out, h, &table.api_versions_response(v).1),
        Request::Metadata(m) => encode_response(out, h, &metadata(m, v, port)),
        Request::InitProducerId(_) => {
            let resp = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(0);
            encode_response(out, h, &resp)
        }
        Request::Produce(p) if p.acks == 0 => Ok(()),
        Request::Produce(p) => {
            let responses = p
                .topic_data
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_data
                        .iter()
                        .map(|pd| PartitionProduceResponse::default().with_index(pd.index))
                        .collect();
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_partition_responses(partitions)
                })
                .collect();
            encode_response(
                out,
                h,
                &ProduceResponse::default().with_responses(responses),
            )
        }
        Request::FindCoordinator(f) => {
            let mut resp = FindCoordinatorResponse::default();
            if v >= 4 {
                resp.coordinators = f
                    .coordinator_keys
                    .into_iter()
                    .map(|key| {
                        Coordinator::default()
                            .with_key(key)
                            .with_node_id(BrokerId(1))
                            .with_host(StrBytes::from_static_str(HOST))
                            .with_port(i32::from(port))
                    })
                    .collect();
            } else {
                resp.node_id = BrokerId(1);
                resp.host = StrBytes::from_static_str(HOST);
                resp.port = i32::from(port);
            }
            encode_response(out, h, &resp)
        }
        Request::OffsetFetch(f) => {
            let mut resp = OffsetFetchResponse::default();
            if v >= 8 {
                resp.groups = f
                    .groups
                    .into_iter()
                    .map(|g| {
                        let topics = g.topics.unwrap_or_default().into_iter().map(|t| {
                            let partitions = t.partition_indexes.iter().map(|&p| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                            });
                            OffsetFetchResponseTopics::default()
                                .with_name(t.name)
                                .with_partitions(partitions.collect())
                        });
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_topics(topics.collect())
                    })
                    .collect();
            } else {
                resp.topics = f
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let partitions = t.partition_indexes.iter().map(|&p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                        });
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(partitions.collect())
                    })
                    .collect();
            }
            encode_response(out, h, &resp)
        }
        Request::ListOffsets(l) => {
            let topics = l
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t.partitions.iter().map(|p| {
                        let mut r = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_offset(0);
                        if v >= 4 {
                            r.leader_epoch = 0;
                        }
                        r
                    });
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions.collect())
                })
                .collect();
            encode_response(out, h, &ListOffsetsResponse::default().with_topics(topics))
        }
        Request::Fetch(f) => {
            // An empty log: wait (briefly) as a long poll would, then answer empty.
            std::thread::sleep(Duration::from_millis(f.max_wait_ms.clamp(0, 200) as u64));
            let responses = f
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t.partitions.iter().map(|p| {
                        PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_high_watermark(0)
                            .with_last_stable_offset(0)
                            .with_log_start_offset(0)
                            .with_records(Some(bytes::Bytes::new()))
                    });
                    FetchableTopicResponse::default()
                        .with_topic(t.topic)
                        .with_partitions(partitions.collect())
                })
                .collect();
            encode_response(out, h, &FetchResponse::default().with_responses(responses))
        }
        Request::CreateTopics(c) => {
            let topics = c
                .topics
                .into_iter()
                .map(|t| {
                    let mut r = CreatableTopicResult::default().with_name(t.name);
                    if v >= 5 {
                        r.num_partitions = t.num_partitions;
                        r.replication_factor = t.replication_factor;
                        r.configs = Some(Vec::new());
                    }
                    r
                })
                .collect();
            encode_response(out, h, &CreateTopicsResponse::default().with_topics(topics))
        }
        Request::DescribeConfigs(d) => {
            let results = d
                .resources
                .into_iter()
                .map(|r| {
                    let config = DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("604800000")));
                    DescribeConfigsResult::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                        .with_configs(vec![config])
                })
                .collect();
            encode_response(
                out,
                h,
                &DescribeConfigsResponse::default().with_results(results),
            )
        }
        other => {
            eprintln!("not answering {:?}", other.api_key());
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("encode failed: {e}");
    }
}

fn metadata(m: MetadataRequest, v: i16, port: u16) -> MetadataResponse {
    let names: Vec<TopicName> = m
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.name)
        .collect();
    let topics = names
        .into_iter()
        .map(|name| {
            let partition = MetadataResponsePartition::default()
                .with_leader_id(BrokerId(1))
                .with_leader_epoch(if v >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![BrokerId(1)])
                .with_isr_nodes(vec![BrokerId(1)]);
            let mut t = MetadataResponseTopic::default()
                .with_name(Some(name))
                .with_partitions(vec![partition]);
            if v >= 10 {
                t.topic_id = uuid::Uuid::from_u128(0x5115e);
            }
            t
        })
        .collect();
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host(StrBytes::from_static_str(HOST))
        .with_port(i32::from(port));
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_topics(topics);
    if v >= 1 {
        resp.controller_id = BrokerId(1);
    }
    if v >= 2 {
        resp.cluster_id = Some(StrBytes::from_static_str("golden"));
    }
    resp
}
