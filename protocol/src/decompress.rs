//! Decompression of a batch's records with a cap on the output size.
//!
//! `kafka-protocol`'s codecs allocate whatever a batch declares or inflates
//! to: a 100-byte snappy batch declaring 4 GiB made the fuzzer run out of
//! memory. These readers stop at `limit` bytes instead.

use std::io::Read;

use crate::batch::{BatchError, Codec};

/// Default cap on one decompressed batch (64 MiB): far above what producers
/// build (`batch.size` counts uncompressed bytes, 16 KiB by default).
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 << 20;

/// xerial snappy-java framing, used by Kafka's Java client.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn too_large(limit: usize) -> BatchError {
    BatchError::Compression(format!("decompressed batch exceeds {limit} bytes"))
}

fn io_error(codec: &str, e: std::io::Error) -> BatchError {
    BatchError::Compression(format!("{codec}: {e}"))
}

/// Reads all of `reader`, failing past `limit` bytes.
fn read_capped(reader: impl Read, limit: usize, codec: &str) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| io_error(codec, e))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Decompresses `input` (the records section of a batch) with `codec`.
pub fn decompress(codec: Codec, input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Codec::None => {
            if input.len() > limit {
                return Err(too_large(limit));
            }
            Ok(input.to_vec())
        }
        Codec::Gzip => read_capped(flate2::read::GzDecoder::new(input), limit, "gzip"),
        Codec::Lz4 => {
            let decoder = lz4::Decoder::new(input).map_err(|e| io_error("lz4", e))?;
            read_capped(decoder, limit, "lz4")
        }
        Codec::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| io_error("zstd", e))?;
            read_capped(decoder, limit, "zstd")
        }
        Codec::Snappy => snappy(input, limit),
        Codec::Unknown(n) => Err(BatchError::Compression(format!("unknown codec {n}"))),
    }
}

/// Snappy as Kafka writes it: xerial framing (16-byte header, then blocks of
/// `u32` length + raw snappy), or one raw block as librdkafka may write.
fn snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(compressed)
            .map_err(|e| BatchError::Compression(format!("snappy: {e}")))?;
        if out.len().saturating_add(len) > limit {
            return Err(too_large(limit));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(|e| BatchError::Compression(format!("snappy: {e}")))?;
        Ok(())
    };
    if !input.starts_with(XERIAL_MAGIC) {
        block(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or(BatchError::Compression("snappy: short header".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or(BatchError::Compression("snappy: block length".into()))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (compressed, tail) = tail
            .split_at_checked(len)
            .ok_or(BatchError::Compression("snappy: block truncated".into()))?;
        block(compressed, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_codec_round_trips_and_respects_the_cap() {
        let data = vec![7u8; 100_000];
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let lz = {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            e.finish().0
        };
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&(raw_snappy.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&raw_snappy);
        for (codec, input) in [
            (Codec::Gzip, &gz),
            (Codec::Lz4, &lz),
            (Codec::Zstd, &zs),
            (Codec::Snappy, &raw_snappy),
            (Codec::Snappy, &xerial),
        ] {
            assert_eq!(
                decompress(codec, input, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            assert!(
                decompress(codec, input, data.len() - 1).is_err(),
                "{codec:?} over the cap"
            );
        }
    }

    #[test]
    fn a_snappy_block_declaring_4_gib_is_refused_before_allocating() {
        // Fuzzer find: varint length 0xffffffff, then junk.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0, 1, 2];
        assert!(decompress(Codec::Snappy, &bomb, DEFAULT_MAX_DECOMPRESSED).is_err());
        assert!(decompress(Codec::Gzip, &bomb, 10).is_err());
        assert!(decompress(Codec::Zstd, &bomb, 10).is_err());
        assert!(decompress(Codec::Lz4, &bomb, 10).is_err());
        assert!(decompress(Codec::Unknown(6), &bomb, 10).is_err());
    }
}
