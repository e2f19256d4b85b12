//! Segment files: a 32-byte header then contiguous entries, preallocated and memory-mapped.
//!
//! A segment is named by its base position (`{base:020}.seg`); the byte at file offset `f` has
//! pchannel position `base + f`. The active segment is written with `pwritev` into the page
//! cache (not through the map, see [`Segment::write`]); readers get `Bytes` slices of the map,
//! which shows the same pages, only over ranges already published (see `pchannel.rs`), so no
//! reader ever sees bytes being written.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

use crate::entry::{le_u32, le_u64};
use crate::error::LogError;

/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
/// Magic at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SLUICSEG";
/// Segment format version.
pub(crate) const SEGMENT_VERSION: u32 = 1;
/// Segment header flag: the file is a recycled segment, so the bytes after its last entry may
/// be stale entries of the file's earlier life (see `recycle.rs`).
pub(crate) const FLAG_RECYCLED: u32 = 1;

/// Path of the segment file with base position `base`.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// Path of the sealed index file beside segment `base`.
pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// Parses the base position out of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn encode_header(base: u64, flags: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; returns why it is unusable.
pub(crate) fn check_header(h: &[u8], base: u64) -> Result<(), &'static str> {
    if h.len() < SEGMENT_HEADER_LEN as usize {
        return Err("segment shorter than its header");
    }
    if &h[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic");
    }
    if crc32fast::hash(&h[0..24]) != le_u32(&h[24..28]) {
        return Err("bad segment header CRC");
    }
    if le_u32(&h[8..12]) != SEGMENT_VERSION {
        return Err("unknown segment format version");
    }
    if le_u64(&h[16..24]) != base {
        return Err("segment header base disagrees with file name");
    }
    Ok(())
}

/// Flags of a header that passed [`check_header`].
pub(crate) fn header_flags(h: &[u8]) -> u32 {
    le_u32(&h[12..16])
}

/// Makes `file` at least `len` bytes long, with blocks allocated where the filesystem allows.
pub(crate) fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), LogError> {
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if rc != 0 {
        // Filesystems without fallocate: a sparse file reads as zeros all the same.
        file.set_len(len).map_err(|e| LogError::io(path, e))?;
    }
    Ok(())
}

/// Owner of the map for `Bytes::from_owner`.
struct MapOwner(Arc<MmapRaw>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the map lives as long as `self`; `Bytes` only dereferences published ranges.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), self.0.len()) }
    }
}

/// One mapped segment file.
pub(crate) struct Segment {
    /// Position of file offset 0.
    pub base: u64,
    /// The file's path.
    pub path: PathBuf,
    /// The header carries [`FLAG_RECYCLED`]: past the last entry lie stale bytes, not zeros,
    /// so the writer keeps a zero header after its last entry (the end mark).
    pub recycled: bool,
    /// Shrunk, fsynced and indexed (`seal.rs`); set for every segment but the last at open.
    sealed: AtomicBool,
    file: File,
    map: Arc<MmapRaw>,
    whole: Bytes,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base", &self.base)
            .field("len", &self.len())
            .finish()
    }
}

impl Segment {
    /// Creates (or replaces) a segment file of `capacity` bytes with a fresh header.
    pub(crate) fn create(dir: &Path, base: u64, capacity: u64) -> Result<Segment, LogError> {
        let path = segment_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        preallocate(&file, &path, capacity)?;
        file.write_all_at(&encode_header(base, 0), 0)
            .map_err(|e| LogError::io(&path, e))?;
        file.sync_all().map_err(|e| LogError::io(&path, e))?;
        sync_dir(dir)?;
        Segment::map(path, file, base, false)
    }

