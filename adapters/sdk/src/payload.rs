//! Payload transport: the task document as gzip+base64 text, as Druid carries it.
//!
//! Druid's Kubernetes task runner puts the whole task JSON, gzip-compressed and base64-encoded,
//! into the pod annotation `task`, and the peon reads it back through the `TASK_JSON`
//! environment variable (a `fieldRef` to that annotation). Adapters that follow that convention
//! encode with [`encode`]; the host and tests decode with [`decode`]. Payloads whose encoded form
//! is longer than [`MAX_INLINE_PAYLOAD`] characters must not travel inline.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Largest gzip+base64 payload, in characters, that travels inline (as Druid).
pub const MAX_INLINE_PAYLOAD: usize = 130_048;

/// Largest decoded payload [`decode`] returns, so that a tiny compressed annotation cannot
/// expand without bound (64 MiB).
pub const MAX_DECODED_PAYLOAD: u64 = 64 * 1024 * 1024;

/// Why a gzip+base64 payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The text is not standard base64.
    #[error(
        "payload is not valid base64 ({0}); expected gzip+base64 text as written by `payload::encode`"
    )]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not a gzip stream, or it is truncated.
    #[error("payload is not a valid gzip stream ({0})")]
    Gzip(std::io::Error),
    /// The decompressed payload is larger than [`MAX_DECODED_PAYLOAD`].
    #[error("payload decompresses to more than {MAX_DECODED_PAYLOAD} bytes")]
    TooLarge,
    /// The decompressed payload is not UTF-8 text.
    #[error("payload is not UTF-8 text after decompression")]
    NotUtf8,
}

/// Compresses `json` with gzip and encodes it as standard base64 (with padding), Druid's
/// `Base64Compression.compressBase64`.
///
/// Uses a fast compression level: task documents are small and highly repetitive, so a faster
/// level costs a few percent of size and saves most of the time.
pub fn encode(json: &str) -> String {
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 3 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    gz.write_all(json.as_bytes())
        .expect("gzip into memory cannot fail");
    let bytes = gz.finish().expect("gzip into memory cannot fail");
    STANDARD.encode(bytes)
}

/// Decodes gzip+base64 text written by [`encode`] (or by Druid) back to the task JSON.
pub fn decode(text: &str) -> Result<String, PayloadError> {
    let bytes = STANDARD.decode(text.trim())?;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    GzDecoder::new(bytes.as_slice())
        .take(MAX_DECODED_PAYLOAD + 1)
        .read_to_end(&mut out)
        .map_err(PayloadError::Gzip)?;
    if out.len() as u64 > MAX_DECODED_PAYLOAD {
        return Err(PayloadError::TooLarge);
    }
    String::from_utf8(out).map_err(|_| PayloadError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for json in ["", "{}", r#"{"type":"index_parallel","id":"x é 日本"}"#] {
            let text = encode(json);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            );
            assert_eq!(decode(&text).unwrap(), json);
        }
    }

    #[test]
    fn compresses_repetitive_json() {
        let json = format!("[{}]", vec![r#"{"dim":"channel"}"#; 1000].join(","));
        assert!(encode(&json).len() < json.len() / 10);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            decode("not base64!"),
            Err(PayloadError::Base64(_))
        ));
        let not_gzip = STANDARD.encode(b"plain text");
        assert!(matches!(decode(&not_gzip), Err(PayloadError::Gzip(_))));
        let err = decode("%%%").unwrap_err().to_string();
        assert!(err.contains("base64"), "{err}");
    }
}
