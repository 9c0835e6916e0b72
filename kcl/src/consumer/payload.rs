//! Opt-in inflation of user payloads written gzip- or zlib-compressed by their producer
//! (CloudWatch Logs subscriptions deliver gzip JSON). Pure: no I/O.
//!
//! ```text
//!  payload ─▶ 1F 8B 08 …             (gzip) ─inflate ≤ limit─▶ ok: data inflated, Gzip
//!          ─▶ 78 xx, (78xx % 31 = 0) (zlib) ─inflate ≤ limit─▶ ok: data inflated, Zlib
//!                                                          └─▶ fails: data as sent, NotInflated
//!          ─▶ anything else ─────────────────────────────────▶ data as sent, Plain
//! ```
//!
//! Headers: gzip per RFC 1952 (ID1 ID2 = `1F 8B`, CM = 8 deflate); zlib per RFC 1950 (CMF
//! with CM = 8 and CINFO ≤ 7, a check value making `CMF·256 + FLG` a multiple of 31, no
//! preset dictionary). A payload that only looks compressed (plain text starting with
//! `x^`, say) fails to inflate and is handed over as it was, marked: never dropped.

use std::io::Read;

use bytes::Bytes;
use flate2::read::{GzDecoder, ZlibDecoder};

use crate::processor::KinesisClientRecord;

/// Whether user payloads are inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PayloadDecompression {
    /// Payloads are handed over as they were sent. The default.
    #[default]
    Off,
    /// Payloads with a gzip or zlib header are inflated (up to
    /// [`MAX_INFLATED_BYTES`] each); one that does not inflate is handed over as it was
    /// sent, marked [`PayloadEncoding::NotInflated`].
    GzipAndZlib,
}

/// The most bytes one payload may inflate to: 10 MiB (ten times Kinesis's 1 MiB record),
/// a bound against decompression bombs. A payload that would inflate past it is handed
/// over as it was, marked [`PayloadEncoding::NotInflated`].
pub const MAX_INFLATED_BYTES: usize = 10 * 1024 * 1024;

/// What was done to a record's payload before the processor got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PayloadEncoding {
    /// As sent: not compressed, or decompression is off.
    #[default]
    Plain,
    /// Inflated from gzip.
    Gzip,
    /// Inflated from zlib.
    Zlib,
    /// It has a gzip or zlib header but did not inflate (damaged, or over
    /// [`MAX_INFLATED_BYTES`], or not compressed after all): handed over as sent.
    NotInflated,
}

/// The compression a payload's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// RFC 1952.
    Gzip,
    /// RFC 1950.
    Zlib,
}

/// The codec `data`'s header announces, if any.
fn codec(data: &[u8]) -> Option<Codec> {
    match data {
        [0x1f, 0x8b, 0x08, ..] => Some(Codec::Gzip),
        [cmf, flg, _, ..]
            if cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0 =>
        {
            Some(Codec::Zlib)
        }
        _ => None,
    }
}

/// `data` inflated when its header says gzip or zlib, with what was done.
pub(crate) fn inflate(data: Bytes, limit: usize) -> (Bytes, PayloadEncoding) {
    let Some(codec) = codec(&data) else {
        return (data, PayloadEncoding::Plain);
    };
    let mut out = Vec::with_capacity((data.len() * 4).min(limit));
    let read = match codec {
        Codec::Gzip => GzDecoder::new(&data[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        Codec::Zlib => ZlibDecoder::new(&data[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
    };
    match read {
        Ok(_) if out.len() <= limit => (
            Bytes::from(out),
            match codec {
                Codec::Gzip => PayloadEncoding::Gzip,
                Codec::Zlib => PayloadEncoding::Zlib,
            },
        ),
        _ => (data, PayloadEncoding::NotInflated),
    }
}

/// Inflates the payloads of `records` that have a gzip or zlib header, marking each record
/// with what was done: (inflated, not inflated) counts.
pub(crate) fn inflate_all(records: &mut [KinesisClientRecord]) -> (usize, usize) {
    let (mut inflated, mut failed) = (0, 0);
    for r in records {
        let (data, encoding) = inflate(std::mem::take(&mut r.data), MAX_INFLATED_BYTES);
        r.data = data;
        r.payload_encoding = encoding;
        match encoding {
            PayloadEncoding::Gzip | PayloadEncoding::Zlib => inflated += 1,
            PayloadEncoding::NotInflated => failed += 1,
            PayloadEncoding::Plain => {}
        }
    }
    (inflated, failed)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    fn zlib(data: &[u8]) -> Bytes {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn gzip_and_zlib_payloads_are_inflated() {
        let text = br#"{"logEvents":[{"message":"hello"}]}"#;
        assert_eq!(
            inflate(gzip(text), MAX_INFLATED_BYTES),
            (Bytes::from_static(text), PayloadEncoding::Gzip)
        );
        assert_eq!(
            inflate(zlib(text), MAX_INFLATED_BYTES),
            (Bytes::from_static(text), PayloadEncoding::Zlib)
        );
        for level in 0..=9 {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::new(level));
            e.write_all(text).unwrap();
            let packed = Bytes::from(e.finish().unwrap());
            assert_eq!(inflate(packed, 1024).1, PayloadEncoding::Zlib, "{level}");
        }
    }

    #[test]
    fn plain_payloads_pass_untouched() {
        for plain in [
            &b"hello"[..],
            b"",
            b"x",
            b"{\"a\":1}",
            &[0x1f, 0x8b],
            b"xyz",
        ] {
            let data = Bytes::copy_from_slice(plain);
            assert_eq!(
                inflate(data.clone(), MAX_INFLATED_BYTES),
                (data, PayloadEncoding::Plain)
            );
        }
    }

    #[test]
    fn payloads_that_do_not_inflate_are_handed_over_as_sent() {
        // Damaged: a gzip header and then garbage.
        let mut damaged = gzip(b"some text that is long enough").to_vec();
        let n = damaged.len();
        damaged[n / 2..].fill(0xAA);
        let damaged = Bytes::from(damaged);
        assert_eq!(
            inflate(damaged.clone(), MAX_INFLATED_BYTES),
            (damaged, PayloadEncoding::NotInflated)
        );
        // Plain text that merely looks like zlib ("x^" is a valid zlib header).
        let text = Bytes::from_static(b"x^2 + y^2 = r^2");
        assert_eq!(
            inflate(text.clone(), MAX_INFLATED_BYTES),
            (text, PayloadEncoding::NotInflated)
        );
        // A bomb: inflates past the limit.
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert_eq!(
            inflate(bomb.clone(), 1 << 19),
            (bomb, PayloadEncoding::NotInflated)
        );
    }
}
