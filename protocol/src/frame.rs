//! Length-prefixed frames: a 4-byte big-endian size, then that many bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::errors::{DecodeError, EncodeError};

/// Bytes of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

/// Kafka's default `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Splits frames off a connection's read buffer.
///
/// The size limit is checked as soon as the 4-byte prefix is readable, before
/// any of the body is buffered, so a peer cannot make the broker reserve more
/// than `max_frame_size` bytes per connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames whose body is larger than `max_frame_size`.
    pub fn new(max_frame_size: usize) -> Self {
        FrameDecoder { max_frame_size }
    }

    /// The configured limit.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes the next complete frame body off `buf`.
    ///
    /// Returns `Ok(None)` when the buffer does not hold a whole frame yet (after
    /// reserving room for the rest of it), and an error for a negative or
    /// oversize prefix, after which the connection must be closed: the stream
    /// cannot be resynchronised. The body is `split_to(len).freeze()` of `buf`,
    /// so decoded `records` fields are slices of it, not copies.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(prefix) = buf.get(..SIZE_PREFIX_LEN) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let Ok(len) = usize::try_from(size) else {
            return Err(DecodeError::NegativeFrameSize { size });
        };
        if len > self.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                size: len,
                limit: self.max_frame_size,
            });
        }
        let total = SIZE_PREFIX_LEN + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Starts a frame in `buf`: writes a placeholder size and returns its position.
pub fn begin_frame(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_i32(0);
    start
}

/// Fills in the size of the frame begun at `start` with [`begin_frame`], counting
/// `extra` bytes that will follow it outside `buf` (vectored parts).
pub fn finish_frame(buf: &mut BytesMut, start: usize, extra: usize) -> Result<(), EncodeError> {
    let size = buf.len() - start - SIZE_PREFIX_LEN + extra;
    let Ok(size32) = i32::try_from(size) else {
        return Err(EncodeError::TooLarge { size });
    };
    buf[start..start + SIZE_PREFIX_LEN].copy_from_slice(&size32.to_be_bytes());
    Ok(())
}

/// Appends a whole frame (`body` with its size prefix) to `buf`.
pub fn put_frame(buf: &mut BytesMut, body: &[u8]) -> Result<(), EncodeError> {
    let start = begin_frame(buf);
    buf.put_slice(body);
    finish_frame(buf, start, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_prefix_and_body_are_not_errors() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.put_slice(&[0, 3, 1, 2]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() >= 7,
            "room reserved for the rest of the frame"
        );
        buf.put_slice(&[3, 9]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(&[1, 2, 3]))));
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn oversize_is_rejected_before_the_body_arrives() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                size: 17,
                limit: 16
            })
        );
        assert!(buf.capacity() < 64, "nothing reserved for a refused frame");
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::NegativeFrameSize { size: -1 })
        );
    }

    #[test]
    fn empty_frame_and_exact_limit() {
        let d = FrameDecoder::new(2);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 2, 7, 8][..]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::new())));
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(&[7, 8]))));
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn body_is_a_slice_of_the_read_buffer() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::with_capacity(64);
        put_frame(&mut buf, b"hello").unwrap();
        let base = buf.as_ptr() as usize;
        let frame = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.as_ptr() as usize, base + SIZE_PREFIX_LEN);
    }

    proptest! {
        #[test]
        fn round_trip_in_arbitrary_chunks(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for b in &bodies {
                put_frame(&mut wire, b).unwrap();
            }
            let d = FrameDecoder::new(300);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.put_slice(piece);
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    out.push(f.to_vec());
                }
            }
            prop_assert_eq!(out, bodies);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = FrameDecoder::new(32);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
        }
    }
}
