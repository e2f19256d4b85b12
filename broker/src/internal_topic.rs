//! What the group and transaction coordinators share about their internal topics
//! (`__consumer_offsets`, `__transaction_state`): which partition a key belongs to and who owns
//! it, whether this broker serves it, and reading a partition from its start when it is loaded.

use std::sync::Arc;

use log_store::{LogError, ReadEntry, VChannelId};
use sluice_protocol::ResponseError as E;

use crate::broker::Broker;
use crate::group::partition_for;
use crate::handler::{local_wal, route};
use crate::streaming::Wal;

/// Bytes read per call while loading a partition.
const LOAD_CHUNK: usize = 4 << 20;

/// The partition of `topic` that holds `key` (Kafka's `abs(key.hashCode) % partitions`) and
/// the broker owning it. COORDINATOR_NOT_AVAILABLE until the topic exists and is assigned.
pub fn owner_of(broker: &Broker, topic: &str, key: &str) -> Result<(i32, i32), i16> {
    let state = broker.cluster.state();
    let info = state
        .topics
        .get(topic)
        .ok_or(E::CoordinatorNotAvailable.code())?;
    let count = i32::try_from(info.partitions.len()).unwrap_or(i32::MAX);
    let partition = partition_for(key, count);
    let r = route(&state, topic, partition).map_err(|_| E::CoordinatorNotAvailable.code())?;
    let leader = r.leader.ok_or(E::CoordinatorNotAvailable.code())?;
    Ok((partition, leader))
}

/// The vchannel and pchannel of a partition served here; NOT_COORDINATOR when another broker
/// owns it, COORDINATOR_NOT_AVAILABLE when nobody does.
pub fn served_here(broker: &Broker, topic: &str, partition: i32) -> Result<(u64, Arc<Wal>), i16> {
    let state = broker.cluster.state();
    let r = route(&state, topic, partition).map_err(|_| E::CoordinatorNotAvailable.code())?;
    let wal = local_wal(broker, &r).map_err(|c| {
        if c == E::LeaderNotAvailable.code() {
            E::CoordinatorNotAvailable.code()
        } else {
            E::NotCoordinator.code()
        }
    })?;
    Ok((r.vchannel, wal))
}

/// Calls `each` with every stored batch of a vchannel, from its log start to its end.
pub fn read_all(wal: &Wal, vchannel: u64, mut each: impl FnMut(ReadEntry)) -> Result<(), LogError> {
    let vchannel = VChannelId(vchannel);
    let Some(st) = wal.log.vchannel_state(vchannel) else {
        return Ok(());
    };
    let mut offset = st.log_start_offset;
    while offset < st.log_end_offset {
        let entries = wal.log.read(vchannel, offset, LOAD_CHUNK)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            offset = entry.last_offset + 1;
            each(entry);
        }
    }
    Ok(())
}

/// Decodes one stored batch of an internal topic with `decode`; a batch that does not decode is
/// logged and skipped (`None`), so one damaged batch does not stop a coordinator from loading.
pub fn decode_or_skip<T, E: std::fmt::Display>(
    log: &slog::Logger,
    partition: i32,
    entry: &ReadEntry,
    decode: impl FnOnce(&bytes::Bytes) -> Result<T, E>,
) -> Option<T> {
    match decode(&entry.payload) {
        Ok(decoded) => Some(decoded),
        Err(e) => {
            slog::warn!(log, "skipping undecodable batch"; "partition" => partition,
                "offset" => entry.first_offset, "error" => %e);
            None
        }
    }
}
