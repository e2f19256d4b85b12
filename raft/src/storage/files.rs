//! The two small Raft files beside the log: the hard state (two CRC'd slots overwritten in
//! turn, so a torn write leaves the other slot intact) and the snapshot (replaced atomically by
//! write, fsync, rename, fsync of the directory).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{HardState, Snapshot};

use crate::error::{Error, Result};
use crate::storage::sync_dir;

/// File name of the hard state.
pub const HARD_STATE_FILE: &str = "hardstate";
/// File name of the snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const HS_MAGIC: &[u8; 4] = b"SLHS";
const HS_VERSION: u32 = 1;
/// Size of one hard-state slot.
pub const HS_SLOT: usize = 64;
const SNAP_MAGIC: &[u8; 8] = b"SLRFTSNP";
const SNAP_VERSION: u32 = 1;
const SNAP_HEADER: usize = 32;
const MAX_SNAPSHOT: u64 = 1 << 30;

/// The hard-state file, open for in-place slot writes.
pub struct HardStateFile {
    path: PathBuf,
    file: File,
    seq: u64,
    /// The slot holding the latest durable (fsynced) write; every write goes to the other.
    durable_slot: u64,
    /// fsync durable saves (off only in simulations).
    pub sync: bool,
}

fn encode_slot(seq: u64, hs: &HardState) -> [u8; HS_SLOT] {
    let mut b = [0u8; HS_SLOT];
    b[0..4].copy_from_slice(HS_MAGIC);
    b[4..8].copy_from_slice(&HS_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..24].copy_from_slice(&hs.term.to_le_bytes());
    b[24..32].copy_from_slice(&hs.vote.to_le_bytes());
    b[32..40].copy_from_slice(&hs.commit.to_le_bytes());
    let crc = crc32fast::hash(&b[0..40]);
    b[40..44].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_slot(b: &[u8]) -> Option<(u64, HardState)> {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(b[40..44].try_into().expect("4 bytes"));
    if &b[0..4] != HS_MAGIC || crc32fast::hash(&b[0..40]) != crc {
        return None;
    }
    if u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) != HS_VERSION {
        return None;
    }
    let hs = HardState {
        term: u64_at(16),
        vote: u64_at(24),
        commit: u64_at(32),
        ..Default::default()
    };
    Some((u64_at(8), hs))
}

impl HardStateFile {
    /// Creates the file holding `hs` in slot 0.
    pub fn create(dir: &Path, hs: &HardState) -> Result<Self> {
        let path = dir.join(HARD_STATE_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut both = [0u8; 2 * HS_SLOT];
        both[..HS_SLOT].copy_from_slice(&encode_slot(0, hs));
        file.write_all(&both)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        Ok(HardStateFile {
            path,
            file,
            seq: 0,
            durable_slot: 0,
            sync: true,
        })
    }

    /// Opens the file and returns the newest valid slot; no valid slot is corruption.
    pub fn open(dir: &Path) -> Result<(Self, HardState)> {
        let path = dir.join(HARD_STATE_FILE);
        let data = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if data.len() != 2 * HS_SLOT {
            return Err(Error::corrupt(
                &path,
                format!(
                    "hard state file is {} bytes, expected {}",
                    data.len(),
                    2 * HS_SLOT
                ),
            ));
        }
        let (slot, (seq, hs)) = [decode_slot(&data[..HS_SLOT]), decode_slot(&data[HS_SLOT..])]
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u64, s?)))
            .max_by_key(|(_, (seq, _))| *seq)
            .ok_or_else(|| Error::corrupt(&path, "no valid hard state slot"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // What was read may still sit only in the page cache: make it the durable slot.
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok((
            HardStateFile {
                path,
                file,
                seq,
                durable_slot: slot,
                sync: true,
            },
            hs,
        ))
    }

    /// Writes `hs` into the slot that does not hold the latest durable state. A `durable` save
    /// is fsynced and becomes that state; another save (a commit index only) may be lost or torn
    /// in a crash, leaving the durable slot as the newest valid one.
    pub fn save(&mut self, hs: &HardState, durable: bool) -> Result<()> {
        let seq = self.seq + 1;
        let slot = 1 - self.durable_slot;
        self.file
            .write_all_at(&encode_slot(seq, hs), slot * HS_SLOT as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        if durable {
            if self.sync {
                self.file
                    .sync_data()
                    .map_err(|e| Error::io(&self.path, e))?;
            }
            self.durable_slot = slot;
        }
        self.seq = seq;
        Ok(())
    }
}

/// Writes the snapshot file atomically: `magic | version u32 | generation u64 | len u32 |
/// crc32 u32 | reserved` then the protobuf-encoded `Snapshot`.
pub fn write_snapshot(dir: &Path, generation: u64, snap: &Snapshot) -> Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let payload = snap
        .write_to_bytes()
        .map_err(|e| Error::Codec(e.to_string()))?;
    let mut buf = Vec::with_capacity(SNAP_HEADER + payload.len());
    buf.extend_from_slice(SNAP_MAGIC);
    buf.extend_from_slice(&SNAP_VERSION.to_le_bytes());
    buf.extend_from_slice(&generation.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&buf)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)
}

