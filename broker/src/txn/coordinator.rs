//! The transaction coordinator of this broker: finds a transactional id's `__transaction_state`
//! partition and whether this broker owns it, rebuilds the partition's state from its log when
//! the pchannel opens here, runs the state changes of InitProducerId, AddPartitionsToTxn and
//! EndTxn (each durable before it is acted on), finishes decided transactions by writing their
//! markers, and aborts transactions that outlive their timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log_store::VChannelId;
use parking_lot::{Mutex, RwLock};
use slog::{Logger, info, warn};
use sluice_protocol::ResponseError as E;
use tokio::sync::{mpsc, oneshot, watch};

use super::log::{TxnRecord, decode_batch, encode_batches};
use super::{TXN_TOPIC, TxnMetadata, TxnStatus, markers};
use crate::broker::{Broker, metadata_error_code};
use crate::internal_topic::{decode_or_skip, owner_of, read_all, served_here};
use crate::streaming::Wal;
use crate::streaming::wal::{Acks, AppendRequest, Origin, now_ms};

/// Longest pause between two attempts to write a transaction's remaining markers.
const MAX_MARKER_BACKOFF: Duration = Duration::from_secs(5);
/// How long EndTxn waits for the markers before it answers anyway (the decision is durable
/// already; the markers keep being retried in the background).
const END_TXN_WAIT: Duration = Duration::from_secs(5);

/// One transactional id. Its state's lock is held across the durable write of each change, so
/// the changes of one id happen one at a time and in log order.
pub struct TxnHandle {
    /// The `__transaction_state` partition of the id.
    pub partition: i32,
    /// The state.
    pub state: tokio::sync::Mutex<TxnMetadata>,
}

/// A `__transaction_state` partition served here.
#[derive(Clone)]
pub struct Home {
    /// The partition.
    pub partition: i32,
    /// Its vchannel.
    pub vchannel: u64,
    /// The pchannel serving it on this broker.
    pub wal: Arc<Wal>,
}

impl Home {
    /// The coordinator epoch written into markers: the pchannel's term.
    pub fn coordinator_epoch(&self) -> i32 {
        i32::try_from(self.wal.term).unwrap_or(i32::MAX)
    }
}

/// The transactional ids whose `__transaction_state` partitions this broker serves.
pub struct TransactionCoordinator {
    txns: RwLock<HashMap<String, Arc<TxnHandle>>>,
    /// Partition → term of the pchannel it was loaded at.
    loaded: Mutex<HashMap<i32, u64>>,
    loading: tokio::sync::Mutex<()>,
    /// `transaction.max.timeout.ms`.
    max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    expiration: Duration,
    /// Decided transactions found by a load, to be finished by the expiry task.
    resume: mpsc::UnboundedSender<Arc<TxnHandle>>,
    resume_rx: Mutex<Option<mpsc::UnboundedReceiver<Arc<TxnHandle>>>>,
    log: Logger,
}

/// Kafka's rule: an epoch is bumped until `i16::MAX - 1`; then the id gets a new producer id.
fn next_epoch(epoch: i16) -> Option<i16> {
    (epoch < i16::MAX - 1).then(|| epoch.max(-1) + 1)
}

impl TransactionCoordinator {
    /// A coordinator with nothing loaded.
    pub fn new(max_timeout: Duration, expiration: Duration, log: Logger) -> TransactionCoordinator {
        let (resume, resume_rx) = mpsc::unbounded_channel();
        TransactionCoordinator {
            resume,
            resume_rx: Mutex::new(Some(resume_rx)),
            txns: RwLock::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
            max_timeout_ms: i32::try_from(max_timeout.as_millis()).unwrap_or(i32::MAX),
            expiration,
            log,
        }
    }

    /// The id's partition and the broker owning it, from the applied metadata.
    pub fn coordinator_of(broker: &Broker, transactional_id: &str) -> Result<(i32, i32), i16> {
        owner_of(broker, TXN_TOPIC, transactional_id)
    }

    /// The id's home on this broker, loading its partition first if it was not loaded at the
    /// pchannel's current term. NOT_COORDINATOR when another broker owns it.
    pub async fn home(&self, broker: &Arc<Broker>, transactional_id: &str) -> Result<Home, i16> {
        if transactional_id.is_empty() {
            return Err(E::InvalidRequest.code());
        }
        let (partition, _) = Self::coordinator_of(broker, transactional_id)?;
        self.home_of_partition(broker, partition).await
    }

