//! Bounded gzip decompression: a small body must never become gigabytes in
//! memory (a "gzip bomb").

use std::io::Read;

use flate2::read::MultiGzDecoder;

/// Largest decompressed document read (replay files, log lines, webhook and
/// Firehose bodies, one Firehose record): 64 MiB, twice the webhook's default
/// body limit.
pub const MAX_INFLATED_BYTES: usize = 64 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `b` starts with the gzip magic number (RFC 1952).
pub fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&GZIP_MAGIC)
}

/// Why a gzip body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("gzip data decompresses past the limit of {limit} bytes (refused)")]
    TooLarge { limit: usize },
    #[error("corrupt gzip data: {0}")]
    Corrupt(String),
}

/// Decompresses every gzip member of `b`, refusing output over `limit` bytes.
pub fn gunzip(b: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let mut r = MultiGzDecoder::new(b).take(limit as u64 + 1);
    r.read_to_end(&mut out)
        .map_err(|e| InflateError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(out)
}

/// `b` decompressed if it is gzip, else `b` itself.
pub fn maybe_gunzip(b: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, InflateError> {
    if is_gzip(b) {
        gunzip(b, limit).map(std::borrow::Cow::Owned)
    } else {
        Ok(std::borrow::Cow::Borrowed(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trip_and_members() {
        let mut two = gz(b"{\"a\":1}");
        two.extend(gz(b"{\"b\":2}"));
        assert_eq!(gunzip(&two, 100).unwrap(), b"{\"a\":1}{\"b\":2}");
        assert_eq!(&*maybe_gunzip(b"plain", 1).unwrap(), b"plain");
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        // 16 MiB of zeros in ~16 KiB (deflate tops out near 1:1000); a limit of 1 MiB refuses it.
        let bomb = gz(&vec![0u8; 16 << 20]);
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        assert_eq!(
            gunzip(&bomb, 1 << 20),
            Err(InflateError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn corrupt_and_truncated_gzip_are_errors() {
        let g = gz(b"hello world");
        assert!(matches!(
            gunzip(&g[..g.len() - 4], 100),
            Err(InflateError::Corrupt(_))
        ));
        assert!(matches!(
            gunzip(&[0x1f, 0x8b, 0, 0], 100),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn output_of_exactly_the_limit_is_read() {
        let g = gz(b"0123456789");
        assert_eq!(gunzip(&g, 10).unwrap(), b"0123456789");
        assert_eq!(gunzip(&g, 9), Err(InflateError::TooLarge { limit: 9 }));
    }
}
