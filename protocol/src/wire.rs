//! A bounds-checked cursor over borrowed bytes: big-endian integers and Kafka's varints.
//!
//! Every read returns `None` past the end instead of panicking, so parsers of
//! network input built on it cannot index out of bounds.

/// A read position in a byte slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn i8(&mut self) -> Option<i8> {
        self.array::<1>().map(i8::from_be_bytes)
    }

    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.array::<2>().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array::<4>().map(i32::from_be_bytes)
    }

    /// An unsigned LEB128 varint of at most 5 bytes (Kafka's `UNSIGNED_VARINT`).
    pub(crate) fn uvarint(&mut self) -> Option<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.array::<1>()?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A zig-zag varint of at most 5 bytes (`VARINT`, used inside records).
    pub(crate) fn varint(&mut self) -> Option<i32> {
        let v = self.uvarint()?;
        Some(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    /// A zig-zag varlong of at most 10 bytes (`VARLONG`, used inside records).
    pub(crate) fn varlong(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.array::<1>()?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        None
    }

    /// Skips a block of tagged fields (count, then tag + size + bytes each).
    pub(crate) fn skip_tagged_fields(&mut self) -> Option<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Some(())
    }
}

/// Appends an unsigned varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a zig-zag varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32);
}

/// Appends a zig-zag varlong.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.i16(), Some(0x0102));
        assert_eq!(r.i16(), None);
        assert_eq!(r.i8(), Some(3));
        assert_eq!(r.remaining(), 0);
        assert_eq!(Reader::new(&[0x80; 6]).uvarint(), None);
        assert_eq!(Reader::new(&[0x80; 11]).varlong(), None);
        assert_eq!(Reader::new(&[0xff, 0xff]).bytes(usize::MAX), None);
    }

    proptest! {
        #[test]
        fn varints_round_trip(a in any::<u32>(), b in any::<i32>(), c in any::<i64>()) {
            let mut out = Vec::new();
            put_uvarint(&mut out, a);
            put_varint(&mut out, b);
            put_varlong(&mut out, c);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.uvarint(), Some(a));
            prop_assert_eq!(r.varint(), Some(b));
            prop_assert_eq!(r.varlong(), Some(c));
            prop_assert_eq!(r.remaining(), 0);
        }
    }
}