    async fn home_of_partition(&self, broker: &Arc<Broker>, partition: i32) -> Result<Home, i16> {
        let (vchannel, wal) = served_here(broker, TXN_TOPIC, partition)?;
        let home = Home {
            partition,
            vchannel,
            wal,
        };
        let current = |home: &Home| self.loaded.lock().get(&partition) == Some(&home.wal.term);
        if current(&home) {
            return Ok(home);
        }
        let _loading = self.loading.lock().await;
        if current(&home) {
            return Ok(home);
        }
        let preparing = self.load(&home).map_err(|e| {
            warn!(self.log, "loading __transaction_state partition failed";
                "partition" => partition, "error" => %e);
            E::CoordinatorLoadInProgress.code()
        })?;
        self.loaded.lock().insert(partition, home.wal.term);
        // Transactions decided before the move or restart still need their markers.
        for handle in preparing {
            let _ = self.resume.send(handle);
        }
        Ok(home)
    }

    /// Loads every partition of `__transaction_state` served here (start-up), so decided
    /// transactions are finished and open ones time out without waiting for a client.
    pub async fn load_local(&self, broker: &Arc<Broker>) {
        let count = broker
            .cluster
            .state()
            .topics
            .get(TXN_TOPIC)
            .map_or(0, |t| t.partitions.len());
        for partition in 0..count {
            let _ = self.home_of_partition(broker, partition as i32).await;
        }
    }

    /// Rebuilds the ids of one partition from its log; returns the handles of decided
    /// transactions whose markers must still be written.
    fn load(&self, home: &Home) -> Result<Vec<Arc<TxnHandle>>, crate::group::GroupError> {
        let started = Instant::now();
        let mut latest: BTreeMap<String, TxnMetadata> = BTreeMap::new();
        let mut records = 0u64;
        read_all(&home.wal, home.vchannel, |entry| {
            let Some(decoded) = decode_or_skip(&self.log, home.partition, &entry, decode_batch)
            else {
                return;
            };
            for record in decoded {
                records += 1;
                match record.value {
                    Some(v) => latest.insert(record.transactional_id, v),
                    None => latest.remove(&record.transactional_id),
                };
            }
        })?;
        let mut preparing = Vec::new();
        let mut map = self.txns.write();
        map.retain(|_, h| h.partition != home.partition);
        let count = latest.len();
        for (id, txn) in latest {
            let is_preparing = txn.status.is_preparing();
            let handle = Arc::new(TxnHandle {
                partition: home.partition,
                state: tokio::sync::Mutex::new(txn),
            });
            if is_preparing {
                preparing.push(handle.clone());
            }
            map.insert(id, handle);
        }
        info!(self.log, "loaded __transaction_state partition"; "partition" => home.partition,
            "term" => home.wal.term, "records" => records, "transactional_ids" => count,
            "to_complete" => preparing.len(), "elapsed_ms" => started.elapsed().as_millis() as u64);
        Ok(preparing)
    }

    /// The id's handle if it is known.
    pub fn get(&self, transactional_id: &str) -> Option<Arc<TxnHandle>> {
        self.txns.read().get(transactional_id).cloned()
    }

    /// Every known id.
    pub fn all(&self) -> Vec<Arc<TxnHandle>> {
        self.txns.read().values().cloned().collect()
    }

    /// Writes a state (or a tombstone) and waits until it is durable.
    async fn persist(&self, home: &Home, record: TxnRecord) -> Result<(), i16> {
        self.persist_with(home, record, Acks::Durable).await
    }

    async fn persist_with(&self, home: &Home, record: TxnRecord, acks: Acks) -> Result<(), i16> {
        let batches =
            encode_batches(&[record], now_ms()).map_err(|_| E::UnknownServerError.code())?;
        let (reply, receiver) = oneshot::channel();
        home.wal.submit(AppendRequest {
            vchannel: VChannelId(home.vchannel),
            batches,
            acks,
            log_append_time: false,
            origin: Origin::Coordinator,
            reply,
        });
        match receiver.await {
            Ok(Ok(_)) => Ok(()),
            // As Kafka does: the client finds the coordinator again and retries.
            Ok(Err(_)) | Err(_) => Err(E::NotCoordinator.code()),
        }
    }

    async fn store(&self, home: &Home, txn: &TxnMetadata) -> Result<(), i16> {
        self.persist(
            home,
            TxnRecord {
                transactional_id: txn.transactional_id.clone(),
                value: Some(txn.clone()),
            },
        )
        .await
    }

