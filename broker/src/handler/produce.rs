//! Produce: validates each partition's batches on this task, queues them on the owning
//! pchannel's writer and answers when every partition is written (acks=1) or durable
//! (acks=all); acks=0 gets no response at all.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use slog::{Logger, debug};
use sluice_protocol::{RequestHeader, ResponseError};
use tokio::sync::oneshot;

use super::{local_wal, route, str_bytes};
use crate::broker::Broker;
use crate::streaming::interceptor::{AppendError, Limits, validate};
use crate::streaming::wal::{Acks, AppendRequest, Appended, Origin};
use crate::topic_config::TopicConfig;

/// A produce whose partitions were validated and queued on their pchannels, in the order the
/// request arrived; awaiting it gives the response.
pub struct PendingProduce {
    acks: i16,
    api_version: i16,
    topics: Vec<TopicProduceResponse>,
    partitions: Vec<(usize, i32, Submitted)>,
    /// Records and bytes queued per partition, counted once appended.
    sizes: Vec<(u64, u64)>,
}

type Submitted = Result<oneshot::Receiver<Result<Appended, AppendError>>, (i16, Option<String>)>;

/// Validates and queues every partition of a Produce request. Runs on the connection's reader,
/// before the next request is read: appends from one connection reach each pchannel in
/// request order, as Kafka guarantees for `max.in.flight.requests.per.connection` > 1.
pub fn submit(
    broker: &Broker,
    header: &RequestHeader,
    request: ProduceRequest,
    log: &Logger,
) -> PendingProduce {
    let acks = match request.acks {
        -1 => Ok(Acks::Durable),
        0 | 1 => Ok(Acks::Written),
        _ => Err(ResponseError::InvalidRequiredAcks.code()),
    };
    let state = broker.cluster.state();
    let mut partitions = Vec::new();
    let mut sizes = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (t, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.as_str();
        topics.push(TopicProduceResponse::default().with_name(topic.name.clone()));
        let config = state
            .topics
            .get(name)
            .map(|info| TopicConfig::effective(&broker.config, &info.configs));
        for partition in &topic.partition_data {
            let mut size = (0, 0);
            let submitted = (|| {
                let acks = acks.map_err(|c| (c, None))?;
                let route = route(&state, name, partition.index).map_err(|c| (c, None))?;
                let wal = local_wal(broker, &route).map_err(|c| (c, None))?;
                let config = config.as_ref().expect("routed topics have configs");
                let records = partition.records.clone().unwrap_or_default();
                let limits = Limits {
                    max_batch_bytes: config.max_message_bytes,
                    before_max_ms: config.timestamp_before_max_ms,
                    after_max_ms: config.timestamp_after_max_ms,
                    now_ms: crate::streaming::wal::now_ms(),
                };
                let validated = validate(&records, &limits).map_err(|e| {
                    debug!(log, "produce rejected"; "topic" => name, "partition" => partition.index, "reason" => %e);
                    (append_error_code(&e), Some(e.to_string()))
                })?;
                let (reply, receiver) = oneshot::channel();
                size = (validated.records, records.len() as u64);
                wal.submit(AppendRequest {
                    vchannel: log_store::VChannelId(route.vchannel),
                    batches: validated.batches,
                    acks,
                    log_append_time: config.log_append_time,
                    origin: Origin::Client,
                    reply,
                });
                Ok(receiver)
            })();
            partitions.push((t, partition.index, submitted));
            sizes.push(size);
        }
    }
    PendingProduce {
        acks: request.acks,
        api_version: header.api_version,
        topics,
        partitions,
        sizes,
    }
}

impl PendingProduce {
    /// Waits for every partition's append. `Ok(None)` for acks=0, which gets no response;
    /// `Err(())` for an acks=0 produce that failed, whose connection must be closed.
    pub async fn finish(self, broker: &Broker) -> Result<Option<ProduceResponse>, ()> {
        let PendingProduce {
            acks,
            api_version,
            mut topics,
            partitions,
            sizes,
        } = self;
        for ((t, index, submitted), (records, bytes)) in partitions.into_iter().zip(sizes) {
            let mut response = PartitionProduceResponse::default().with_index(index);
            let outcome = match submitted {
                Err(e) => Err(e),
                Ok(receiver) => match receiver.await {
                    Ok(Ok(appended)) => Ok(appended),
                    Ok(Err(e)) => Err((append_error_code(&e), Some(e.to_string()))),
                    Err(_) => Err((ResponseError::NotLeaderOrFollower.code(), None)),
                },
            };
            match outcome {
                Ok(appended) => {
                    let topic = topics[t].name.as_str();
                    broker
                        .metrics
                        .messages_in
                        .with_label_values(&[topic])
                        .inc_by(records);
                    broker
                        .metrics
                        .bytes_in
                        .with_label_values(&[topic])
                        .inc_by(bytes);
                    response = response
                        .with_base_offset(appended.base_offset)
                        .with_log_append_time_ms(appended.log_append_time)
                        .with_log_start_offset(appended.log_start_offset);
                }
                Err((code, message)) => {
                    broker.count_error("Produce", code);
                    response = response.with_error_code(code).with_base_offset(-1);
                    if api_version >= 8 {
                        response = response.with_error_message(message.map(|m| str_bytes(&m)));
                    }
                }
            }
            topics[t].partition_responses.push(response);
        }
        if acks != 0 {
            return Ok(Some(ProduceResponse::default().with_responses(topics)));
        }
        let failed = topics
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code != 0);
        if failed { Err(()) } else { Ok(None) }
    }
}

/// The Kafka error code for a refused append.
pub fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Corrupt(_) => ResponseError::CorruptMessage.code(),
        AppendError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        AppendError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        AppendError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp.code(),
        AppendError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        AppendError::NotServing => ResponseError::NotLeaderOrFollower.code(),
        AppendError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber.code(),
        AppendError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch.code(),
        AppendError::Storage(_) => ResponseError::KafkaStorageError.code(),
    }
}
