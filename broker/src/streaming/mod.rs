//! The streaming node: the pchannels this broker owns, opened at the term the coordinator
//! assigned, each with its writer (append pipeline) and readers (fetch scanners).

pub mod assignment;
pub mod interceptor;
pub mod producer_snapshot;
pub mod wal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use log_store::{LogError, PChannel, PChannelOptions, SyncPolicy};
use parking_lot::RwLock;
use slog::{Logger, info, warn};

use crate::config::{Config, FsyncPolicy};
use crate::metrics::Metrics;
pub use wal::Wal;

/// The open pchannels of this node.
pub struct StreamingNode {
    root: PathBuf,
    options: PChannelOptions,
    fsync_policy: FsyncPolicy,
    producer_expiration: std::time::Duration,
    metrics: Arc<Metrics>,
    wals: RwLock<HashMap<u32, Arc<Wal>>>,
    log: Logger,
}

impl StreamingNode {
    /// A node keeping its pchannels under `<log.dirs>/pchannels/`.
    pub fn new(config: &Config, metrics: Arc<Metrics>, log: Logger) -> StreamingNode {
        // Under `always` the writer syncs each group that holds an acks=all produce itself, so
        // acks=1 answers do not wait for the disk; `interval` hands syncing to the log store's
        // flusher thread.
        let sync_policy = match config.fsync_policy {
            FsyncPolicy::Always => SyncPolicy::Never,
            FsyncPolicy::Interval => {
                SyncPolicy::IntervalMs(config.fsync_interval.as_millis().max(1) as u64)
            }
            FsyncPolicy::Never => SyncPolicy::Never,
        };
        StreamingNode {
            root: config.data_dir.join("pchannels"),
            options: PChannelOptions {
                segment_bytes: config.segment_bytes,
                sync_policy,
                writeback_bytes: config.writeback_bytes,
                ..PChannelOptions::default()
            },
            fsync_policy: config.fsync_policy,
            producer_expiration: config.producer_id_expiration,
            metrics,
            wals: RwLock::new(HashMap::new()),
            log,
        }
    }

    /// The pchannel if this node serves it.
    pub fn wal(&self, pchannel: u32) -> Option<Arc<Wal>> {
        self.wals.read().get(&pchannel).cloned()
    }

    /// Every pchannel this node serves.
    pub fn wals(&self) -> Vec<Arc<Wal>> {
        self.wals.read().values().cloned().collect()
    }

    /// Opens (recovering it) or re-terms a pchannel assigned to this node at `term`.
    /// Blocking: recovery reads files.
    pub fn open(&self, pchannel: u32, term: u64) -> Result<Arc<Wal>, LogError> {
        if let Some(existing) = self.wal(pchannel) {
            if existing.term == term {
                return Ok(existing);
            }
            // A new term for a pchannel we already serve: reopen so every batch written from
            // now on carries the new leader epoch.
            self.close(pchannel);
        }
        let dir = self.root.join(format!("pchannel-{pchannel:04}"));
        let (log, report) = PChannel::open(&dir, self.options.clone())?;
        let logger = self.log.new(slog::o!("pchannel" => pchannel));
        for cut in &report.cuts {
            warn!(logger, "recovery cut a torn or corrupt tail"; "cut" => ?cut);
        }
        for (position, reason) in &report.rebuilt_indexes {
            warn!(logger, "recovery rebuilt a segment index"; "segment" => position.0, "reason" => reason);
        }
        if let Some(reason) = &report.checkpoint_error {
            warn!(logger, "recovery ignored the checkpoint"; "reason" => reason);
        }
        info!(logger, "pchannel opened"; "term" => term, "dir" => dir.display().to_string(),
            "entries" => report.entries, "scanned_bytes" => report.scanned_bytes);
        let snapshot = producer_snapshot::load(&dir).unwrap_or_else(|e| {
            warn!(logger, "producer state snapshot unusable; replaying the whole pchannel"; "error" => %e);
            None
        });
        let (state, replayed) = producer_snapshot::rebuild(&log, snapshot)?;
        info!(logger, "producer state rebuilt"; "producers" => state.producers.len(), "replayed_entries" => replayed);
        let metrics = wal::WalMetrics::new(&self.metrics, pchannel);
        let wal = Wal::start(
            pchannel,
            term,
            Arc::new(log),
            wal::WriterOptions {
                fsync_policy: self.fsync_policy,
                producer_expiration: self.producer_expiration,
            },
            state,
            metrics,
            logger,
        );
        self.wals.write().insert(pchannel, wal.clone());
        Ok(wal)
    }

    /// Stops serving a pchannel: drains its writer, syncs and checkpoints it.
    pub fn close(&self, pchannel: u32) {
        let wal = self.wals.write().remove(&pchannel);
        if let Some(wal) = wal
            && let Err(e) = wal.close()
        {
            warn!(self.log, "closing pchannel failed"; "pchannel" => pchannel, "error" => %e);
        }
    }

    /// Closes every pchannel (shutdown).
    pub fn close_all(&self) {
        let ids: Vec<u32> = self.wals.read().keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }
}

/// How often retention runs over the open pchannels.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Enforces per-vchannel retention on every open pchannel, periodically, until shutdown.
pub async fn retention_loop(
    node: Arc<StreamingNode>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    log: Logger,
) {
    let mut ticker = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        for wal in node.wals() {
            let log = log.clone();
            let now = wal::now_ms();
            let result = tokio::task::spawn_blocking(move || wal.log.enforce_retention(now)).await;
            match result {
                Ok(Ok(report)) => slog::debug!(log, "retention pass"; "report" => ?report),
                Ok(Err(e)) => warn!(log, "retention failed"; "error" => %e),
                Err(e) => warn!(log, "retention task failed"; "error" => %e),
            }
        }
    }
}
