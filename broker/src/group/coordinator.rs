//! The group coordinator of this broker: finds a group's `__consumer_offsets` partition and
//! whether this broker owns it, loads the groups of a partition from its log when the pchannel
//! opens here, writes offset and group records durably, and expires sessions on a timer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log_store::VChannelId;
use parking_lot::{Mutex, RwLock};
use slog::{Logger, info, warn};
use sluice_protocol::RecordBatchHeader;
use sluice_protocol::ResponseError as E;
use sluice_protocol::control::{Marker, parse_marker};
use tokio::sync::{oneshot, watch};

use super::commit_queue::CommitQueue;
use super::offsets::{self, GroupMetadataValue, OffsetsRecord};
use super::state::{Group, GroupState};
use super::{GroupError, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::internal_topic::{decode_or_skip, owner_of, read_all, served_here};
use crate::streaming::Wal;
use crate::streaming::interceptor::AppendError;
use crate::streaming::wal::{Acks, AppendRequest, Appended, Origin, now_ms};

/// How often sessions and rebalance timeouts are checked.
const EXPIRY_TICK: Duration = Duration::from_millis(100);

/// One group: its state under a lock never held across `.await`, and a lock that orders the
/// group's writes to the log.
pub struct GroupHandle {
    /// The group's state.
    pub group: Mutex<Group>,
    /// Held while the group's records are appended, so the cache follows the log's order.
    pub writes: tokio::sync::Mutex<()>,
    /// OffsetCommits waiting for `writes`, appended together by the next holder.
    pub commits: CommitQueue,
}

impl GroupHandle {
    fn new(group: Group) -> GroupHandle {
        GroupHandle {
            group: Mutex::new(group),
            writes: tokio::sync::Mutex::new(()),
            commits: CommitQueue::default(),
        }
    }
}

/// Where a group lives: its `__consumer_offsets` partition, served here.
#[derive(Clone)]
pub struct Home {
    /// The partition of `__consumer_offsets`.
    pub partition: i32,
    /// Its vchannel.
    pub vchannel: u64,
    /// The pchannel serving it on this broker.
    pub wal: Arc<Wal>,
    /// The load of the partition this home was found in; a write through a home whose load
    /// was replaced is refused (its group handles are no longer the coordinator's).
    pub load: u64,
}

/// Held from an append to `__consumer_offsets` until the cache shows it: while any is held, the
/// partition is not (re)loaded, so a load never installs groups read from the log before a
/// commit became durable over the cache that commit updated.
pub type WriteFence<'a> = tokio::sync::RwLockReadGuard<'a, ()>;

/// The groups whose offsets partitions this broker serves.
pub struct GroupCoordinator {
    groups: RwLock<HashMap<String, Arc<GroupHandle>>>,
    /// Partition → (term of the pchannel it was loaded at, load number).
    loaded: Mutex<HashMap<i32, (u64, u64)>>,
    /// Written by loads and unloads, read by every append until its cache update (see
    /// [`WriteFence`]).
    loading: tokio::sync::RwLock<()>,
    /// Numbers the loads.
    loads: AtomicU64,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_delay: Duration,
    log: Logger,
}

impl GroupCoordinator {
    /// A coordinator with no groups loaded yet.
    pub fn new(initial_delay: Duration, log: Logger) -> GroupCoordinator {
        GroupCoordinator {
            groups: RwLock::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            loading: tokio::sync::RwLock::new(()),
            loads: AtomicU64::new(0),
            initial_delay,
            log,
        }
    }

    /// The group's partition and the broker owning it, from the applied metadata.
    /// `Err(COORDINATOR_NOT_AVAILABLE)` until `__consumer_offsets` exists and is assigned.
    pub fn coordinator_of(broker: &Broker, group_id: &str) -> Result<(i32, i32), i16> {
        owner_of(broker, OFFSETS_TOPIC, group_id)
    }

    /// Finds the group's home on this broker, loading its partition first if it was not loaded
    /// at the pchannel's current term. NOT_COORDINATOR when another broker owns it.
    pub async fn home(&self, broker: &Broker, group_id: &str) -> Result<Home, i16> {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let (partition, _) = Self::coordinator_of(broker, group_id)?;
        self.home_of_partition(broker, partition).await
    }

    async fn home_of_partition(&self, broker: &Broker, partition: i32) -> Result<Home, i16> {
        let (vchannel, wal) = served_here(broker, OFFSETS_TOPIC, partition)?;
        let mut home = Home {
            partition,
            vchannel,
            wal,
            load: 0,
        };
        let current = |home: &Home| {
            self.loaded
                .lock()
                .get(&partition)
                .filter(|(term, _)| *term == home.wal.term)
                .map(|(_, load)| *load)
        };
        if let Some(load) = current(&home) {
            home.load = load;
            return Ok(home);
        }
        let _loading = self.loading.write().await;
        if let Some(load) = current(&home) {
            home.load = load;
            return Ok(home);
        }
        self.load(&home).map_err(|e| {
            warn!(self.log, "loading __consumer_offsets partition failed";
                "partition" => partition, "error" => %e);
            E::CoordinatorLoadInProgress.code()
        })?;
        home.load = self.loads.fetch_add(1, Ordering::Relaxed) + 1;
        self.loaded
            .lock()
            .insert(partition, (home.wal.term, home.load));
        Ok(home)
    }

    /// Shares the partition with other writers and excludes its loads until dropped; refused
    /// with NOT_COORDINATOR when the partition was reloaded or unloaded since `home` was found.
    pub async fn fence(&self, home: &Home) -> Result<WriteFence<'_>, i16> {
        self.fence_at(home.partition, home.load).await
    }

    async fn fence_at(&self, partition: i32, load: u64) -> Result<WriteFence<'_>, i16> {
        let fence = self.loading.read().await;
        let loaded = self.loaded.lock().get(&partition).map(|(_, l)| *l);
        if loaded == Some(load) {
            Ok(fence)
        } else {
            Err(E::NotCoordinator.code())
        }
    }

    /// Records `partition` as loaded at `term` without reading it; returns the load number.
    #[cfg(test)]
    pub(crate) fn mark_loaded(&self, partition: i32, term: u64) -> u64 {
        let load = self.loads.fetch_add(1, Ordering::Relaxed) + 1;
        self.loaded.lock().insert(partition, (term, load));
        load
    }

    /// Loads every partition of `__consumer_offsets` served here (start-up and ListGroups).
    pub async fn load_local(&self, broker: &Broker) {
        let count = broker
            .cluster
            .state()
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len());
        for partition in 0..count {
            let partition = partition as i32;
            if self.home_of_partition(broker, partition).await.is_err() {
                self.unload(partition).await;
            }
        }
    }

    /// Forgets the groups of a partition this broker no longer serves.
    async fn unload(&self, partition: i32) {
        if !self.loaded.lock().contains_key(&partition) {
            return;
        }
        let _loading = self.loading.write().await;
        if self.loaded.lock().remove(&partition).is_some() {
            let mut map = self.groups.write();
            for h in map.values() {
                let mut g = h.group.lock();
                if g.partition == partition {
                    g.shut_down(E::NotCoordinator.code());
                }
            }
            map.retain(|_, h| h.group.lock().partition != partition);
            info!(self.log, "unloaded __consumer_offsets partition"; "partition" => partition);
        }
    }

    /// Rebuilds the groups of one partition by reading its log from the start.
    fn load(&self, home: &Home) -> Result<(), GroupError> {
        let started = Instant::now();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut records = 0u64;
        read_all(&home.wal, home.vchannel, |entry| {
            // Transactional offsets wait for their marker; a marker settles them.
            let (txn_producer, marker) = match RecordBatchHeader::parse(&entry.payload) {
                Ok(h) if h.is_transactional() => (
                    Some(h.producer_id()),
                    parse_marker(&entry.payload).ok().flatten(),
                ),
                _ => (None, None),
            };
            if let (Some(producer_id), Some(marker)) = (txn_producer, marker) {
                for g in groups.values_mut() {
                    g.settle_txn(producer_id, marker == Marker::Commit);
                }
                return;
            }
            let Some(decoded) =
                decode_or_skip(&self.log, home.partition, &entry, offsets::decode_batch)
            else {
                return;
            };
            for record in decoded {
                records += 1;
                match txn_producer {
                    Some(producer_id) => {
                        stash(&mut groups, record, producer_id, home.partition, &self.log)
                    }
                    None => apply(&mut groups, record, home.partition, &self.log),
                }
            }
        })?;
        let mut map = self.groups.write();
        map.retain(|_, h| h.group.lock().partition != home.partition);
        let count = groups.len();
        for (id, group) in groups {
            if group.is_blank() {
                continue;
            }
            map.insert(id, Arc::new(GroupHandle::new(group)));
        }
        info!(self.log, "loaded __consumer_offsets partition"; "partition" => home.partition,
            "term" => home.wal.term, "records" => records, "groups" => count,
            "elapsed_ms" => started.elapsed().as_millis() as u64);
        Ok(())
    }

    /// The group if it exists.
    pub fn get(&self, group_id: &str) -> Option<Arc<GroupHandle>> {
        self.groups.read().get(group_id).cloned()
    }

    /// The group, created empty if it does not exist. A blank group stays while the returned
    /// handle (or any other clone) is alive, see [`GroupCoordinator::expire`].
    pub fn get_or_create(&self, group_id: &str, home: &Home) -> Arc<GroupHandle> {
        self.get_or_create_in(group_id, home.partition)
    }

    fn get_or_create_in(&self, group_id: &str, partition: i32) -> Arc<GroupHandle> {
        if let Some(h) = self.get(group_id) {
            return h;
        }
        self.groups
            .write()
            .entry(group_id.to_string())
            .or_insert_with(|| {
                Arc::new(GroupHandle::new(Group::new(group_id, partition, &self.log)))
            })
            .clone()
    }

    /// Every loaded group.
    pub fn all(&self) -> Vec<Arc<GroupHandle>> {
        self.groups.read().values().cloned().collect()
    }

    /// Forgets a group (after DeleteGroups wrote its tombstones).
    pub fn remove(&self, group_id: &str) {
        self.groups.write().remove(group_id);
    }

    /// Appends records to the group's partition and waits until they are durable. The caller
    /// keeps the returned fence until its cache update is done.
    pub async fn append(
        &self,
        home: &Home,
        records: &[OffsetsRecord],
    ) -> Result<WriteFence<'_>, i16> {
        let batches =
            offsets::encode_batches(records, now_ms()).map_err(|_| E::UnknownServerError.code())?;
        self.append_batches(home, batches).await
    }

    /// Appends offsets committed inside a producer's transaction (TxnOffsetCommit). A fenced
    /// producer's epoch is refused with INVALID_PRODUCER_EPOCH.
    pub async fn append_txn(
        &self,
        home: &Home,
        records: &[OffsetsRecord],
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<WriteFence<'_>, i16> {
        let batches = offsets::encode_txn_batches(records, now_ms(), producer_id, producer_epoch)
            .map_err(|_| E::UnknownServerError.code())?;
        self.append_batches(home, batches).await
    }

    /// Held while a transaction marker is written to an offsets partition and settled in the
    /// cache, so no load runs in between.
    pub async fn txn_fence(&self) -> WriteFence<'_> {
        self.loading.read().await
    }

    /// A transaction marker was written to `partition`: the producer's pending offsets in the
    /// groups of that partition become committed, or are dropped.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        for handle in self.all() {
            let mut g = handle.group.lock();
            if g.partition == partition {
                g.settle_txn(producer_id, commit);
            }
        }
    }

    /// Appends the records of several requests back to back, one append each, and waits until
    /// each is durable: appends queued together share the pchannel's group commit (one fsync).
    /// `Err` when the partition was reloaded; otherwise each request's outcome, in order. The
    /// caller keeps the returned fence until its cache update is done.
    pub async fn append_each(
        &self,
        home: &Home,
        requests: &[&[OffsetsRecord]],
    ) -> Result<(WriteFence<'_>, Vec<Result<(), i16>>), i16> {
        let fence = self.fence(home).await?;
        let submitted: Vec<_> = requests
            .iter()
            .map(|records| {
                offsets::encode_batches(records, now_ms())
                    .map(|batches| submit(home, batches))
                    .map_err(|_| E::UnknownServerError.code())
            })
            .collect();
        let mut outcomes = Vec::with_capacity(submitted.len());
        for s in submitted {
            outcomes.push(match s {
                Ok(receiver) => durable(receiver).await,
                Err(code) => Err(code),
            });
        }
        Ok((fence, outcomes))
    }

    async fn append_batches(
        &self,
        home: &Home,
        batches: Vec<bytes::Bytes>,
    ) -> Result<WriteFence<'_>, i16> {
        let fence = self.fence(home).await?;
        durable(submit(home, batches)).await.map(|()| fence)
    }

    /// Stores the group's metadata after a completed rebalance.
    pub async fn store_group(&self, home: &Home, handle: &GroupHandle) -> Result<(), i16> {
        let _writes = handle.writes.lock().await;
        let record = {
            let g = handle.group.lock();
            OffsetsRecord::Group {
                group: g.group_id.clone(),
                value: Some(GroupMetadataValue {
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    generation: g.generation,
                    protocol: g.protocol.clone(),
                    leader: g.leader.clone(),
                    current_state_timestamp: now_ms(),
                }),
            }
        };
        self.append(home, &[record]).await.map(drop)
    }

    /// Expires sessions and completes timed-out rebalances every [`EXPIRY_TICK`] until
    /// shutdown; forgets groups left with nothing.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(EXPIRY_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            self.expire(Instant::now());
        }
    }

    /// One expiry tick: expires sessions, then forgets blank groups no request holds. A blank
    /// group may be one an OffsetCommit just created and is writing to (generation -1, as
    /// AdminClient's alterConsumerGroupOffsets sends): forgetting it then would leave the
    /// acknowledged offsets in a handle nobody can find.
    fn expire(&self, now: Instant) {
        let mut blank = Vec::new();
        for handle in self.all() {
            let mut g = handle.group.lock();
            g.expire(now);
            if g.is_blank() {
                blank.push(g.group_id.clone());
            }
        }
        if !blank.is_empty() {
            // Under the write lock nobody can clone a handle out of the map, so a count of one
            // means no request holds it now or can later.
            let mut map = self.groups.write();
            for id in blank {
                if map
                    .get(&id)
                    .is_some_and(|h| Arc::strong_count(h) == 1 && h.group.lock().is_blank())
                {
                    map.remove(&id);
                }
            }
        }
    }
}

