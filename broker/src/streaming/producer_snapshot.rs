//! Durable producer state: idempotent producers' sequences and the transaction stage's open and
//! aborted transactions, in a snapshot file per pchannel written by the writer at a durable log
//! position, and the replay of the entries after it when the pchannel opens — so a batch
//! retried across a broker restart is still recognised as a duplicate, and `read_committed`
//! readers still skip aborted transactions.
//!
//! File `producer-state.json` in the pchannel's directory, replaced atomically (write to a
//! temporary file, fsync, rename, fsync the directory):
//!
//! ```text
//! { "format": 2, "position": <log position>,
//!   "crc": <CRC-32 of the producers array text followed by the txns array text>,
//!   "producers": [ { "vchannel", "producer_id", "epoch", "batches": [ {first_seq, last_seq,
//!   first_offset, last_offset}, ... ] }, ... ],
//!   "txns": [ { "vchannel", "txns": { "open": { "<producer id>": <first offset>, ... },
//!   "aborted": [ {producer_id, first_offset, last_offset}, ... ] } }, ... ] }
//! ```
//!
//! A format-1 file (before transactions) is not used: the pchannel is replayed from its start.
//!
//! ```text
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use log_store::{PChannel, Position, VChannelId};
use serde::{Deserialize, Serialize};
use sluice_protocol::RecordBatchHeader;

use super::interceptor::idempotence::{BatchSequence, ProducerStates, last_sequence};
use super::interceptor::transaction::{StoredTxns, TxnIndex};
use sluice_protocol::control::{Marker, parse_marker};

/// What the writer of a pchannel rebuilds on open.
#[derive(Debug, Default)]
pub struct ProducerState {
    /// Idempotent producers' sequences.
    pub producers: ProducerStates,
    /// Open and aborted transactions.
    pub txns: TxnIndex,
}

/// The snapshot's file name inside the pchannel directory.
pub const FILE_NAME: &str = "producer-state.json";
const FORMAT: u32 = 2;
/// Payload bytes replayed per scan call.
const SCAN_BYTES: usize = 8 << 20;

/// One producer on one vchannel, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProducer {
    /// The vchannel.
    pub vchannel: u64,
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// Its last batches, oldest first.
    pub batches: Vec<BatchSequence>,
    /// When it last wrote (ms since the epoch).
    #[serde(default)]
    pub last_append_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: u32,
    position: u64,
    crc: u32,
    producers: Vec<StoredProducer>,
    #[serde(default)]
    txns: Vec<StoredTxns>,
}

/// Why a snapshot was not used; the caller replays from the start of the log instead.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not parse, has another format, or its checksum disagrees.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn checksum(producers: &[StoredProducer], txns: &[StoredTxns]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(
        serde_json::to_string(producers)
            .unwrap_or_default()
            .as_bytes(),
    );
    hasher.update(serde_json::to_string(txns).unwrap_or_default().as_bytes());
    hasher.finalize()
}

/// Writes the state at `position` (which the caller made durable) into `dir`: `producers`
/// and `txns` as `ProducerStates::export` and `TxnIndex::export` give them.
pub fn save(
    dir: &Path,
    position: Position,
    producers: Vec<StoredProducer>,
    txns: Vec<StoredTxns>,
) -> Result<(), SnapshotError> {
    let file = SnapshotFile {
        format: FORMAT,
        position: position.0,
        crc: checksum(&producers, &txns),
        producers,
        txns,
    };
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_vec(&file).expect("snapshot serializes");
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Loads the snapshot in `dir`: `Ok(None)` when there is none.
pub fn load(dir: &Path) -> Result<Option<(Position, ProducerState)>, SnapshotError> {
    let path = dir.join(FILE_NAME);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SnapshotError::Io { path, source }),
    };
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.clone(),
        reason,
    };
    let file: SnapshotFile = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("format {} is not {FORMAT}", file.format)));
    }
    if checksum(&file.producers, &file.txns) != file.crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(Some((
        Position(file.position),
        ProducerState {
            producers: ProducerStates::import(file.producers),
            txns: TxnIndex::import(file.txns),
        },
    )))
}

/// The producer state of a freshly opened pchannel: the snapshot (if it is usable) plus the
/// replay of every entry after it. Returns the state and how many entries were replayed.
pub fn rebuild(
    log: &PChannel,
    snapshot: Option<(Position, ProducerState)>,
) -> Result<(ProducerState, u64), log_store::LogError> {
    // A snapshot past the end of the log describes entries that were lost: ignore it.
    let (mut position, mut state) = match snapshot {
        Some((p, s)) if p <= log.end_position() => (p, s),
        _ => (Position(0), ProducerState::default()),
    };
    let mut replayed = 0;
    // Replayed producers count as active now: their expiry starts over.
    state.producers.set_clock(super::wal::now_ms());
    loop {
        let batch = log.scan(position, SCAN_BYTES)?;
        for scanned in &batch.entries {
            replay_entry(
                &mut state,
                scanned.vchannel,
                &scanned.entry.payload,
                scanned.entry.first_offset,
            );
            replayed += 1;
        }
        position = batch.next_position;
        if batch.at_end {
            return Ok((state, replayed));
        }
    }
}

/// Applies one stored batch to the state, as the writer did when it appended it. Batches a
/// coordinator wrote (markers, transactional offsets) carry no sequence.
fn replay_entry(
    state: &mut ProducerState,
    vchannel: VChannelId,
    payload: &[u8],
    first_offset: i64,
) {
    let Ok(h) = RecordBatchHeader::parse(payload) else {
        return;
    };
    if h.producer_id() < 0 {
        return;
    }
    if h.is_transactional() {
        match parse_marker(payload) {
            Ok(Some(marker)) => {
                let commit = marker == Marker::Commit;
                state
                    .txns
                    .marker(vchannel, h.producer_id(), commit, first_offset);
            }
            Ok(None) => state.txns.data(vchannel, h.producer_id(), first_offset),
            Err(_) => {}
        }
        state.txns.commit();
    }
    if h.is_control() || h.base_sequence() < 0 {
        let _ = state
            .producers
            .coordinator_batch(vchannel, h.producer_id(), h.producer_epoch());
        state.producers.commit();
        return;
    }
    let batch = BatchSequence {
        first_seq: h.base_sequence(),
        last_seq: last_sequence(h.base_sequence(), h.last_offset_delta()),
        first_offset,
        last_offset: first_offset + i64::from(h.last_offset_delta()),
    };
    state
        .producers
        .replay(vchannel, h.producer_id(), h.producer_epoch(), batch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut states = ProducerStates::default();
        let b = BatchSequence {
            first_seq: 0,
            last_seq: 4,
            first_offset: 10,
            last_offset: 14,
        };
        states.record(VChannelId(3), 77, 2, b);
        states.commit();
        let mut txns = TxnIndex::default();
        txns.data(VChannelId(3), 78, 20);
        txns.commit();
        save(dir.path(), Position(4096), states.export(), txns.export()).unwrap();
        let (position, loaded) = load(dir.path()).unwrap().unwrap();
        assert_eq!(position, Position(4096));
        assert_eq!(loaded.producers.export(), states.export());
        assert_eq!(loaded.txns.last_stable_offset(VChannelId(3), 30), 20);

        let path = dir.path().join(FILE_NAME);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"epoch\":2", "\"epoch\":3");
        fs::write(&path, text).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(SnapshotError::Corrupt { .. })
        ));
        fs::write(&path, b"{ not json").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(SnapshotError::Corrupt { .. })
        ));
        fs::remove_file(&path).unwrap();
        assert!(load(dir.path()).unwrap().is_none());
    }
}
