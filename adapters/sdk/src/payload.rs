//! Payload transport: the task document as gzip+base64 text, as Druid carries it.
//!
//! Druid's Kubernetes task runner puts the whole task JSON, gzip-compressed and base64-encoded,
//! into the pod annotation `task`, and the peon reads it back through the `TASK_JSON`
//! environment variable (a `fieldRef` to that annotation). Adapters that follow that convention
//! encode with [`encode`]; the host and tests decode with [`decode`]. Payloads whose encoded form
//! is longer than [`MAX_INLINE_PAYLOAD`] characters must not travel inline.

use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::read::GzDecoder;

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

/// Compresses `json` with gzip and encodes it as standard base64 (with padding), like Druid's
/// `Base64Compression.compressBase64`; any gzip reader (Druid's peon, [`decode`]) reads it.
///
/// The compressor is [`gzip`], a small single-pass one: it allocates at most 64 KiB of state
/// (8 KiB for a typical task) instead of the ~300 KiB a general-purpose deflate encoder zeroes
/// on every call, which dominated the cost of an adapter call in a fresh sandbox.
pub fn encode(json: &str) -> String {
    STANDARD.encode(gzip(json.as_bytes()))
}

/// Compresses `data` into a gzip member (RFC 1952) holding one deflate block with the fixed
/// Huffman code (RFC 1951 §3.2.6), found by greedy LZ77 matching over a 32 KiB window with a
/// hash table of 256 to 16 384 entries, sized to the input.
///
/// Task documents are small and repetitive JSON, for which this is within a few percent of a
/// general-purpose encoder's fast level. Inputs of 4 GiB or more are still encoded correctly
/// (the size field wraps, as gzip specifies), only with fewer matches.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 32);
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown).
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    deflate_fixed(data, &mut out);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Hash table size bounds (log2 of entries): the table is sized to the input, so a small task
/// touches little memory (each page matters in a fresh sandbox) and a large one keeps its matches.
const MIN_HASH_BITS: u32 = 8;
const MAX_HASH_BITS: u32 = 14;
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;

/// Base lengths of length symbols 257..=285 and their extra bits (RFC 1951 §3.2.5).
const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distances of distance symbols 0..=29 and their extra bits.
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Shortest match deflate can express.
const MIN_LEN: usize = 3;

/// Index into [`LEN_BASE`] of every match length 3..=258 (at `len - 3`).
const LEN_INDEX: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 29 {
        let start = LEN_BASE[i] as usize - MIN_LEN;
        let end = if i == 28 {
            256
        } else {
            LEN_BASE[i + 1] as usize - MIN_LEN
        };
        let mut l = start;
        while l < end {
            table[l] = i as u8;
            l += 1;
        }
        i += 1;
    }
    table
};

/// Index into [`DIST_BASE`] of a distance: at `dist - 1` for distances up to 256, at
/// `256 + ((dist - 1) >> 7)` beyond (zlib's `_dist_code` layout: above 256 every symbol covers
/// whole multiples of 128).
const DIST_INDEX: [u8; 512] = {
    let mut table = [0u8; 512];
    let mut i = 0;
    while i < 30 {
        let start = DIST_BASE[i] as usize;
        let end = if i == 29 {
            WINDOW + 1
        } else {
            DIST_BASE[i + 1] as usize
        };
        let mut d = start;
        while d < end {
            if d <= 256 {
                table[d - 1] = i as u8;
            } else {
                table[256 + ((d - 1) >> 7)] = i as u8;
            }
            d += 1;
        }
        i += 1;
    }
    table
};

/// The fixed literal/length code: (code bits reversed for LSB-first output, length).
const FIXED_LITLEN: [(u16, u8); 288] = {
    let mut table = [(0u16, 0u8); 288];
    let mut sym = 0;
    while sym < 288 {
        let (code, len) = match sym {
            0..=143 => (0x30 + sym as u16, 8),
            144..=255 => (0x190 + (sym as u16 - 144), 9),
            256..=279 => (sym as u16 - 256, 7),
            _ => (0xc0 + (sym as u16 - 280), 8),
        };
        table[sym] = (reverse_bits(code, len), len);
        sym += 1;
    }
    table
};

