//! Durable Raft storage meeting raft-rs's [`Storage`] contract: the log ([`wal`]), the hard
//! state and the snapshot ([`files`]), with the un-compacted entries cached in memory.

pub mod files;
pub mod wal;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::error::{Error, Result};
use files::HardStateFile;
use wal::Wal;

/// Index of the initial snapshot of a new group (as in TiKV).
pub const INIT_INDEX: u64 = 5;
/// Term of the initial snapshot of a new group.
pub const INIT_TERM: u64 = 5;

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Raft storage in one directory.
pub struct DiskStorage {
    dir: PathBuf,
    wal: Wal,
    hs_file: HardStateFile,
    hs: HardState,
    persisted_hs: HardState,
    generation: u64,
    snapshot: Snapshot,
    /// Entries after `base_index`, contiguous.
    entries: Vec<Entry>,
    base_index: u64,
    base_term: u64,
    buf: Vec<u8>,
}

impl DiskStorage {
    /// Opens the storage in `dir`. A directory without Raft files is initialized with
    /// `initial_conf` and a snapshot at index 0 holding `initial_data`; returns whether it was.
    /// `sync = false` skips the fsync of appends and hard-state writes: for simulations only.
    pub fn open(
        dir: &Path,
        initial_conf: &ConfState,
        initial_data: &[u8],
        sync: bool,
        logger: &slog::Logger,
    ) -> Result<(Self, bool)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (generation, snapshot, fresh) = match files::read_snapshot(dir)? {
            Some((g, s)) => (g, s, false),
            None => {
                let leftovers = !wal::list_segments(dir)?.is_empty()
                    || dir.join(files::HARD_STATE_FILE).exists();
                if leftovers {
                    return Err(Error::corrupt(
                        dir.join(files::SNAPSHOT_FILE),
                        "snapshot file missing while raft log files exist",
                    ));
                }
                let mut s = Snapshot::default();
                if !initial_conf.voters.is_empty() {
                    // A new group's log starts after INIT_INDEX, so a node that joins later
                    // (with empty storage) can only catch up through a snapshot carrying the
                    // membership: replaying the log from 1 would miss the initial voters.
                    s.mut_metadata().index = INIT_INDEX;
                    s.mut_metadata().term = INIT_TERM;
                }
                s.mut_metadata().set_conf_state(initial_conf.clone());
                s.data = initial_data.to_vec().into();
                HardStateFile::create(dir, &HardState::default())?;
                files::write_snapshot(dir, 0, &s)?;
                (0, s, true)
            }
        };
        let meta = snapshot.get_metadata().clone();
        let hs_path = dir.join(files::HARD_STATE_FILE);
        let (mut hs_file, mut hs) = if !hs_path.exists() && meta.index == 0 {
            (
                HardStateFile::create(dir, &HardState::default())?,
                HardState::default(),
            )
        } else {
            HardStateFile::open(dir)?
        };
        // The snapshot is written before the hard state when one is installed.
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        hs_file.sync = sync;
        let mut rec = Wal::open(dir, generation, meta.index, logger)?;
        rec.wal.sync = sync;
        let last = rec.entries.last().map_or(meta.index, |e| e.index);
        if hs.commit > last {
            let path = rec
                .wal
                .segments()
                .last()
                .map_or(dir.to_owned(), |s| s.path.clone());
            return Err(Error::corrupt(
                path,
                format!(
                    "raft log ends at index {last} but the commit index is {}: log truncated or missing",
                    hs.commit
                ),
            ));
        }
        Ok((
            DiskStorage {
                dir: dir.to_owned(),
                wal: rec.wal,
                hs_file,
                persisted_hs: hs.clone(),
                hs,
                generation,
                base_index: meta.index,
                base_term: meta.term,
                snapshot,
                entries: rec.entries,
                buf: Vec::new(),
            },
            fresh,
        ))
    }

    /// The directory of this storage.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest snapshot (its data is the state machine at its index).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Appends entries from a `Ready`, replacing any conflicting tail, durably.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.base_index,
            "raft-rs appended entry {} at or below the compacted index {}",
            first.index,
            self.base_index
        );
        let keep = (first.index - self.base_index - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "gap before appended entry {}",
            first.index
        );
        self.wal.append(entries, &mut self.buf)?;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Persists a new hard state (fsync) if it differs from the stored one.
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        self.hs = hs.clone();
        self.flush_hard_state()
    }

    /// Persists a new commit index (after the entries it covers are durable), so that a log
    /// truncated below it is detected on restart.
    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        self.hs.commit = commit;
        self.flush_hard_state()
    }

    /// Writes the hard state if it changed. Term and vote must be durable before any message
    /// that depends on them is sent (Raft §5.1, Figure 2): such writes are fsynced. A commit
    /// index alone is not (Raft keeps it volatile): it is written without fsync, which still
    /// survives kill -9 in the page cache and lets a truncated log be detected on restart.
    fn flush_hard_state(&mut self) -> Result<()> {
        if self.hs != self.persisted_hs {
            let durable =
                self.hs.term != self.persisted_hs.term || self.hs.vote != self.persisted_hs.vote;
            self.hs_file.save(&self.hs, durable)?;
            self.persisted_hs = self.hs.clone();
        }
        Ok(())
    }

    /// Installs a snapshot received from the leader: the log restarts after it.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        if meta.index <= self.snapshot.get_metadata().index {
            return Ok(());
        }
        let generation = self.generation + 1;
        files::write_snapshot(&self.dir, generation, snap)?;
        self.wal.reset(generation)?;
        self.generation = generation;
        self.entries.clear();
        self.base_index = meta.index;
        self.base_term = meta.term;
        self.snapshot = snap.clone();
        self.hs.term = self.hs.term.max(meta.term);
        self.hs.commit = self.hs.commit.max(meta.index);
        self.flush_hard_state()
    }

    /// Saves a snapshot of the state machine at `index` (≤ applied) and compacts the log,
    /// keeping up to `keep` entries before `index` for slightly lagging followers.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf: &ConfState,
        data: Vec<u8>,
        keep: u64,
    ) -> Result<()> {
        if index <= self.snapshot.get_metadata().index {
            return Ok(());
        }
        let term = self.term(index)?;
        let mut snap = Snapshot::default();
        {
            let meta = snap.mut_metadata();
            meta.index = index;
            meta.term = term;
            meta.set_conf_state(conf.clone());
        }
        snap.data = data.into();
        files::write_snapshot(&self.dir, self.generation, &snap)?;
        self.snapshot = snap;
        let compact_to = index.saturating_sub(keep);
        if compact_to > self.base_index {
            self.base_term = self.term(compact_to)?;
            self.entries
                .drain(..(compact_to - self.base_index) as usize);
            self.base_index = compact_to;
        }
        self.wal.compact(index.min(compact_to))
    }

    /// Number of log segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.wal.segments().len()
    }

    fn last(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }
}

impl Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        // The conf state at the snapshot: later membership changes are re-applied from the log
        // together with the state machine, since `Config.applied` is the snapshot index.
        Ok(RaftState::new(
            self.hs.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.base_index - 1) as usize;
        let hi = (high - self.base_index - 1) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.base_index {
            return Ok(self.base_term);
        }
        let snap = self.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.base_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.base_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
