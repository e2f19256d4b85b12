//! Transaction markers: written on this broker into the partitions it owns, and sent as Kafka
//! `WriteTxnMarkers` requests to the brokers owning the others — the same request a Kafka
//! transaction coordinator sends, answered by `handler::write_txn_markers` on the other side.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use log_store::VChannelId;
use sluice_protocol::ResponseError as E;
use sluice_protocol::control::{Marker, encode_marker};
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::handler::{local_wal, route};
use crate::interbroker::PeerConnection;
use crate::streaming::interceptor::AppendError;
use crate::streaming::wal::{Acks, AppendRequest, Origin, now_ms};

/// The WriteTxnMarkers version sent to other brokers.
const MARKERS_VERSION: i16 = 1;
/// How long a broker has to answer a WriteTxnMarkers request.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Writes one marker into each partition; returns each partition's outcome. Partitions of
/// deleted topics, and partitions whose producer state already moved past this epoch, need no
/// marker and count as done.
pub async fn write(
    broker: &Broker,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    partitions: &[(String, i32)],
) -> Vec<((String, i32), Result<(), i16>)> {
    let state = broker.cluster.state();
    let mut out = Vec::with_capacity(partitions.len());
    let mut local = Vec::new();
    let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let key = (topic.clone(), *partition);
        match route(&state, topic, *partition) {
            Err(_) => out.push((key, Ok(()))),
            Ok(r) => match r.leader {
                None => out.push((key, Err(E::LeaderNotAvailable.code()))),
                Some(id) if id == broker.node_id() => local.push(key),
                Some(id) => remote.entry(id).or_default().push(key),
            },
        }
    }
    // Every partition's marker is written at once: those on different pchannels sync in
    // parallel, those on one pchannel share its group commit.
    let local_writes = join_all(local.into_iter().map(|key| async move {
        let result = write_local(
            broker,
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            &key.0,
            key.1,
        )
        .await;
        vec![(key, result)]
    }));
    let endpoints = broker.cluster.live_brokers(&state);
    let remote_writes = join_all(remote.into_iter().map(|(id, keys)| {
        let endpoint = endpoints.iter().find(|b| b.id == id);
        let address = endpoint.map(|e| format!("{}:{}", e.host, e.port));
        async move {
            let Some(address) = address else {
                return keys
                    .into_iter()
                    .map(|k| (k, Err(E::BrokerNotAvailable.code())))
                    .collect::<Vec<_>>();
            };
            let request = request_for(
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
                &keys,
            );
            let sent = async {
                let mut peer = PeerConnection::connect(&address, REMOTE_TIMEOUT).await?;
                peer.send(&request, MARKERS_VERSION).await
            };
            match sent.await {
                Ok(response) => outcomes(&keys, &response),
                Err(_) => keys
                    .into_iter()
                    .map(|k| (k, Err(E::NetworkException.code())))
                    .collect(),
            }
        }
    }));
    let (locals, remotes) = futures_util::future::join(local_writes, remote_writes).await;
    out.extend(locals.into_iter().flatten());
    out.extend(remotes.into_iter().flatten());
    out
}

/// Writes a marker into a partition this broker owns and waits until it is durable; a marker
/// on `__consumer_offsets` also settles the transaction's pending offsets in the group cache.
pub async fn write_local(
    broker: &Broker,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    topic: &str,
    partition: i32,
) -> Result<(), i16> {
    let state = broker.cluster.state();
    let r = route(&state, topic, partition)?;
    let wal = local_wal(broker, &r)?;
    let batch = encode_marker(
        Marker::of(commit),
        producer_id,
        producer_epoch,
        coordinator_epoch,
        now_ms(),
    );
    // Offsets partitions: no load may run between the marker reaching the log and the cache
    // learning of it.
    let _fence = if topic == OFFSETS_TOPIC {
        Some(broker.groups.txn_fence().await)
    } else {
        None
    };
    let (reply, receiver) = oneshot::channel();
    wal.submit(AppendRequest {
        vchannel: VChannelId(r.vchannel),
        batches: vec![batch],
        acks: Acks::Durable,
        log_append_time: false,
        origin: Origin::Coordinator,
        reply,
    });
    match receiver.await {
        Ok(Ok(_)) => {}
        // The partition already saw a newer epoch of this producer: a later marker superseded
        // this one.
        Ok(Err(AppendError::InvalidProducerEpoch(_))) => return Ok(()),
        Ok(Err(_)) | Err(_) => return Err(E::NotLeaderOrFollower.code()),
    }
    if topic == OFFSETS_TOPIC {
        broker.groups.complete_txn(partition, producer_id, commit);
    }
    Ok(())
}

fn request_for(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    keys: &[(String, i32)],
) -> WriteTxnMarkersRequest {
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (topic, partition) in keys {
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partition_indexes.push(*partition),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_indexes(vec![*partition]),
            ),
        }
    }
    WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(topics),
    ])
}

fn outcomes(
    keys: &[(String, i32)],
    response: &WriteTxnMarkersResponse,
) -> Vec<((String, i32), Result<(), i16>)> {
    keys.iter()
        .map(|(topic, partition)| {
            let code = response
                .markers
                .iter()
                .flat_map(|m| &m.topics)
                .filter(|t| t.name.as_str() == topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == *partition)
                .map_or(E::UnknownServerError.code(), |p| p.error_code);
            let result = if code == 0 || code == E::UnknownTopicOrPartition.code() {
                Ok(())
            } else {
                Err(code)
            };
            ((topic.clone(), *partition), result)
        })
        .collect()
}