const fn reverse_bits(code: u16, len: u8) -> u16 {
    let mut out = 0u16;
    let mut i = 0;
    while i < len {
        out = (out << 1) | ((code >> i) & 1);
        i += 1;
    }
    out
}

/// LSB-first bit writer (deflate's bit order).
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits<'_> {
    fn put(&mut self, bits: u32, count: u32) {
        self.acc |= u64::from(bits) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn symbol(&mut self, sym: usize) {
        let (code, len) = FIXED_LITLEN[sym];
        self.put(u32::from(code), u32::from(len));
    }

    fn matched(&mut self, len: usize, dist: usize) {
        let li = usize::from(LEN_INDEX[len - MIN_LEN]);
        self.symbol(257 + li);
        self.put(
            (len - usize::from(LEN_BASE[li])) as u32,
            u32::from(LEN_EXTRA[li]),
        );
        let di = usize::from(if dist <= 256 {
            DIST_INDEX[dist - 1]
        } else {
            DIST_INDEX[256 + ((dist - 1) >> 7)]
        });
        self.put(u32::from(reverse_bits(di as u16, 5)), 5);
        self.put(
            (dist - usize::from(DIST_BASE[di])) as u32,
            u32::from(DIST_EXTRA[di]),
        );
    }

    fn finish(mut self) {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
    }
}

