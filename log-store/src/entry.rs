//! Entry framing: the 64-byte header in front of every payload, and its CRC.
//!
//! Layout (little endian), see `DESIGN.md`:
//! `crc u32 | magic u16 | version u8 | reserved u8 | payload_len u32 | flags u16 | reserved u16 |
//!  vchannel u64 | first_offset i64 | last_offset i64 | max_timestamp i64 | term u64 | seq u64`.
//! The CRC-32 (IEEE, `crc32fast`) covers header bytes 4..64 and then the payload.

/// Size of the entry header.
pub(crate) const HEADER_LEN: usize = 64;
/// Magic of an entry header ("SL" read as a little-endian u16).
pub(crate) const ENTRY_MAGIC: u16 = 0x4c53;
/// Entry format version.
pub(crate) const ENTRY_VERSION: u8 = 1;
/// Largest payload an entry may carry (the length field is a u32).
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64;

/// The decoded header of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub crc: u32,
    pub payload_len: u32,
    pub flags: u16,
    pub vchannel: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub term: u64,
    pub seq: u64,
}

/// Why bytes are not a valid entry header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// All 64 bytes are zero: the preallocated end of a segment.
    Zero,
    /// Not enough bytes for a header.
    Short,
    /// Wrong magic.
    Magic,
    /// Unknown format version.
    Version,
    /// Offsets inconsistent.
    Offsets,
}

impl HeaderError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            HeaderError::Zero => "end of data (zero header)",
            HeaderError::Short => "header cut by end of segment",
            HeaderError::Magic => "bad entry magic",
            HeaderError::Version => "unknown entry format version",
            HeaderError::Offsets => "invalid offset range",
        }
    }
}

impl EntryHeader {
    /// Total size on disk of the entry.
    pub(crate) fn entry_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Encodes the header with `crc` field left as given.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.crc.to_le_bytes());
        b[4..6].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
        b[6] = ENTRY_VERSION;
        b[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.vchannel.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.last_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.max_timestamp.to_le_bytes());
        b[48..56].copy_from_slice(&self.term.to_le_bytes());
        b[56..64].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Decodes and sanity-checks a header (not the CRC: see [`crc_of`]).
    pub(crate) fn decode(b: &[u8]) -> Result<EntryHeader, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Short);
        }
        let b = &b[..HEADER_LEN];
        if b.iter().all(|&x| x == 0) {
            return Err(HeaderError::Zero);
        }
        if u16::from_le_bytes([b[4], b[5]]) != ENTRY_MAGIC {
            return Err(HeaderError::Magic);
        }
        if b[6] != ENTRY_VERSION {
            return Err(HeaderError::Version);
        }
        let h = EntryHeader {
            crc: le_u32(&b[0..4]),
            payload_len: le_u32(&b[8..12]),
            flags: u16::from_le_bytes([b[12], b[13]]),
            vchannel: le_u64(&b[16..24]),
            first_offset: le_u64(&b[24..32]) as i64,
            last_offset: le_u64(&b[32..40]) as i64,
            max_timestamp: le_u64(&b[40..48]) as i64,
            term: le_u64(&b[48..56]),
            seq: le_u64(&b[56..64]),
        };
        if !offsets_ok(h.first_offset, h.last_offset) {
            return Err(HeaderError::Offsets);
        }
        Ok(h)
    }
}

/// Whether `first..=last` is a valid offset range for one entry: non-negative, ordered, at most
/// `u32::MAX` offsets apart (Kafka's last offset delta is an i32), and `last + 1` representable.
pub(crate) fn offsets_ok(first: i64, last: i64) -> bool {
    first >= 0 && last >= first && last < i64::MAX && last - first <= i64::from(u32::MAX)
}

/// CRC-32 of an encoded header (bytes 4..) followed by the payload parts.
pub(crate) fn crc_of(header: &[u8; HEADER_LEN], parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[4..]);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Reads a little-endian u32 from a 4-byte slice.
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 from an 8-byte slice.
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EntryHeader {
        EntryHeader {
            crc: 0,
            payload_len: 5,
            flags: 3,
            vchannel: 42,
            first_offset: 10,
            last_offset: 14,
            max_timestamp: 1_700_000_000_000,
            term: 7,
            seq: 99,
        }
    }

    #[test]
    fn header_round_trips_and_crc_covers_payload() {
        let mut h = sample();
        let enc = h.encode();
        h.crc = crc_of(&enc, &[b"ab", b"cde"]);
        let enc = h.encode();
        let back = EntryHeader::decode(&enc).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.entry_len(), 69);
        assert_eq!(crc_of(&enc, &[b"abcde"]), h.crc);
        assert_ne!(crc_of(&enc, &[b"abcdf"]), h.crc);
    }

    #[test]
    fn bad_headers_are_classified() {
        assert_eq!(EntryHeader::decode(&[0u8; 64]), Err(HeaderError::Zero));
        assert_eq!(EntryHeader::decode(&[1u8; 10]), Err(HeaderError::Short));
        let mut enc = sample().encode();
        enc[4] ^= 1;
        assert_eq!(EntryHeader::decode(&enc), Err(HeaderError::Magic));
        let mut enc = sample().encode();
        enc[6] = 9;
        assert_eq!(EntryHeader::decode(&enc), Err(HeaderError::Version));
        let mut h = sample();
        h.last_offset = 1;
        assert_eq!(EntryHeader::decode(&h.encode()), Err(HeaderError::Offsets));
    }
}
