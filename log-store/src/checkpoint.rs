//! The checkpoint file: every vchannel's state plus the active segment's index up to a durable
//! position, written atomically (temp file, fsync, rename, fsync of the directory).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::entry::{le_u32, le_u64};
use crate::error::LogError;
use crate::index::{IdxRecord, RECORD_LEN};
use crate::types::{Retention, VChannelId};

/// Name of the checkpoint file in a pchannel directory.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
const MAGIC: &[u8; 8] = b"SLUICCKP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const VCHANNEL_LEN: usize = 64;
const DELETED: u32 = 1;

/// Persisted state of one vchannel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VChannelRecord {
    pub id: VChannelId,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub retention: Retention,
    pub deleted: bool,
}

/// The content of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Every entry below this position is durable and reflected here or in an index file.
    pub position: u64,
    /// Base of the segment that was active.
    pub active_base: u64,
    /// Sequence number of the next entry.
    pub next_seq: u64,
    /// Truncation may not cut below this position (compaction copies live above it).
    pub compaction_floor: u64,
    pub vchannels: Vec<VChannelRecord>,
    /// Index records of the active segment below `position`.
    pub records: Vec<IdxRecord>,
}

fn opt_i64(v: Option<i64>) -> i64 {
    v.unwrap_or(-1)
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN + self.vchannels.len() * VCHANNEL_LEN + self.records.len() * RECORD_LEN + 4,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [
            self.position,
            self.active_base,
            self.next_seq,
            self.compaction_floor,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.vchannels.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        for v in &self.vchannels {
            out.extend_from_slice(&v.id.0.to_le_bytes());
            out.extend_from_slice(&v.log_start_offset.to_le_bytes());
            out.extend_from_slice(&v.log_end_offset.to_le_bytes());
            out.extend_from_slice(&opt_i64(v.retention.ms).to_le_bytes());
            out.extend_from_slice(
                &opt_i64(v.retention.bytes.map(|b| b.min(i64::MAX as u64) as i64)).to_le_bytes(),
            );
            out.extend_from_slice(&(if v.deleted { DELETED } else { 0 }).to_le_bytes());
            out.extend_from_slice(&[0u8; 20]);
        }
        for r in &self.records {
            r.encode_into(&mut out);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Checkpoint, &'static str> {
        if b.len() < HEADER_LEN + 4 {
            return Err("checkpoint too short");
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != le_u32(crc) {
            return Err("checkpoint CRC mismatch");
        }
        if &body[0..8] != MAGIC || le_u32(&body[8..]) != VERSION {
            return Err("bad checkpoint magic or version");
        }
        let nv = le_u32(&body[48..]) as usize;
        let nr = le_u32(&body[52..]) as usize;
        if body.len() != HEADER_LEN + nv * VCHANNEL_LEN + nr * RECORD_LEN {
            return Err("checkpoint counts disagree with its length");
        }
        let vrecs = &body[HEADER_LEN..HEADER_LEN + nv * VCHANNEL_LEN];
        let vchannels = vrecs
            .chunks_exact(VCHANNEL_LEN)
            .map(|c| {
                let ms = le_u64(&c[24..]) as i64;
                let bytes = le_u64(&c[32..]) as i64;
                VChannelRecord {
                    id: VChannelId(le_u64(c)),
                    log_start_offset: le_u64(&c[8..]) as i64,
                    log_end_offset: le_u64(&c[16..]) as i64,
                    retention: Retention {
                        ms: (ms >= 0).then_some(ms),
                        bytes: (bytes >= 0).then_some(bytes as u64),
                    },
                    deleted: le_u32(&c[40..]) & DELETED != 0,
                }
            })
            .collect();
        let records = body[HEADER_LEN + nv * VCHANNEL_LEN..]
            .chunks_exact(RECORD_LEN)
            .map(IdxRecord::decode)
            .collect();
        Ok(Checkpoint {
            position: le_u64(&body[16..]),
            active_base: le_u64(&body[24..]),
            next_seq: le_u64(&body[32..]),
            compaction_floor: le_u64(&body[40..]),
            vchannels,
            records,
        })
    }

    /// Writes the checkpoint durably into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), LogError> {
        write_atomically(dir, &dir.join(CHECKPOINT_FILE), &self.encode())
    }

    /// Loads the checkpoint of `dir`: `Ok(None)` if there is none, `Err(reason)` if damaged.
    pub(crate) fn load(dir: &Path) -> Result<Option<Checkpoint>, String> {
        match fs::read(dir.join(CHECKPOINT_FILE)) {
            Ok(b) => Checkpoint::decode(&b).map(Some).map_err(str::to_string),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read checkpoint: {e}")),
        }
    }
}

/// Writes `bytes` to `path` via a temporary file, so readers see the old or the new content.
pub(crate) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    write_renamed(path, bytes)?;
    crate::segment::sync_dir(dir)
}

/// [`write_atomically`] without the directory fsync: the new name is durable only once the
/// caller (or a later operation) fsyncs the directory.
pub(crate) fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| LogError::io(&tmp, e))?;
    f.sync_all().map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint {
            position: 4096,
            active_base: 1024,
            next_seq: 77,
            compaction_floor: 0,
            vchannels: vec![VChannelRecord {
                id: VChannelId(9),
                log_start_offset: 3,
                log_end_offset: 40,
                retention: Retention {
                    ms: Some(1000),
                    bytes: None,
                },
                deleted: false,
            }],
            records: vec![IdxRecord {
                vchannel: 9,
                first_offset: 30,
                last_offset: 39,
                max_timestamp: 5,
                position: 1056,
                payload_len: 100,
                flags: 1,
                term: 2,
                seq: 76,
            }],
        };
        ck.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), Some(ck));
        let p = dir.path().join(CHECKPOINT_FILE);
        let mut b = fs::read(&p).unwrap();
        b[70] ^= 1;
        fs::write(&p, &b).unwrap();
        assert_eq!(
            Checkpoint::load(dir.path()),
            Err("checkpoint CRC mismatch".to_string())
        );
        fs::remove_file(&p).unwrap();
        assert_eq!(Checkpoint::load(dir.path()), Ok(None));
    }
}
