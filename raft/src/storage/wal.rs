//! The Raft log on disk: append-only segment files of CRC'd records, one Raft entry each.
//!
//! Recovery replays the segments in order; an entry whose index is not past the current end
//! replaces the tail from that index on (a follower's conflicting suffix, Raft §5.3). Only the
//! last record of the last segment may be torn (kill -9 during a write); anything else that
//! fails its checks is reported as [`Error::Corrupt`] naming the file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::Entry;

use crate::error::{Error, Result};
use crate::storage::sync_dir;

/// Magic bytes opening every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"SLRFTWAL";
/// Format version of segment files.
pub const SEGMENT_VERSION: u32 = 1;
/// Size of the segment header.
pub const HEADER_LEN: usize = 32;
/// Size of a record header: payload length and CRC-32.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest record accepted when reading.
pub const MAX_RECORD: usize = 64 << 20;
/// A segment is sealed once it grows past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;

/// A segment file and the highest entry index ever written to it.
#[derive(Debug)]
pub struct Segment {
    /// Path of the file.
    pub path: PathBuf,
    /// Sequence number within the generation.
    pub seq: u64,
    /// Highest entry index written to this segment (0 if none).
    pub max_index: u64,
}

/// The open log: sealed segments plus the active one.
pub struct Wal {
    dir: PathBuf,
    generation: u64,
    segments: Vec<Segment>,
    active: File,
    active_len: u64,
    /// fsync every append (off only in simulations, where a crash never loses the page cache).
    pub sync: bool,
}

/// The name of segment `seq` of `generation`.
pub fn segment_name(generation: u64, seq: u64) -> String {
    format!("wal-{generation:016x}-{seq:016x}.log")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    let (g, s) = rest.split_once('-')?;
    Some((
        u64::from_str_radix(g, 16).ok()?,
        u64::from_str_radix(s, 16).ok()?,
    ))
}

