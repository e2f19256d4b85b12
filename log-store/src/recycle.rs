//! Segment recycling: sealed segments deleted by retention are kept (up to
//! `PChannelOptions::recycle_segments`) as spare files, held by the segment thread, and reused
//! for the next segment it makes ahead of a roll (`seal.rs`), so that syncing writes land on
//! blocks the filesystem has already allocated and written (an fdatasync then commits no extent
//! conversion in the journal).
//!
//! A spare still holds its earlier life's entries. They can never be read back as entries of
//! the new segment (see `DESIGN.md`, "Recycled segments"), because:
//! - every stale entry's `seq` is below the spare's `bound` (the writer's next `seq` when the
//!   spare was made), and a spare is reused only if `bound <= next_seq`, so stale `seq`s are
//!   below the new segment's first `seq` and fail recovery's "`seq` follows" check;
//! - the recycled header (flag `FLAG_RECYCLED`) is written with a zero end mark at the first
//!   entry's place, and the writer keeps a zero end mark after its last entry (synced with it),
//!   so a clean scan stops at zeros, not at stale bytes;
//! - recovery cuts a recycled active segment's file right after the last valid entry (and
//!   grows it back, reading as zeros), so torn writes of this life cannot come back either.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::LogError;
use crate::recovery::Cut;
use crate::seal::Sealer;
use crate::segment::{Segment, index_path};
use crate::types::Position;

/// A file kept for reuse as a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spare {
    pub path: PathBuf,
    /// Every entry `seq` inside the file is below this.
    pub bound: u64,
}

/// Name of a spare made from the segment with base `base` when the next `seq` was `bound`.
pub(crate) fn spare_path(dir: &Path, base: u64, bound: u64) -> PathBuf {
    dir.join(format!("{base:020}-{bound:020}.spare"))
}

/// Parses `(base, bound)` out of a spare file name, if it is one.
pub(crate) fn parse_spare_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".spare")?;
    let (base, bound) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(base) || !digits(bound) {
        return None;
    }
    Some((base.parse().ok()?, bound.parse().ok()?))
}

/// Spares found in `dir` at open, oldest first; those beyond `keep` are deleted.
pub(crate) fn load_spares(dir: &Path, keep: usize) -> Result<Vec<Spare>, LogError> {
    let mut spares = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let e = e.map_err(|e| LogError::io(dir, e))?;
        let name = e.file_name();
        if let Some((base, bound)) = name.to_str().and_then(parse_spare_name) {
            spares.push((
                base,
                Spare {
                    path: e.path(),
                    bound,
                },
            ));
        }
    }
    spares.sort_unstable_by_key(|(base, _)| *base);
    let extra = spares.len().saturating_sub(keep);
    for (_, s) in spares.drain(..extra) {
        fs::remove_file(&s.path).map_err(|e| LogError::io(&s.path, e))?;
    }
    Ok(spares.into_iter().map(|(_, s)| s).collect())
}

/// Disposes of a sealed segment retention found dead: keeps its file as a spare if there is
/// room and no reader still holds its map, deletes it otherwise; deletes its index file. The
/// caller syncs the directory. `next_seq` is the writer's next `seq` (the spare's bound).
pub(crate) fn retire(
    dir: &Path,
    sealer: &Sealer,
    next_seq: u64,
    seg: Arc<Segment>,
    keep: usize,
) -> Result<(), LogError> {
    let base = seg.base;
    let path = seg.path.clone();
    // Readers holding `Bytes` of the segment keep its map: its file must not be rewritten.
    let unshared = if sealer.has_room_for_spare(keep) {
        Arc::try_unwrap(seg)
            .ok()
            .and_then(Segment::into_unshared_path)
    } else {
        None
    };
    match unshared {
        Some(p) => {
            let spare = spare_path(dir, base, next_seq);
            fs::rename(&p, &spare).map_err(|e| LogError::io(&p, e))?;
            let kept = sealer.keep_spare(
                Spare {
                    path: spare.clone(),
                    bound: next_seq,
                },
                keep,
            );
            if !kept {
                fs::remove_file(&spare).map_err(|e| LogError::io(&spare, e))?;
            }
        }
        None => fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?,
    }
    let idx = index_path(dir, base);
    match fs::remove_file(&idx) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(&idx, e)),
        _ => Ok(()),
    }
}

/// Ends recovery's scan of a recycled active segment at file offset `end`: whatever follows
/// (stale bytes of the earlier life, torn writes of this one) is discarded by cutting the file
/// there and growing it back, and the recycled flag is cleared (the tail now reads as zeros).
/// Stopping at the zero end mark is the normal end; any other `stop` is reported as a cut.
pub(crate) fn end_recycled_tail(
    seg: &Segment,
    end: u64,
    stop: Option<&'static str>,
    capacity: u64,
) -> Result<Option<Cut>, LogError> {
    let cut = stop.map(|reason| Cut {
        position: Position(seg.base + end),
        discarded_bytes: seg.len() - end,
        reason: reason.into(),
    });
    seg.discard_tail(end, capacity)?;
    seg.write_header()?;
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_names_round_trip() {
        let p = spare_path(Path::new("/x"), 4096, 77);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000004096-00000000000000000077.spare");
        assert_eq!(parse_spare_name(name), Some((4096, 77)));
        assert_eq!(parse_spare_name("00000000000000004096.seg"), None);
        assert_eq!(parse_spare_name("1-2.spare"), None);
    }

    #[test]
    fn load_keeps_the_newest_and_deletes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for base in [300u64, 100, 200] {
            fs::write(spare_path(dir.path(), base, base + 1), b"x").unwrap();
        }
        fs::write(dir.path().join("junk.spare"), b"x").unwrap();
        let spares = load_spares(dir.path(), 2).unwrap();
        assert_eq!(
            spares.iter().map(|s| s.bound).collect::<Vec<_>>(),
            vec![201, 301]
        );
        assert!(!spare_path(dir.path(), 100, 101).exists());
        assert!(dir.path().join("junk.spare").exists());
    }
}