/// Queues a durable append of `batches` to the group's partition.
fn submit(
    home: &Home,
    batches: Vec<bytes::Bytes>,
) -> oneshot::Receiver<Result<Appended, AppendError>> {
    let (reply, receiver) = oneshot::channel();
    home.wal.submit(AppendRequest {
        vchannel: VChannelId(home.vchannel),
        batches,
        acks: Acks::Durable,
        log_append_time: false,
        origin: Origin::Coordinator,
        reply,
    });
    receiver
}

/// Waits for a submitted append; its failure as a Kafka error code.
async fn durable(receiver: oneshot::Receiver<Result<Appended, AppendError>>) -> Result<(), i16> {
    match receiver.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(AppendError::TooLarge { .. })) => Err(E::InvalidCommitOffsetSize.code()),
        Ok(Err(AppendError::InvalidProducerEpoch(_))) => Err(E::InvalidProducerEpoch.code()),
        // Kafka maps storage and leadership failures of the offsets log to NOT_COORDINATOR:
        // the client finds the coordinator again and retries.
        Ok(Err(_)) | Err(_) => Err(E::NotCoordinator.code()),
    }
}

/// Keeps one loaded transactional offset record pending until its transaction's marker.
fn stash(
    groups: &mut BTreeMap<String, Group>,
    record: OffsetsRecord,
    producer_id: i64,
    partition: i32,
    log: &Logger,
) {
    if let OffsetsRecord::Offset {
        group,
        topic,
        partition: p,
        value: Some(v),
    } = record
    {
        groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, partition, log))
            .pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert((topic, p), v);
    }
}

