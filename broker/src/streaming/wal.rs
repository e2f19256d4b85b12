//! One open pchannel on this node: its log, the single writer thread that runs the append
//! pipeline with group commit, and the notifier that wakes fetches waiting for new data.
//!
//! Appends arrive on a queue; the writer takes everything queued (up to a byte budget), runs
//! each batch through the interceptor chain, writes the whole group with one
//! `PChannel::append`, makes it durable with one sync when any request needs it, publishes the
//! new log end (waking tailing fetches) and answers every request of the group.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use log_store::{EntryRef, LogError, PChannel, Position, Term, VChannelId};
use parking_lot::Mutex;
use slog::{Logger, error, warn};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::FsyncPolicy;

use log_store::EntryFlags;
use sluice_protocol::RecordBatchHeader;
use sluice_protocol::control::Marker;

use super::interceptor::idempotence::{
    BatchSequence, Check, ProducerStates, SequenceError, last_sequence,
};
use super::interceptor::transaction::TxnIndex;
use super::interceptor::{self, AppendError, PreparedBatch};
use super::producer_snapshot::{self, ProducerState};

/// Bytes the writer gathers into one group commit before writing it.
const GROUP_BYTES: usize = 8 << 20;
/// How often the writer snapshots its idempotent-producer state (bounds the replay on open).
const SNAPSHOT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0` and `acks=1`: answered once the batch is in the segment.
    Written,
    /// `acks=all`: answered once the batch is durable (unless `wal.fsync.policy=never`).
    Durable,
}

/// Who writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A producer: batches get the idempotence checks; control batches are refused.
    Client,
    /// A coordinator of this broker (group offsets, transaction state, transaction markers):
    /// its batches carry no sequence numbers.
    Coordinator,
}

/// One partition's share of a produce request.
pub struct AppendRequest {
    /// The vchannel of the partition.
    pub vchannel: VChannelId,
    /// The record batches, each a slice of the request frame, validated by the handler.
    pub batches: Vec<Bytes>,
    /// When to answer.
    pub acks: Acks,
    /// `message.timestamp.type=LogAppendTime` for this topic.
    pub log_append_time: bool,
    /// Who writes the batches.
    pub origin: Origin,
    /// Where the result goes.
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// Where a partition's batches landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    /// The vchannel's log start offset after the append.
    pub log_start_offset: i64,
}

/// The metrics one writer updates, resolved for its pchannel once.
pub struct WalMetrics {
    group_commit_bytes: prometheus::Histogram,
    append_latency: prometheus::Histogram,
    fsync_latency: prometheus::Histogram,
}

impl WalMetrics {
    /// The pchannel's series of the broker's metrics.
    pub fn new(metrics: &crate::metrics::Metrics, pchannel: u32) -> WalMetrics {
        let label = pchannel.to_string();
        WalMetrics {
            group_commit_bytes: metrics.group_commit_bytes.with_label_values(&[&label]),
            append_latency: metrics.append_latency.with_label_values(&[&label]),
            fsync_latency: metrics.fsync_latency.with_label_values(&[&label]),
        }
    }
}

/// A pchannel opened by this node at a term.
pub struct Wal {
    /// The pchannel id.
    pub pchannel: u32,
    /// The term this node serves the pchannel at; the leader epoch of its partitions.
    pub term: u64,
    /// The log.
    pub log: Arc<PChannel>,
    /// Open and aborted transactions of the vchannels, shared with the readers.
    pub txns: Arc<Mutex<TxnIndex>>,
    queue: parking_lot::RwLock<Option<mpsc::UnboundedSender<AppendRequest>>>,
    published: watch::Receiver<u64>,
    writer: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

/// How a pchannel's writer behaves.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// When appends are synced.
    pub fsync_policy: FsyncPolicy,
    /// `producer.id.expiration.ms`.
    pub producer_expiration: std::time::Duration,
}

impl Wal {
    /// Starts the writer thread of an opened pchannel.
    pub fn start(
        pchannel: u32,
        term: u64,
        log: Arc<PChannel>,
        options: WriterOptions,
        state: ProducerState,
        metrics: WalMetrics,
        log_out: Logger,
    ) -> Arc<Wal> {
        let ProducerState { producers, txns } = state;
        let txns = Arc::new(Mutex::new(txns));
        let writer_txns = txns.clone();
        let (queue, requests) = mpsc::unbounded_channel();
        let (publish, published) = watch::channel(0u64);
        let writer_log = log.clone();
        let writer = std::thread::Builder::new()
            .name(format!("sluice-wal-{pchannel}"))
            .spawn(move || {
                Writer {
                    pchannel,
                    log: writer_log,
                    term: Term(term),
                    policy: options.fsync_policy,
                    producer_expiration_ms: i64::try_from(options.producer_expiration.as_millis())
                        .unwrap_or(i64::MAX),
                    next_offsets: HashMap::new(),
                    producers,
                    txns: writer_txns,
                    last_snapshot: std::time::Instant::now(),
                    snapshot_saver: None,
                    publish,
                    metrics,
                    logger: log_out,
                }
                .run(requests)
            })
            .expect("spawn WAL writer thread");
        Arc::new(Wal {
            pchannel,
            term,
            log,
            txns,
            queue: parking_lot::RwLock::new(Some(queue)),
            published,
            writer: parking_lot::Mutex::new(Some(writer)),
        })
    }

    /// Queues an append; the result arrives on the request's reply channel.
    pub fn submit(&self, request: AppendRequest) {
        let queue = self.queue.read();
        let refused = match queue.as_ref() {
            Some(queue) => queue.send(request).err().map(|e| e.0),
            None => Some(request),
        };
        if let Some(request) = refused {
            let _ = request.reply.send(Err(AppendError::NotServing));
        }
    }

    /// A receiver whose value changes every time appended data becomes visible.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.clone()
    }

    /// Stops the writer after the queued appends, syncs and checkpoints the log.
    pub fn close(&self) -> Result<(), LogError> {
        // Closing the queue ends the writer's loop once it drained what was queued.
        drop(self.queue.write().take());
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
        self.log.close()
    }
}

/// One partition's append after the interceptors.
enum Prepared {
    /// Batches to write.
    Batches(Vec<PreparedBatch>),
    /// A retried batch already written: answer with its original offsets.
    Duplicate(BatchSequence),
}

/// `(producer_id, producer_epoch, first_sequence, last_sequence)` of each batch; within one
/// request an idempotent producer's batches must follow each other. A client may not write
/// control batches.
fn idempotence_headers(
    batches: &[Bytes],
    origin: Origin,
) -> Result<Vec<(i64, i16, i32, i32)>, AppendError> {
    let mut out = Vec::with_capacity(batches.len());
    for bytes in batches {
        let h = RecordBatchHeader::parse(bytes).map_err(|e| AppendError::Corrupt(e.to_string()))?;
        if h.is_control() && origin == Origin::Client {
            return Err(AppendError::InvalidRecord(
                "control batches are written by the transaction coordinator only".into(),
            ));
        }
        let last_seq = last_sequence(h.base_sequence(), h.last_offset_delta());
        out.push((
            h.producer_id(),
            h.producer_epoch(),
            h.base_sequence(),
            last_seq,
        ));
    }
    if origin == Origin::Coordinator {
        return Ok(out);
    }
    for pair in out.windows(2) {
        let ((pid_a, epoch_a, _, last_a), (pid_b, epoch_b, first_b, _)) = (pair[0], pair[1]);
        if pid_a >= 0 && (pid_a, epoch_a) == (pid_b, epoch_b) && first_b != last_sequence(last_a, 1)
        {
            return Err(AppendError::OutOfOrderSequence(format!(
                "batches of producer {pid_a} in one request skip from sequence {last_a} to {first_b}"
            )));
        }
    }
    Ok(out)
}

/// Producer state taken at `position`, to be written once `position` is durable.
struct PendingSnapshot {
    log: Arc<PChannel>,
    position: Position,
    producers: Vec<producer_snapshot::StoredProducer>,
    txns: Vec<super::interceptor::transaction::StoredTxns>,
}

impl PendingSnapshot {
    fn save(self, logger: &Logger) {
        match self.log.sync() {
            Ok(durable) if durable >= self.position => {}
            Ok(durable) => {
                warn!(logger, "producer state snapshot skipped: its position is not durable";
                    "position" => self.position.0, "durable" => durable.0);
                return;
            }
            Err(e) => {
                warn!(logger, "producer state snapshot skipped: sync failed"; "error" => %e);
                return;
            }
        }
        let dir = self.log.dir();
        if let Err(e) = producer_snapshot::save(dir, self.position, self.producers, self.txns) {
            warn!(logger, "writing the producer state snapshot failed"; "error" => %e);
        }
    }
}

struct Writer {
    pchannel: u32,
    log: Arc<PChannel>,
    term: Term,
    policy: FsyncPolicy,
    /// `producer.id.expiration.ms`.
    producer_expiration_ms: i64,
    /// Next offset of each vchannel written here, cached from the log.
    next_offsets: HashMap<VChannelId, i64>,
    /// Idempotent producers' sequences on this pchannel's vchannels.
    producers: ProducerStates,
    /// The transaction stage's state, shared with the readers.
    txns: Arc<Mutex<TxnIndex>>,
    /// When the producer state was last written to its snapshot.
    last_snapshot: std::time::Instant,
    /// The thread writing the latest snapshot.
    snapshot_saver: Option<JoinHandle<()>>,
    publish: watch::Sender<u64>,
    metrics: WalMetrics,
    logger: Logger,
}

impl Writer {
    fn run(mut self, mut requests: mpsc::UnboundedReceiver<AppendRequest>) {
        let mut group = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut bytes: usize = first.batches.iter().map(Bytes::len).sum();
            group.push(first);
            while bytes < GROUP_BYTES {
                match requests.try_recv() {
                    Ok(next) => {
                        bytes += next.batches.iter().map(Bytes::len).sum::<usize>();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
            if self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
                self.snapshot();
            }
        }
        // The queue closed: the pchannel is closing. Leave a snapshot so the next open
        // replays nothing, after the one still being written, which it replaces.
        if let Some(saving) = self.snapshot_saver.take() {
            let _ = saving.join();
        }
        if let Some(snapshot) = self.capture_snapshot() {
            snapshot.save(&self.logger);
        }
    }

    /// Takes the producer state at the current log end and has a thread of its own write it
    /// once that end is durable: a snapshot must never describe batches that a crash could
    /// still take away, and the sync, which may have a whole backlog to write (acks=1 syncs
    /// nothing), must not hold up the appends queued behind it. While one is being written
    /// the next waits for the following round, so an older state never replaces a newer.
    fn snapshot(&mut self) {
        self.last_snapshot = std::time::Instant::now();
        if self
            .snapshot_saver
            .as_ref()
            .is_some_and(|saving| !saving.is_finished())
        {
            return;
        }
        let Some(snapshot) = self.capture_snapshot() else {
            return;
        };
        let logger = self.logger.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sluice-snap-{}", self.pchannel))
            .spawn(move || snapshot.save(&logger));
        match spawned {
            Ok(saving) => self.snapshot_saver = Some(saving),
            Err(e) => warn!(self.logger, "producer state snapshot skipped"; "error" => %e),
        }
    }

    /// The producer state at the log end, after expiring idle producers and pruning the
    /// transaction index (`None` when there is nothing to describe it by: no log end yet).
    fn capture_snapshot(&mut self) -> Option<PendingSnapshot> {
        let position = self.log.end_position();
        let txns = {
            let mut txns = self.txns.lock();
            txns.prune(|v| self.log.vchannel_state(v).map(|s| s.log_start_offset));
            let expired = self
                .producers
                .expire(now_ms(), self.producer_expiration_ms, |v, p| {
                    txns.is_open(v, p)
                });
            if expired > 0 {
                slog::info!(self.logger, "idle producers' sequence state expired"; "producers" => expired);
            }
            txns.export()
        };
        Some(PendingSnapshot {
            log: self.log.clone(),
            position,
            producers: self.producers.export(),
            txns,
        })
    }

    /// Runs one group through the interceptors, writes it, syncs once if needed, answers.
    fn commit(&mut self, group: &mut Vec<AppendRequest>) {
        let now_ms = now_ms();
        self.producers.set_clock(now_ms);
        let mut prepared: Vec<(usize, Result<Prepared, AppendError>)> =
            Vec::with_capacity(group.len());
        for (i, request) in group.iter().enumerate() {
            let result = self.intercept(request, now_ms);
            prepared.push((i, result));
        }
        let term = self.term;
        let mut entries: Vec<EntryRef<'_>> = Vec::new();
        for (i, result) in &prepared {
            if let Ok(Prepared::Batches(batches)) = result {
                let vchannel = group[*i].vchannel;
                entries.extend(batches.iter().map(|b| b.entry(vchannel, term)));
            }
        }
        let bytes: usize = entries.iter().map(|e| e.prefix.len() + e.rest.len()).sum();
        let started = std::time::Instant::now();
        let written = if entries.is_empty() {
            Ok(None)
        } else {
            self.log.append(&entries).map(Some)
        };
        self.metrics
            .append_latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics.group_commit_bytes.observe(bytes as f64);
        drop(entries);
        match &written {
            Ok(_) => {
                self.producers.commit();
                self.txns.lock().commit();
            }
            Err(_) => {
                self.producers.rollback();
                self.txns.lock().rollback();
            }
        }
        let outcome = written.and_then(|outcome| {
            let needs_sync = group.iter().any(|r| r.acks == Acks::Durable);
            match (outcome, self.policy) {
                (None, _) | (_, FsyncPolicy::Never) => Ok(()),
                _ if !needs_sync => Ok(()),
                // One fsync covers every batch of the group, acks=all or not.
                (Some(o), policy) => {
                    let started = std::time::Instant::now();
                    let synced = match policy {
                        FsyncPolicy::Interval => self.log.wait_durable(o.end).map(|_| ()),
                        _ => self.log.sync().map(|_| ()),
                    };
                    self.metrics
                        .fsync_latency
                        .observe(started.elapsed().as_secs_f64());
                    synced
                }
            }
        });
        if let Err(e) = &outcome {
            // The cached offsets may be ahead of what reached the log: reload them.
            error!(self.logger, "append failed; partitions answered with an error"; "error" => %e);
            self.next_offsets.clear();
        }
        self.publish.send_modify(|n| *n += 1);
        for ((_, result), request) in prepared.into_iter().zip(group.drain(..)) {
            let reply = match (&outcome, result) {
                (Err(e), _) => Err(AppendError::Storage(e.to_string())),
                (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(prepared)) => {
                    let log_start_offset = self
                        .log
                        .vchannel_state(request.vchannel)
                        .map_or(0, |s| s.log_start_offset);
                    let base_offset = match prepared {
                        Prepared::Batches(batches) => batches.first().map_or(-1, |b| b.base_offset),
                        Prepared::Duplicate(original) => original.first_offset,
                    };
                    Ok(Appended {
                        base_offset,
                        log_append_time: if request.log_append_time { now_ms } else { -1 },
                        log_start_offset,
                    })
                }
            };
            let _ = request.reply.send(reply);
        }
    }

    /// Runs one partition's batches through the idempotence, sequence and transaction stages.
    fn intercept(&mut self, request: &AppendRequest, now_ms: i64) -> Result<Prepared, AppendError> {
        let producers = idempotence_headers(&request.batches, request.origin)?;
        if request.origin == Origin::Coordinator {
            for &(producer_id, epoch, _, _) in &producers {
                self.producers
                    .coordinator_batch(request.vchannel, producer_id, epoch)
                    .map_err(|e| AppendError::InvalidProducerEpoch(e.to_string()))?;
            }
        } else if let Some(&(producer_id, epoch, first_seq, last_seq)) = producers.first() {
            let checked = self
                .producers
                .check(request.vchannel, producer_id, epoch, first_seq, last_seq)
                .map_err(|e| match e {
                    SequenceError::InvalidEpoch { .. } => {
                        AppendError::InvalidProducerEpoch(e.to_string())
                    }
                    SequenceError::OutOfOrder { .. } => {
                        AppendError::OutOfOrderSequence(e.to_string())
                    }
                })?;
            // Kafka answers a request whose first batch is a duplicate with that batch's offsets.
            if let Check::Duplicate(original) = checked {
                return Ok(Prepared::Duplicate(original));
            }
        }
        let next = self.next_offset(request.vchannel);
        let batches = interceptor::prepare(request, next, self.term, now_ms)?;
        if let Some(last) = batches.last() {
            self.next_offsets
                .insert(request.vchannel, last.last_offset + 1);
        }
        // Plain batches (the common case) never take the lock the fetches read under.
        if batches
            .iter()
            .any(|b| b.flags.contains(EntryFlags::TRANSACTIONAL))
        {
            let mut txns = self.txns.lock();
            for (batch, &(producer_id, ..)) in batches.iter().zip(&producers) {
                match batch.marker {
                    Some(marker) => txns.marker(
                        request.vchannel,
                        producer_id,
                        marker == Marker::Commit,
                        batch.base_offset,
                    ),
                    None if batch.flags.contains(EntryFlags::TRANSACTIONAL) => {
                        txns.data(request.vchannel, producer_id, batch.base_offset)
                    }
                    None => {}
                }
            }
        }
        if request.origin == Origin::Coordinator {
            return Ok(Prepared::Batches(batches));
        }
        for (batch, &(producer_id, epoch, first_seq, last_seq)) in batches.iter().zip(&producers) {
            let sequence = BatchSequence {
                first_seq,
                last_seq,
                first_offset: batch.base_offset,
                last_offset: batch.last_offset,
            };
            self.producers
                .record(request.vchannel, producer_id, epoch, sequence);
        }
        Ok(Prepared::Batches(batches))
    }

    fn next_offset(&mut self, vchannel: VChannelId) -> i64 {
        *self.next_offsets.entry(vchannel).or_insert_with(|| {
            self.log
                .vchannel_state(vchannel)
                .map_or(0, |s| s.log_end_offset)
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