    /// InitProducerId with a transactional id: the id's producer id with a bumped epoch, which
    /// fences every older instance. An open transaction is aborted first and the caller told
    /// CONCURRENT_TRANSACTIONS, to retry once the abort is done (as Kafka does).
    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), i16> {
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(E::InvalidTransactionTimeout.code());
        }
        let home = self.home(broker, transactional_id).await?;
        let handle = self.get_or_insert(transactional_id, home.partition);
        let mut t = handle.state.lock().await;
        let now = now_ms();
        if t.producer_id < 0 {
            let producer_id = broker
                .producer_ids
                .next(&broker.cluster)
                .await
                .map_err(|e| {
                    warn!(self.log, "producer id allocation failed"; "error" => %e);
                    metadata_error_code(&e)
                })?;
            let next = TxnMetadata {
                producer_id,
                producer_epoch: 0,
                timeout_ms,
                status: TxnStatus::Empty,
                last_update_ms: now,
                start_ms: -1,
                ..t.clone()
            };
            self.store(&home, &next).await?;
            *t = next;
            info!(self.log, "transactional id registered"; "transactional_id" => transactional_id,
                "producer_id" => producer_id);
            return Ok((producer_id, 0));
        }
        match t.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence => {
                return Err(E::ConcurrentTransactions.code());
            }
            TxnStatus::Ongoing => {
                // A new instance fences the old one: abort its transaction at a bumped epoch.
                let mut next = t.clone();
                if let Some(epoch) = next_epoch(t.producer_epoch) {
                    next.producer_epoch = epoch;
                }
                next.status = TxnStatus::PrepareAbort;
                next.last_update_ms = now;
                self.store(&home, &next).await?;
                *t = next;
                drop(t);
                info!(self.log, "fencing the previous producer: aborting its open transaction";
                    "transactional_id" => transactional_id);
                tokio::spawn(complete(broker.clone(), handle.clone()));
                return Err(E::ConcurrentTransactions.code());
            }
            _ => {}
        }
        if let Some((producer_id, epoch)) = expected
            && (producer_id, epoch) != (t.producer_id, t.producer_epoch)
        {
            return Err(E::ProducerFenced.code());
        }
        let mut next = t.clone();
        match next_epoch(t.producer_epoch) {
            Some(epoch) => next.producer_epoch = epoch,
            None => {
                next.producer_id = broker
                    .producer_ids
                    .next(&broker.cluster)
                    .await
                    .map_err(|e| metadata_error_code(&e))?;
                next.producer_epoch = 0;
            }
        }
        next.timeout_ms = timeout_ms;
        next.status = TxnStatus::Empty;
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now;
        self.store(&home, &next).await?;
        *t = next;
        Ok((t.producer_id, t.producer_epoch))
    }

    fn get_or_insert(&self, transactional_id: &str, partition: i32) -> Arc<TxnHandle> {
        if let Some(h) = self.get(transactional_id) {
            return h;
        }
        self.txns
            .write()
            .entry(transactional_id.to_string())
            .or_insert_with(|| {
                Arc::new(TxnHandle {
                    partition,
                    state: tokio::sync::Mutex::new(TxnMetadata {
                        transactional_id: transactional_id.to_string(),
                        producer_id: -1,
                        producer_epoch: -1,
                        timeout_ms: 0,
                        status: TxnStatus::Empty,
                        partitions: Default::default(),
                        last_update_ms: now_ms(),
                        start_ms: -1,
                    }),
                })
            })
            .clone()
    }

    /// The id's handle after checking the producer id and epoch against it.
    async fn checked(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
    ) -> Result<(Home, Arc<TxnHandle>), i16> {
        let home = self.home(broker, transactional_id).await?;
        let handle = self
            .get(transactional_id)
            .ok_or(E::InvalidProducerIdMapping.code())?;
        Ok((home, handle))
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: adds partitions to the open transaction, opening
    /// it if needed; durable before the answer. With `verify_only` nothing is added: the answer
    /// says whether all of them are in the open transaction already.
    pub async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        verify_only: bool,
    ) -> Result<(), i16> {
        let (home, handle) = self.checked(broker, transactional_id).await?;
        let mut t = handle.state.lock().await;
        check_producer(&t, producer_id, producer_epoch)?;
        if t.status.is_preparing() || t.status == TxnStatus::PrepareEpochFence {
            return Err(E::ConcurrentTransactions.code());
        }
        let all_in =
            t.status == TxnStatus::Ongoing && partitions.iter().all(|p| t.partitions.contains(p));
        if verify_only {
            return if all_in {
                Ok(())
            } else {
                Err(E::InvalidTxnState.code())
            };
        }
        if all_in {
            return Ok(());
        }
        let now = now_ms();
        let mut next = t.clone();
        if next.status != TxnStatus::Ongoing {
            next.start_ms = now;
            next.partitions.clear();
        }
        next.status = TxnStatus::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now;
        self.store(&home, &next).await?;
        *t = next;
        Ok(())
    }

    /// EndTxn: makes the decision durable, writes the markers, and answers once they are
    /// written (or after [`END_TXN_WAIT`], leaving them to the background): answering before
    /// the markers, as Kafka does, sends the producer's next AddPartitionsToTxn into
    /// CONCURRENT_TRANSACTIONS and a retry backoff.
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), i16> {
        let (home, handle) = self.checked(broker, transactional_id).await?;
        let mut t = handle.state.lock().await;
        check_producer(&t, producer_id, producer_epoch)?;
        match (t.status, commit) {
            (TxnStatus::Ongoing, _) => {}
            // A retry of an EndTxn whose answer was lost.
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => return Ok(()),
            (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
                return Err(E::ConcurrentTransactions.code());
            }
            _ => return Err(E::InvalidTxnState.code()),
        }
        let mut next = t.clone();
        next.status = if commit {
            TxnStatus::PrepareCommit
        } else {
            TxnStatus::PrepareAbort
        };
        next.last_update_ms = now_ms();
        self.store(&home, &next).await?;
        *t = next;
        drop(t);
        let completing = tokio::spawn(complete(broker.clone(), handle));
        let _ = tokio::time::timeout(END_TXN_WAIT, completing).await;
        Ok(())
    }

    /// Aborts open transactions past their timeout (fencing their producers with a bumped
    /// epoch, as Kafka does) and forgets ids idle longer than `transactional.id.expiration.ms`,
    /// every `interval`, and finishes the decided transactions loads find, until shutdown.
    pub async fn run_expiry(
        broker: Arc<Broker>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let Some(mut resume) = broker.txns.resume_rx.lock().take() else {
            return;
        };
        loop {
            let tick = tokio::select! {
                _ = ticker.tick() => true,
                Some(handle) = resume.recv() => {
                    tokio::spawn(complete(broker.clone(), handle));
                    false
                }
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if tick {
                broker.txns.expire(&broker).await;
            }
        }
    }

    async fn expire(&self, broker: &Arc<Broker>) {
        let now = now_ms();
        let expiration = i64::try_from(self.expiration.as_millis()).unwrap_or(i64::MAX);
        for handle in self.all() {
            let Ok(mut t) = handle.state.try_lock() else {
                continue;
            };
            let timed_out = t.status == TxnStatus::Ongoing
                && now > t.start_ms.saturating_add(i64::from(t.timeout_ms));
            let idle = matches!(
                t.status,
                TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
            ) && now > t.last_update_ms.saturating_add(expiration);
            if !timed_out && !idle {
                continue;
            }
            let Ok(home) = self.home(broker, &t.transactional_id).await else {
                continue;
            };
            if timed_out {
                let mut next = t.clone();
                if let Some(epoch) = next_epoch(t.producer_epoch) {
                    next.producer_epoch = epoch;
                }
                next.status = TxnStatus::PrepareAbort;
                next.last_update_ms = now;
                if self.store(&home, &next).await.is_ok() {
                    info!(self.log, "aborting a transaction past its timeout";
                        "transactional_id" => &t.transactional_id, "producer_id" => t.producer_id,
                        "timeout_ms" => t.timeout_ms);
                    *t = next;
                    drop(t);
                    tokio::spawn(complete(broker.clone(), handle.clone()));
                }
            } else {
                let record = TxnRecord {
                    transactional_id: t.transactional_id.clone(),
                    value: None,
                };
                if self.persist(&home, record).await.is_ok() {
                    info!(self.log, "transactional id expired"; "transactional_id" => &t.transactional_id);
                    t.status = TxnStatus::Dead;
                    let id = t.transactional_id.clone();
                    drop(t);
                    let mut map = self.txns.write();
                    if map.get(&id).is_some_and(|h| Arc::ptr_eq(h, &handle)) {
                        map.remove(&id);
                    }
                }
            }
        }
    }
}

