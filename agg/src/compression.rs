//! Optional compression of whole Kinesis records, marked so that readers built on this
//! crate undo it without being told.
//!
//! ```text
//!  KinesisRecord.data ──zlib──▶ COMPRESSED_MAGIC + zlib stream (adler-32 checked)
//!  (aggregate or raw)           sent only when smaller than the original
//! ```
//!
//! This is not part of the KPL format: the Java KCL and other readers see the compressed
//! bytes as an opaque payload. Use it only when every consumer of the stream reads through
//! this crate (the `kinesis-consumer` crate does, by default).

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use crate::error::CorruptReason;

/// The four bytes that open a compressed record: the aggregation magic with its last
/// byte changed, so that the KPL family's readers never take it for an aggregate.
pub const COMPRESSED_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC3];

/// Compresses `data` with zlib at `level` (0-9) behind [`COMPRESSED_MAGIC`], or returns
/// `None` when that would not make it smaller (then send the original).
pub fn compress(data: &[u8], level: u32) -> Option<Bytes> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.extend_from_slice(&COMPRESSED_MAGIC);
    let mut encoder = ZlibEncoder::new(out, Compression::new(level.min(9)));
    // Writing into a Vec cannot fail.
    encoder.write_all(data).ok()?;
    let out = encoder.finish().ok()?;
    (out.len() < data.len()).then(|| Bytes::from(out))
}

/// Whether `data` starts with [`COMPRESSED_MAGIC`].
pub fn is_compressed(data: &[u8]) -> bool {
    data.len() > COMPRESSED_MAGIC.len() && data[..COMPRESSED_MAGIC.len()] == COMPRESSED_MAGIC
}

/// Undoes [`compress`]: `Ok(None)` when `data` is not marked as compressed, the original
/// bytes when it is.
///
/// # Errors
/// [`CorruptReason::Compression`] when the zlib stream is damaged or would inflate past
/// `max_len` bytes (a guard against decompression bombs).
pub fn decompress(data: &[u8], max_len: usize) -> Result<Option<Bytes>, CorruptReason> {
    if !is_compressed(data) {
        return Ok(None);
    }
    let decoder = ZlibDecoder::new(&data[COMPRESSED_MAGIC.len()..]);
    let mut out = Vec::with_capacity((data.len() * 4).min(max_len));
    decoder
        .take(max_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CorruptReason::Compression(e.to_string()))?;
    if out.len() > max_len {
        return Err(CorruptReason::Compression(format!(
            "inflates past the limit of {max_len} bytes"
        )));
    }
    Ok(Some(Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_only_when_smaller() {
        let text = "the same line again and again\n".repeat(200);
        let packed = compress(text.as_bytes(), 6).expect("repetitive text compresses");
        assert!(is_compressed(&packed));
        assert!(packed.len() < text.len() / 5);
        assert_eq!(
            decompress(&packed, 1 << 20).unwrap().unwrap(),
            text.as_bytes()
        );
        // Random-looking bytes do not shrink: sent as they are.
        let noise: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(compress(&noise, 6), None);
    }

    #[test]
    fn unmarked_data_is_left_alone_and_damage_is_reported() {
        assert_eq!(decompress(b"plain", 100).unwrap(), None);
        let mut packed = compress(&[b'a'; 1000], 6).unwrap().to_vec();
        let n = packed.len();
        packed[n - 2] ^= 0xFF; // the adler-32 trailer
        assert!(matches!(
            decompress(&packed, 1 << 20),
            Err(CorruptReason::Compression(_))
        ));
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        let packed = compress(&vec![0u8; 100_000], 9).unwrap();
        assert!(matches!(
            decompress(&packed, 99_999),
            Err(CorruptReason::Compression(_))
        ));
        assert_eq!(
            decompress(&packed, 100_000).unwrap().unwrap().len(),
            100_000
        );
    }
}