    /// Turns the spare file `spare` into the segment with base `base`: grows it to `capacity`,
    /// writes a header flagged [`FLAG_RECYCLED`] and a zero end mark at the first entry's
    /// place, syncs, and only then renames it, so a crash leaves either the spare or a valid
    /// empty segment. The blocks the file already had stay allocated and written, which is the
    /// point: syncs over them need no block allocation.
    pub(crate) fn recycle(
        dir: &Path,
        spare: &Path,
        base: u64,
        capacity: u64,
    ) -> Result<Segment, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(spare)
            .map_err(|e| LogError::io(spare, e))?;
        let len = file.metadata().map_err(|e| LogError::io(spare, e))?.len();
        if len > capacity {
            file.set_len(capacity).map_err(|e| LogError::io(spare, e))?;
        }
        preallocate(&file, spare, capacity)?;
        let mut head = [0u8; (SEGMENT_HEADER_LEN + END_MARK_LEN) as usize];
        head[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&encode_header(base, FLAG_RECYCLED));
        file.write_all_at(&head, 0)
            .map_err(|e| LogError::io(spare, e))?;
        file.sync_data().map_err(|e| LogError::io(spare, e))?;
        let path = segment_path(dir, base);
        std::fs::rename(spare, &path).map_err(|e| LogError::io(&path, e))?;
        sync_dir(dir)?;
        Segment::map(path, file, base, true)
    }

    /// Opens an existing segment file, growing it to `min_len` first if it is shorter.
    pub(crate) fn open(path: PathBuf, base: u64, min_len: u64) -> Result<Segment, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        if len < min_len {
            preallocate(&file, &path, min_len)?;
        }
        let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
        let recycled = file.read_exact_at(&mut head, 0).is_ok()
            && check_header(&head, base).is_ok()
            && header_flags(&head) & FLAG_RECYCLED != 0;
        Segment::map(path, file, base, recycled)
    }

    fn map(path: PathBuf, file: File, base: u64, recycled: bool) -> Result<Segment, LogError> {
        let map = MmapOptions::new()
            .map_raw(&file)
            .map_err(|e| LogError::io(&path, e))?;
        let map = Arc::new(map);
        let whole = Bytes::from_owner(MapOwner(Arc::clone(&map)));
        Ok(Segment {
            base,
            path,
            recycled,
            sealed: AtomicBool::new(false),
            file,
            map,
            whole,
        })
    }

    /// Rewrites the segment header, without flags (used when recovery finds it missing, and
    /// once a recycled segment's stale tail is gone).
    pub(crate) fn write_header(&self) -> Result<(), LogError> {
        self.file
            .write_all_at(&encode_header(self.base, 0), 0)
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Discards every byte from file offset `off` on by cutting the file there and growing it
    /// back to `capacity`: the filesystem hands back zeros, without writing them. The map stays
    /// valid (the file is as long as before). Durable on return.
    pub(crate) fn discard_tail(&self, off: u64, capacity: u64) -> Result<(), LogError> {
        let io = |e| LogError::io(&self.path, e);
        self.file.set_len(off).map_err(io)?;
        preallocate(&self.file, &self.path, capacity.max(self.len()))?;
        self.file.sync_all().map_err(io)
    }

    /// Takes the segment apart once no one else holds it: `Some(path)` if no reader still holds
    /// a `Bytes` of its map (so its file may be written again), `None` otherwise.
    pub(crate) fn into_unshared_path(self) -> Option<PathBuf> {
        let Segment {
            path, map, whole, ..
        } = self;
        drop(whole);
        (Arc::strong_count(&map) == 1).then_some(path)
    }

    /// Mapped length.
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Bytes at file offsets `off..off + len` (caller guarantees the range is stable).
    pub(crate) fn slice(&self, off: u64, len: u64) -> &[u8] {
        assert!(off + len <= self.len(), "slice beyond segment map");
        // SAFETY: in bounds; the caller only asks for ranges not being written.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off as usize), len as usize) }
    }

    /// A zero-copy `Bytes` of file offsets `off..off + len`.
    pub(crate) fn bytes(&self, off: u64, len: u64) -> Bytes {
        self.whole.slice(off as usize..(off + len) as usize)
    }

    /// Writes `parts` one after another at file offset `off`, with as few `pwritev` calls as
    /// the iovec limit allows. Only the single writer calls this, on a range no reader can
    /// reach yet.
    ///
    /// Not a copy through the map: a write fault on a shared file mapping makes the filesystem
    /// dirty the whole folio (`page_mkwrite`), and the page cache holds folios of up to 2 MiB,
    /// so the partial page at the end of each sync dragged up to 2 MiB into the next one. A
    /// `pwritev` dirties only the blocks it writes, takes no page faults, and builds large
    /// folios from large writes (docs/benchmarks.log-store.md, "Write path").
    pub(crate) fn write(&self, off: u64, parts: &[&[u8]]) -> Result<(), LogError> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        assert!(off + len <= self.len(), "write beyond segment map");
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut bufs = &mut slices[..];
        let mut at = off;
        while !bufs.is_empty() {
            let cnt = bufs.len().min(IOV_MAX);
            // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the buffers outlive the call.
            let n = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    bufs.as_ptr().cast(),
                    cnt as libc::c_int,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(LogError::io(&self.path, e));
            }
            if n == 0 {
                return Err(LogError::io(
                    &self.path,
                    std::io::ErrorKind::WriteZero.into(),
                ));
            }
            at += n as u64;
            IoSlice::advance_slices(&mut bufs, n as usize);
        }
        Ok(())
    }

    /// Zeroes file offsets `off..off + len` (truncation of unpublished or withdrawn bytes).
    pub(crate) fn zero(&self, off: u64, len: u64) -> Result<(), LogError> {
        assert!(off + len <= self.len(), "zero beyond segment map");
        let zeros = [0u8; 64 << 10];
        let mut at = off;
        while at < off + len {
            let n = (off + len - at).min(zeros.len() as u64);
            self.write(at, &[&zeros[..n as usize]])?;
            at += n;
        }
        Ok(())
    }

    /// Starts writeback of the dirty pages of file offsets `off..off + len` without waiting
    /// for it: `sync_file_range(SYNC_FILE_RANGE_WRITE)`, a hint that makes nothing durable
    /// (see `writeback.rs`). Never with a wait flag: waiting checks and advances the file's
    /// writeback error cursor, which the map shares, so the next msync could miss an error.
    #[cfg(target_os = "linux")]
    pub(crate) fn start_writeback(&self, off: u64, len: u64) -> std::io::Result<()> {
        // SAFETY: plain syscall on an open descriptor; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                off as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Elsewhere there is no such hint; the kernel's own writeback does the work.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn start_writeback(&self, _off: u64, _len: u64) -> std::io::Result<()> {
        Ok(())
    }

    /// msync(MS_SYNC) of file offsets `off..off + len`.
    pub(crate) fn flush(&self, off: u64, len: u64) -> Result<(), LogError> {
        if len == 0 {
            return Ok(());
        }
        self.map
            .flush_range(off as usize, len as usize)
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// The segment is sealed: its length and index file are durable.
    pub(crate) fn mark_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// See [`Segment::mark_sealed`].
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Shrinks the file to `used` bytes once the segment is sealed (the map stays valid for
    /// every byte below `used`, which is all anyone reads) and fsyncs it: its data and its
    /// new length are durable on return.
    pub(crate) fn shrink_to(&self, used: u64) -> Result<(), LogError> {
        self.file
            .set_len(used)
            .map_err(|e| LogError::io(&self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| LogError::io(&self.path, e))
    }
}

/// Length of the end mark: a zero entry header kept after the last entry of a recycled
/// segment, so that recovery stops there instead of reading stale entries.
pub(crate) const END_MARK_LEN: u64 = 64;

/// Page size the writer pads a recycled segment's end mark to (see `append.rs`).
pub(crate) const PAGE: u64 = 4096;

/// Most iovecs one `pwritev` takes (Linux `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Probe size of [`garbage_after`].
pub(crate) const PROBE_CHUNK: u64 = 64 << 10;

/// Length of non-zero data from file offset `off` up to the first all-zero 64 KiB block.
pub(crate) fn garbage_after(seg: &Segment, off: u64) -> u64 {
    let mut at = off;
    while at < seg.len() {
        let next = ((at / PROBE_CHUNK) + 1) * PROBE_CHUNK;
        let chunk_end = next.min(seg.len());
        if seg.slice(at, chunk_end - at).iter().all(|&b| b == 0) {
            break;
        }
        at = chunk_end;
    }
    at - off
}

/// fsync of a directory, so created, renamed or removed names are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let p = segment_path(dir, 1234);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000001234.seg");
        assert_eq!(parse_segment_name(name), Some(1234));
        assert_eq!(parse_segment_name("1234.seg"), None);
        assert_eq!(parse_segment_name("00000000000000001234.idx"), None);
    }

    #[test]
    fn create_write_read_flush() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(dir.path(), 4096, 1 << 16).unwrap();
        assert_eq!(seg.len(), 1 << 16);
        check_header(seg.slice(0, SEGMENT_HEADER_LEN), 4096).unwrap();
        assert_eq!(
            check_header(seg.slice(0, SEGMENT_HEADER_LEN), 1),
            Err("segment header base disagrees with file name")
        );
        seg.write(32, &[b"hello ", b"world"]).unwrap();
        assert_eq!(seg.slice(32, 11), b"hello world");
        assert_eq!(&seg.bytes(38, 5)[..], b"world");
        seg.flush(32, 11).unwrap();
        seg.zero(32, 6).unwrap();
        assert_eq!(seg.slice(32, 11), b"\0\0\0\0\0\0world");
        drop(seg);
        let seg = Segment::open(segment_path(dir.path(), 4096), 4096, 0).unwrap();
        assert_eq!(seg.slice(38, 5), b"world");
    }

    #[test]
    fn a_write_of_more_parts_than_one_pwritev_takes() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(dir.path(), 0, 1 << 16).unwrap();
        let parts: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![i as u8, (i >> 8) as u8, 7])
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        seg.write(100, &refs).unwrap();
        assert_eq!(seg.slice(100, 9000), &parts.concat()[..]);
        assert_eq!(seg.slice(9100, 4), &[0, 0, 0, 0]);
        seg.zero(100, 9000).unwrap();
        assert!(seg.slice(0, 1 << 16)[32..].iter().all(|&b| b == 0));
    }
}