#[inline(always)]
fn read4(data: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
fn hash4(word: u32, bits: u32) -> usize {
    (word.wrapping_mul(0x9e37_79b1) >> (32 - bits)) as usize
}

/// Length of the common prefix of `data[p..]` and `data[i..]` (`p < i`), at most `max`.
#[inline(always)]
fn common_prefix(data: &[u8], p: usize, i: usize, max: usize) -> usize {
    let mut len = 0;
    while len + 8 <= max {
        let a = u64::from_le_bytes(data[p + len..p + len + 8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(data[i + len..i + len + 8].try_into().expect("8 bytes"));
        let diff = a ^ b;
        if diff != 0 {
            return len + (diff.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    while len < max && data[p + len] == data[i + len] {
        len += 1;
    }
    len
}

/// Matches longer than this insert only their last positions into the hash table: inserting
/// every position of long runs costs time and rarely finds better matches.
const MAX_INSERT: usize = 16;

/// One final deflate block with the fixed Huffman code.
fn deflate_fixed(data: &[u8], out: &mut Vec<u8>) {
    let mut bits = Bits { out, acc: 0, n: 0 };
    bits.put(0b011, 3); // BFINAL = 1, BTYPE = 01 (fixed Huffman)
    // Position + 1 of the last occurrence of each hash; 0 = none.
    let hash_bits = data
        .len()
        .next_power_of_two()
        .trailing_zeros()
        .clamp(MIN_HASH_BITS, MAX_HASH_BITS);
    let mut table = vec![0u32; 1 << hash_bits];
    let n = data.len();
    let mut i = 0;
    while i + MIN_MATCH <= n {
        let word = read4(data, i);
        let h = hash4(word, hash_bits);
        let candidate = table[h] as usize;
        table[h] = (i as u32).wrapping_add(1);
        if candidate != 0 {
            let p = candidate - 1;
            if p < i && i - p <= WINDOW && read4(data, p) == word {
                let max = MAX_MATCH.min(n - i);
                let len =
                    MIN_MATCH + common_prefix(data, p + MIN_MATCH, i + MIN_MATCH, max - MIN_MATCH);
                bits.matched(len, i - p);
                let end = (i + len).min(n + 1 - MIN_MATCH);
                let from = if len > MAX_INSERT {
                    end.saturating_sub(2).max(i + 1)
                } else {
                    i + 1
                };
                for j in from..end {
                    table[hash4(read4(data, j), hash_bits)] = (j as u32).wrapping_add(1);
                }
                i += len;
                continue;
            }
        }
        bits.symbol(usize::from(data[i]));
        i += 1;
    }
    for &b in &data[i..] {
        bits.symbol(usize::from(b));
    }
    bits.symbol(256); // end of block
    bits.finish();
}

/// CRC-32 (IEEE 802.3, reflected), the checksum of the gzip trailer; slicing-by-8 tables.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLES: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut i = 0;
        while i < 256 {
            let mut k = 1;
            while k < 8 {
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xff) as usize];
                k += 1;
            }
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xff) as usize]
            ^ TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
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

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    /// A deterministic pseudo-random generator (xorshift64*), so the inputs are reproducible.
    fn noise(seed: u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                alphabet[(x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn gzip_round_trips_through_an_independent_inflater() {
        let all_bytes: Vec<u8> = (0..=255).collect();
        let json = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/druid/tasks/index-parallel.json"
        ))
        .unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            b"a".to_vec(),
            b"abc".to_vec(),
            b"abcd".to_vec(),
            b"abcdabcd".to_vec(),
            vec![b'a'; 100_000],
            vec![0u8; 70_000],
            all_bytes.repeat(300),
            noise(1, 200_000, &all_bytes),
            noise(2, 300_000, b"ab"),
            noise(3, 100_000, b"{}\":,abcdefgh0123 "),
            json.clone(),
            json.repeat(40),
        ];
        // Matches at the edge of the window: a block repeated at distances near 32 KiB.
        let block = noise(4, 40_000, &all_bytes);
        let mut edge = block.clone();
        edge.extend_from_slice(&block[..1000]);
        edge.extend_from_slice(&block[8_232..9_000]); // 41 000 - 8 232 = 32 768, the largest distance
        cases.push(edge);
        for (n, case) in cases.iter().enumerate() {
            let gz = gzip(case);
            assert_eq!(&gunzip(&gz), case, "case {n} (len {})", case.len());
        }
    }

    #[test]
    fn gzip_compresses_like_a_general_purpose_encoder() {
        use std::io::Write as _;
        let json = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/druid/tasks/index-parallel.json"
        ))
        .unwrap();
        let mut reference = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        reference.write_all(&json).unwrap();
        let reference = reference.finish().unwrap().len();
        let ours = gzip(&json).len();
        assert!(
            ours * 100 <= reference * 125,
            "ours {ours} bytes vs flate2 fast {reference} bytes for {} bytes of JSON",
            json.len()
        );
    }

    #[test]
    fn symbol_tables_match_the_rfc() {
        for len in MIN_LEN..=MAX_MATCH {
            let i = usize::from(LEN_INDEX[len - MIN_LEN]);
            let want = LEN_BASE
                .iter()
                .rposition(|&b| usize::from(b) <= len)
                .unwrap();
            assert_eq!(i, want, "length {len}");
            assert!(len - usize::from(LEN_BASE[i]) < 1 << LEN_EXTRA[i] || len == 258);
        }
        for dist in 1..=WINDOW {
            let i = usize::from(if dist <= 256 {
                DIST_INDEX[dist - 1]
            } else {
                DIST_INDEX[256 + ((dist - 1) >> 7)]
            });
            let want = DIST_BASE
                .iter()
                .rposition(|&b| usize::from(b) <= dist)
                .unwrap();
            assert_eq!(i, want, "distance {dist}");
            assert!(dist - usize::from(DIST_BASE[i]) < 1 << DIST_EXTRA[i]);
        }
    }

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        // Against the bitwise definition, across the 8-byte slicing boundary.
        fn bitwise(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        0xedb8_8320 ^ (crc >> 1)
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let data = noise(9, 1000, &(0..=255).collect::<Vec<u8>>());
        for len in [1, 7, 8, 9, 15, 16, 17, 999, 1000] {
            assert_eq!(crc32(&data[..len]), bitwise(&data[..len]), "len {len}");
        }
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