/// PRODUCER_FENCED for an older epoch, INVALID_PRODUCER_ID_MAPPING for another producer id.
fn check_producer(t: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
    if t.producer_id != producer_id {
        Err(E::InvalidProducerIdMapping.code())
    } else if t.producer_epoch != producer_epoch {
        Err(E::ProducerFenced.code())
    } else {
        Ok(())
    }
}

/// Writes the markers of a decided transaction to every partition in it, retrying the ones that
/// fail, then records the transaction complete. Stops when this broker is no longer the
/// coordinator: the next one finds the decision in the log and finishes it.
pub async fn complete(broker: Arc<Broker>, handle: Arc<TxnHandle>) {
    let (transactional_id, producer_id, producer_epoch, status, mut remaining) = {
        let t = handle.state.lock().await;
        if !t.status.is_preparing() {
            return;
        }
        (
            t.transactional_id.clone(),
            t.producer_id,
            t.producer_epoch,
            t.status,
            t.partitions.iter().cloned().collect::<Vec<_>>(),
        )
    };
    let commit = status == TxnStatus::PrepareCommit;
    let log = broker.txns.log.clone();
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0u32;
    loop {
        let Ok(home) = broker.txns.home(&broker, &transactional_id).await else {
            return;
        };
        let results = markers::write(
            &broker,
            producer_id,
            producer_epoch,
            commit,
            home.coordinator_epoch(),
            &remaining,
        )
        .await;
        let failed: Vec<((String, i32), i16)> = results
            .into_iter()
            .filter_map(|(p, r)| r.err().map(|code| (p, code)))
            .collect();
        if failed.is_empty() {
            let mut t = handle.state.lock().await;
            if t.status != status
                || t.producer_id != producer_id
                || t.producer_epoch != producer_epoch
            {
                return;
            }
            let mut next = t.clone();
            next.status = if commit {
                TxnStatus::CompleteCommit
            } else {
                TxnStatus::CompleteAbort
            };
            next.partitions.clear();
            next.start_ms = -1;
            next.last_update_ms = now_ms();
            // Not synced: a crash before the next sync leaves the Prepare record last, and the
            // next load writes the markers again, which changes nothing.
            let record = TxnRecord {
                transactional_id: next.transactional_id.clone(),
                value: Some(next.clone()),
            };
            if broker
                .txns
                .persist_with(&home, record, Acks::Written)
                .await
                .is_ok()
            {
                *t = next;
                return;
            }
        } else {
            attempts += 1;
            if attempts == 1 || attempts.is_power_of_two() {
                warn!(log, "transaction markers not written yet; retrying";
                    "transactional_id" => &transactional_id, "attempts" => attempts,
                    "failed" => ?failed);
            }
            remaining = failed.into_iter().map(|(p, _)| p).collect();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_MARKER_BACKOFF);
    }
}