/// Applies one loaded record to the groups being rebuilt.
fn apply(
    groups: &mut BTreeMap<String, Group>,
    record: OffsetsRecord,
    partition: i32,
    log: &Logger,
) {
    match record {
        OffsetsRecord::Offset {
            group,
            topic,
            partition: p,
            value,
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, partition, log));
            match value {
                Some(v) => {
                    g.offsets.insert((topic, p), v);
                }
                None => {
                    g.offsets.remove(&(topic, p));
                }
            }
        }
        OffsetsRecord::Group { group, value: None } => {
            groups.remove(&group);
        }
        OffsetsRecord::Group {
            group,
            value: Some(v),
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, partition, log));
            // Members are not stored: after a move or restart they rejoin (their heartbeats get
            // UNKNOWN_MEMBER_ID), so the group restarts Empty at its last generation.
            g.state = GroupState::Empty;
            g.generation = v.generation;
            g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
            g.protocol = None;
            g.leader = None;
        }
    }
}

/// Creates `__consumer_offsets` at start-up if it does not exist yet (`retention.ms=-1`: the
/// log is the only copy of committed offsets until compaction exists). Failures are logged;
/// FindCoordinator answers COORDINATOR_NOT_AVAILABLE until the topic exists.
pub async fn ensure_offsets_topic(broker: &Broker, log: &Logger) {
    if broker.cluster.state().topics.contains_key(OFFSETS_TOPIC) {
        return;
    }
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "-1".to_string());
    let partitions = broker.config.offsets_topic_num_partitions;
    match broker
        .create_topic(OFFSETS_TOPIC, partitions, configs)
        .await
    {
        Ok(_) => {
            info!(log, "created internal topic"; "topic" => OFFSETS_TOPIC, "partitions" => partitions)
        }
        Err(crate::broker::CreateTopicError::AlreadyExists) => {}
        Err(e) => {
            warn!(log, "cannot create internal topic"; "topic" => OFFSETS_TOPIC, "error" => %e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::offsets::OffsetEntry;

    fn coordinator() -> GroupCoordinator {
        GroupCoordinator::new(Duration::ZERO, Logger::root(slog::Discard, slog::o!()))
    }

    fn committed(coordinator: &GroupCoordinator, group_id: &str) -> Option<i64> {
        let handle = coordinator.get(group_id)?;
        let g = handle.group.lock();
        g.offsets.get(&("t".to_string(), 2)).map(|e| e.offset)
    }

    #[test]
    fn an_expiry_tick_during_a_first_commit_keeps_the_group() {
        let coordinator = coordinator();
        // OffsetCommit with generation -1 (AdminClient's alterConsumerGroupOffsets) creates the
        // group blank, then waits for its append to become durable...
        let handle = coordinator.get_or_create_in("other", 3);
        // ...while the expiry timer ticks...
        coordinator.expire(Instant::now());
        // ...and only then puts the acknowledged offset in the cache.
        handle.group.lock().offsets.insert(
            ("t".to_string(), 2),
            OffsetEntry {
                offset: 7,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp: 0,
            },
        );
        drop(handle);
        coordinator.expire(Instant::now());
        assert_eq!(committed(&coordinator, "other"), Some(7));

        // A blank group nobody holds is forgotten.
        drop(coordinator.get_or_create_in("blank", 3));
        coordinator.expire(Instant::now());
        assert!(coordinator.get("blank").is_none());
    }

    #[tokio::test]
    async fn a_load_waits_for_writes_in_flight_and_fences_off_older_homes() {
        let coordinator = coordinator();
        coordinator.loaded.lock().insert(3, (1, 1));
        let fence = coordinator.fence_at(3, 1).await.expect("current load");
        // A commit is between its append and its cache update: no load of any partition may
        // read the log and replace the groups now.
        assert!(coordinator.loading.try_write().is_err());
        drop(fence);
        assert!(coordinator.loading.try_write().is_ok());
        // The partition was reloaded: a write through a home found before is refused, since
        // its handle is no longer the one OffsetFetch reads.
        coordinator.loaded.lock().insert(3, (1, 2));
        assert_eq!(
            coordinator.fence_at(3, 1).await.err(),
            Some(E::NotCoordinator.code())
        );
        assert!(coordinator.fence_at(3, 2).await.is_ok());
        coordinator.loaded.lock().remove(&3);
        assert_eq!(
            coordinator.fence_at(3, 2).await.err(),
            Some(E::NotCoordinator.code())
        );
    }
}