/// Reads the snapshot file: `(generation, snapshot)`, or `None` if it does not exist.
pub fn read_snapshot(dir: &Path) -> Result<Option<(u64, Snapshot)>> {
    let path = dir.join(SNAPSHOT_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    if data.len() < SNAP_HEADER || &data[0..8] != SNAP_MAGIC {
        return Err(Error::corrupt(&path, "bad snapshot header"));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != SNAP_VERSION {
        return Err(Error::corrupt(
            &path,
            format!("unsupported snapshot version {version}"),
        ));
    }
    let generation = u64::from_le_bytes(data[12..20].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(data[20..28].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(data[28..32].try_into().expect("4 bytes"));
    if len > MAX_SNAPSHOT || data.len() as u64 != SNAP_HEADER as u64 + len {
        return Err(Error::corrupt(
            &path,
            format!(
                "snapshot says {len} bytes, file holds {}",
                data.len() - SNAP_HEADER
            ),
        ));
    }
    let payload = &data[SNAP_HEADER..];
    if crc32fast::hash(payload) != crc {
        return Err(Error::corrupt(&path, "snapshot CRC mismatch"));
    }
    let snap = Snapshot::parse_from_bytes(payload)
        .map_err(|e| Error::corrupt(&path, format!("undecodable snapshot: {e}")))?;
    Ok(Some((generation, snap)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    #[test]
    fn a_torn_commit_write_never_hides_a_durable_term() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = HardStateFile::create(dir.path(), &hs(0, 0, 0)).unwrap();
        f.save(&hs(2, 1, 5), true).unwrap();
        f.save(&hs(2, 1, 9), false).unwrap();
        f.save(&hs(2, 1, 10), false).unwrap();
        let (_, got) = HardStateFile::open(dir.path()).unwrap();
        assert_eq!(got, hs(2, 1, 10));
        // Tear the non-durable slot: the durable term and vote survive.
        let path = dir.path().join(HARD_STATE_FILE);
        let mut data = fs::read(&path).unwrap();
        let torn = (1 - f.durable_slot) as usize * HS_SLOT;
        data[torn + 30] ^= 0xFF;
        fs::write(&path, &data).unwrap();
        let (mut f, got) = HardStateFile::open(dir.path()).unwrap();
        assert_eq!(got, hs(2, 1, 5));
        // The next durable write goes over the torn slot, not over the good one.
        f.save(&hs(3, 0, 5), true).unwrap();
        let (_, got) = HardStateFile::open(dir.path()).unwrap();
        assert_eq!(got, hs(3, 0, 5));
    }
}