/// Creates `__transaction_state` at start-up if it does not exist yet (`retention.ms=-1`: the
/// log is the only copy of transaction state until compaction exists).
pub async fn ensure_txn_topic(broker: &Broker, log: &Logger) {
    if broker.cluster.state().topics.contains_key(TXN_TOPIC) {
        return;
    }
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "-1".to_string());
    let partitions = broker.config.transaction_state_num_partitions;
    match broker.create_topic(TXN_TOPIC, partitions, configs).await {
        Ok(_) => {
            info!(log, "created internal topic"; "topic" => TXN_TOPIC, "partitions" => partitions)
        }
        Err(crate::broker::CreateTopicError::AlreadyExists) => {}
        Err(e) => warn!(log, "cannot create internal topic"; "topic" => TXN_TOPIC, "error" => %e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_bump_until_the_last_usable_value() {
        assert_eq!(next_epoch(-1), Some(0));
        assert_eq!(next_epoch(0), Some(1));
        assert_eq!(next_epoch(i16::MAX - 2), Some(i16::MAX - 1));
        assert_eq!(next_epoch(i16::MAX - 1), None);
    }

    #[test]
    fn producer_checks_tell_fenced_from_unknown() {
        let t = TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 10,
            producer_epoch: 3,
            timeout_ms: 1000,
            status: TxnStatus::Ongoing,
            partitions: Default::default(),
            last_update_ms: 0,
            start_ms: 0,
        };
        assert_eq!(check_producer(&t, 10, 3), Ok(()));
        assert_eq!(check_producer(&t, 10, 2), Err(E::ProducerFenced.code()));
        assert_eq!(
            check_producer(&t, 11, 3),
            Err(E::InvalidProducerIdMapping.code())
        );
    }
}