/// Lists `(generation, seq, path)` of the segment files in `dir`, sorted.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        if let Some((g, s)) = ent.file_name().to_str().and_then(parse_name) {
            out.push((g, s, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn header(generation: u64, seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    h[20..28].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn create_segment(dir: &Path, generation: u64, seq: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_name(generation, seq));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(&header(generation, seq))
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    Ok((f, path))
}

/// Encodes one entry as a record: `len u32 LE | crc32(len ‖ payload) u32 LE | payload`.
pub fn encode_record(entry: &Entry, out: &mut Vec<u8>) {
    let payload = entry.write_to_bytes().expect("raft entries always encode");
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&payload);
}

/// What recovery found in the segments.
pub struct Recovered {
    /// The log after replay: contiguous entries starting right after the snapshot.
    pub entries: Vec<Entry>,
    /// The open log.
    pub wal: Wal,
}

impl Wal {
    /// Opens the log of `generation` in `dir`, replaying entries after `snapshot_index`.
    /// Segments of older generations (left by a snapshot install) are deleted.
    pub fn open(
        dir: &Path,
        generation: u64,
        snapshot_index: u64,
        logger: &slog::Logger,
    ) -> Result<Recovered> {
        let mut files = Vec::new();
        for (g, s, path) in list_segments(dir)? {
            if g < generation {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            } else if g > generation {
                return Err(Error::corrupt(
                    &path,
                    format!("segment of generation {g} is newer than the snapshot's {generation}"),
                ));
            } else {
                files.push((s, path));
            }
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut segments = Vec::new();
        let count = files.len();
        for (i, (seq, path)) in files.into_iter().enumerate() {
            let last = i + 1 == count;
            let data = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            if data.len() < HEADER_LEN && last {
                // Torn creation: the header never reached the disk.
                slog::warn!(logger, "removing torn raft segment"; "path" => %path.display());
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            check_header(&path, &data, generation, seq)?;
            let (max_index, good_len) = replay(&path, &data, last, snapshot_index, &mut entries)?;
            if good_len < data.len() {
                slog::warn!(logger, "cutting torn record at the end of the raft log";
                    "path" => %path.display(), "offset" => good_len, "len" => data.len());
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                f.set_len(good_len as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
            }
            segments.push(Segment {
                path,
                seq,
                max_index,
            });
        }
        let (active, active_len) = match segments.last() {
            Some(seg) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(|e| Error::io(&seg.path, e))?;
                let len = f.metadata().map_err(|e| Error::io(&seg.path, e))?.len();
                (f, len)
            }
            None => {
                let (f, path) = create_segment(dir, generation, 0)?;
                segments.push(Segment {
                    path,
                    seq: 0,
                    max_index: 0,
                });
                (f, HEADER_LEN as u64)
            }
        };
        Ok(Recovered {
            entries,
            wal: Wal {
                dir: dir.to_owned(),
                generation,
                segments,
                active,
                active_len,
                sync: true,
            },
        })
    }

    /// Appends entries (possibly replacing a tail) and fsyncs.
    pub fn append(&mut self, entries: &[Entry], buf: &mut Vec<u8>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if self.active_len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        buf.clear();
        for e in entries {
            encode_record(e, buf);
        }
        let seg = self
            .segments
            .last_mut()
            .expect("there is always an active segment");
        self.active
            .write_all(buf)
            .map_err(|e| Error::io(&seg.path, e))?;
        if self.sync {
            self.active
                .sync_data()
                .map_err(|e| Error::io(&seg.path, e))?;
        }
        self.active_len += buf.len() as u64;
        seg.max_index = seg.max_index.max(entries.last().map_or(0, |e| e.index));
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let (f, path) = create_segment(&self.dir, self.generation, seq)?;
        self.active = f;
        self.active_len = HEADER_LEN as u64;
        self.segments.push(Segment {
            path,
            seq,
            max_index: 0,
        });
        Ok(())
    }

    /// Deletes sealed segments whose entries are all at or below `index`.
    pub fn compact(&mut self, index: u64) -> Result<()> {
        while self.segments.len() > 1 && self.segments[0].max_index <= index {
            let seg = self.segments.remove(0);
            fs::remove_file(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        }
        Ok(())
    }

    /// Starts a new generation after a snapshot install: all older segments are deleted.
    pub fn reset(&mut self, generation: u64) -> Result<()> {
        let (f, path) = create_segment(&self.dir, generation, 0)?;
        for seg in self.segments.drain(..) {
            fs::remove_file(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        }
        sync_dir(&self.dir)?;
        self.generation = generation;
        self.active = f;
        self.active_len = HEADER_LEN as u64;
        self.segments.push(Segment {
            path,
            seq: 0,
            max_index: 0,
        });
        Ok(())
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

fn check_header(path: &Path, data: &[u8], generation: u64, seq: u64) -> Result<()> {
    if data.len() < HEADER_LEN {
        return Err(Error::corrupt(path, "segment shorter than its header"));
    }
    let want = header(generation, seq);
    if data[0..8] != want[0..8] {
        return Err(Error::corrupt(path, "bad segment magic"));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_VERSION {
        return Err(Error::corrupt(
            path,
            format!("unsupported segment version {version}"),
        ));
    }
    if data[..HEADER_LEN] != want {
        return Err(Error::corrupt(
            path,
            "segment header does not match its name or CRC",
        ));
    }
    Ok(())
}

/// Replays one segment into `entries`. Returns the highest index seen and the length of the
/// valid prefix (shorter than the file only for a torn tail of the last segment).
fn replay(
    path: &Path,
    data: &[u8],
    last_segment: bool,
    snapshot_index: u64,
    entries: &mut Vec<Entry>,
) -> Result<(u64, usize)> {
    let mut pos = HEADER_LEN;
    let mut max_index = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let torn = |reason: &str| -> Result<(u64, usize)> {
            if last_segment {
                Ok((max_index, pos))
            } else {
                Err(Error::corrupt(
                    path,
                    format!("{reason} at offset {pos} of a sealed segment"),
                ))
            }
        };
        if rest.len() < RECORD_HEADER_LEN {
            return torn("truncated record header");
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(Error::corrupt(
                path,
                format!("record length {len} at offset {pos}"),
            ));
        }
        let end = RECORD_HEADER_LEN + len;
        if rest.len() < end {
            return torn("truncated record");
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&rest[0..4]);
        h.update(&rest[RECORD_HEADER_LEN..end]);
        if h.finalize() != crc {
            // A complete record with a bad CRC is only a torn write if nothing follows it.
            if end == rest.len() {
                return torn("bad CRC");
            }
            return Err(Error::corrupt(
                path,
                format!("bad record CRC at offset {pos}"),
            ));
        }
        let entry = Entry::parse_from_bytes(&rest[RECORD_HEADER_LEN..end])
            .map_err(|e| Error::corrupt(path, format!("undecodable entry at offset {pos}: {e}")))?;
        max_index = max_index.max(entry.index);
        push_entry(path, pos, snapshot_index, entries, entry)?;
        pos += end;
    }
    Ok((max_index, pos))
}

fn push_entry(
    path: &Path,
    pos: usize,
    snapshot_index: u64,
    entries: &mut Vec<Entry>,
    entry: Entry,
) -> Result<()> {
    if entry.index <= snapshot_index {
        return Ok(());
    }
    let next = entries.last().map_or(snapshot_index + 1, |e| e.index + 1);
    if entry.index > next {
        return Err(Error::corrupt(
            path,
            format!(
                "gap in the raft log at offset {pos}: entry {} after {}",
                entry.index,
                next - 1
            ),
        ));
    }
    let keep = (entry.index - snapshot_index - 1) as usize;
    entries.truncate(keep);
    entries.push(entry);
    Ok(())
}
