//! Kubernetes names and label values: sanitising, checking, and the deterministic Job name.
//!
//! Task ids come from the submitting system (Druid ids contain `_`, `:` and `.`, and are often
//! longer than 63 characters), while Kubernetes accepts only DNS-1123 names and restricted label
//! values. This module owns every such conversion so that the host (which names the Jobs it
//! creates) and the adapters (which label them) agree byte for byte. [`job_name`] reproduces the
//! scheme of Druid's Kubernetes task runner exactly, including its Guava murmur3 hash, so Jobs
//! created by taskpod carry the names Druid itself would give them.

use std::fmt::Write as _;

/// Longest DNS-1123 label (Job names, label-key names, label values).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain (object names such as ConfigMaps, label-key prefixes).
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// How many characters of the sanitised task id [`job_name`] keeps (as Druid).
pub const JOB_NAME_PREFIX_LEN: usize = 30;

/// Why a label key, label value or name is not acceptable to Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty where Kubernetes requires a value.
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    /// The string is longer than Kubernetes allows.
    #[error("`{value}` is {len} characters long; a {what} may have at most {max}")]
    TooLong {
        /// What kind of string it is (e.g. "label value").
        what: &'static str,
        /// The offending string.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The string contains a character or shape Kubernetes rejects.
    #[error("`{value}` is not a valid {what}: {rule}")]
    Invalid {
        /// What kind of string it is (e.g. "label key").
        what: &'static str,
        /// The offending string.
        value: String,
        /// The rule it breaks, phrased as the fix.
        rule: &'static str,
    },
}

/// Murmur3 x64 128-bit hash of `data` (Austin Appleby's `MurmurHash3_x64_128`), returning
/// `(h1, h2)`.
///
/// Guava's `Hashing.murmur3_128(seed)` computes the same two words; its `HashCode` bytes are
/// `h1` little-endian followed by `h2` little-endian (see [`murmur3_128_hex`]).
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;

    let mut h1 = u64::from(seed);
    let mut h2 = u64::from(seed);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let (lo, hi) = block.split_at(8);
        let mut k1 = u64::from_le_bytes(lo.try_into().expect("8-byte half of a 16-byte block"));
        let mut k2 = u64::from_le_bytes(hi.try_into().expect("8-byte half of a 16-byte block"));

        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);

        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }

    let tail = blocks.remainder();
    if tail.len() > 8 {
        let mut k2 = 0u64;
        for (i, b) in tail[8..].iter().enumerate() {
            k2 ^= u64::from(*b) << (8 * i);
        }
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        let mut k1 = 0u64;
        for (i, b) in tail.iter().take(8).enumerate() {
            k1 ^= u64::from(*b) << (8 * i);
        }
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }

    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Guava's `Hashing.murmur3_128().hashString(s, UTF_8).toString()`: 32 lowercase hex digits,
/// the bytes of `h1` little-endian then of `h2` little-endian.
pub fn murmur3_128_hex(s: &str) -> String {
    let (h1, h2) = murmur3_x64_128(s.as_bytes(), 0);
    let mut out = String::with_capacity(32);
    for b in h1.to_le_bytes().iter().chain(h2.to_le_bytes().iter()) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The Kubernetes Job name for a task id, as Druid's `KubernetesOverlordUtils.convertTaskIdToJobName`.
///
/// The id loses every character that is not an ASCII letter or digit, is lowercased and cut to
/// its first [`JOB_NAME_PREFIX_LEN`] characters; then come `-` and [`murmur3_128_hex`] of the
/// whole original id. The result is a DNS-1123 label of at most 62 characters, the same for the
/// same id on every host, and distinct for ids that share their first 30 characters. An id with
/// no letter or digit at all (where Druid would produce an invalid name starting with `-`) is
/// named by the hash alone.
///
/// ```
/// use taskpod_adapter_sdk::names::job_name;
/// assert_eq!(
///     job_name("api-issued_kill_wikipedia_new_balhnoib_1000-01-01T00:00:00.000Z_2023-05-14T00:00:00.000Z_2023-05-15T17:28:42.526Z"),
///     "apiissuedkillwikipedianewbalhn-8916017dfd5469fe9a8881b1035497a2",
/// );
/// ```
pub fn job_name(task_id: &str) -> String {
    let hash = murmur3_128_hex(task_id);
    let mut name = String::with_capacity(JOB_NAME_PREFIX_LEN + 1 + hash.len());
    name.extend(
        task_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(JOB_NAME_PREFIX_LEN)
            .map(|c| c.to_ascii_lowercase()),
    );
    if !name.is_empty() {
        name.push('-');
    }
    name.push_str(&hash);
    name
}

/// A task id as a label value, as Druid's `convertTaskIdToK8sLabel`: ASCII letters and digits
/// only, lowercased, at most 63 characters (used for `druid.task.id` and `druid.task.group.id`).
pub fn task_id_label(task_id: &str) -> String {
    task_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_LABEL_LEN)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Makes any string a valid label value, as Druid's `convertStringToK8sLabel`: characters other
/// than `[A-Za-z0-9._-]` are removed, the result is cut to 63 characters and trimmed so that it
/// starts and ends with a letter or digit. The empty string is a valid label value and may be
/// returned.
pub fn sanitize_label_value(value: &str) -> String {
    let kept: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let trimmed = kept.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    // All characters are ASCII here, so byte slicing is character slicing.
    let cut = &trimmed[..trimmed.len().min(MAX_LABEL_LEN)];
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Makes a string a DNS-1123 label of at most `max_len` (≤ 63) characters: lowercased, every
/// character outside `[a-z0-9-]` replaced by `-`, runs of `-` collapsed, cut, and trimmed so it
/// starts and ends alphanumeric. Returns the empty string when nothing usable remains (callers
/// that need a name must then supply one, e.g. with [`job_name`]).
pub fn sanitize_dns1123_label(value: &str, max_len: usize) -> String {
    let max_len = max_len.min(MAX_LABEL_LEN);
    let mut out = String::with_capacity(value.len().min(max_len));
    for c in value.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
        if out.len() == max_len {
            break;
        }
    }
    let end = out.trim_end_matches('-').len();
    out.truncate(end);
    out
}

/// Makes a string a DNS-1123 subdomain of at most `max_len` (≤ 253) characters: dot-separated
/// DNS-1123 labels, each sanitised as by [`sanitize_dns1123_label`], empty labels dropped.
/// Returns the empty string when nothing usable remains.
pub fn sanitize_dns1123_subdomain(value: &str, max_len: usize) -> String {
    let max_len = max_len.min(MAX_SUBDOMAIN_LEN);
    let mut out = String::with_capacity(value.len().min(max_len));
    for part in value.split('.') {
        let label = sanitize_dns1123_label(part, MAX_LABEL_LEN);
        if label.is_empty() {
            continue;
        }
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + label.len() > max_len {
            let room = max_len.saturating_sub(out.len() + sep);
            let head = sanitize_dns1123_label(&label[..room.min(label.len())], MAX_LABEL_LEN);
            if !head.is_empty() {
                if sep == 1 {
                    out.push('.');
                }
                out.push_str(&head);
            }
            break;
        }
        if sep == 1 {
            out.push('.');
        }
        out.push_str(&label);
    }
    out
}

/// Whether `s` is a DNS-1123 label: 1–63 characters of `[a-z0-9-]`, starting and ending with a
/// letter or digit.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_dns1123_label)
}

/// Whether `s` is a valid label value: empty, or at most 63 characters of `[A-Za-z0-9._-]`
/// starting and ending with a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    is_qualified_name_part(s) || s.is_empty()
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Checks a label value, saying what is wrong and how to fix it.
pub fn check_label_value(value: &str) -> Result<(), NameError> {
    if value.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong {
            what: "label value",
            value: value.to_owned(),
            len: value.len(),
            max: MAX_LABEL_LEN,
        });
    }
    if !is_label_value(value) {
        return Err(NameError::Invalid {
            what: "label value",
            value: value.to_owned(),
            rule: "use only letters, digits, '.', '_' and '-', starting and ending with a letter or digit",
        });
    }
    Ok(())
}

/// Checks a label (or annotation) key: an optional DNS-1123 subdomain prefix and `/`, then a
/// name of 1–63 characters of `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), NameError> {
    if key.is_empty() {
        return Err(NameError::Empty("label key"));
    }
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.len() > MAX_SUBDOMAIN_LEN {
            return Err(NameError::TooLong {
                what: "label key prefix",
                value: prefix.to_owned(),
                len: prefix.len(),
                max: MAX_SUBDOMAIN_LEN,
            });
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(NameError::Invalid {
                what: "label key prefix",
                value: key.to_owned(),
                rule: "the part before '/' must be a lowercase DNS subdomain such as 'example.com'",
            });
        }
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong {
            what: "label key name",
            value: key.to_owned(),
            len: name.len(),
            max: MAX_LABEL_LEN,
        });
    }
    if !is_qualified_name_part(name) {
        return Err(NameError::Invalid {
            what: "label key",
            value: key.to_owned(),
            rule: "the name must be 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit, with at most one '/' after a DNS prefix",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors for Guava's `Hashing.murmur3_128().hashString(s, UTF_8).toString()`.
    ///
    /// Produced with PyPI's `mmh3` 5.3.1: `mmh3.hash_bytes(s.encode("utf-8")).hex()`. Its byte
    /// order is Guava's (h1 little-endian, then h2 little-endian): for "hell" it gives
    /// 67f8103e694299624753ebba820bdb92, i.e. h1 = 0x629942693e10f867, h2 = 0x92db0b82baeb5347,
    /// the pair in Guava's own `Murmur3Hash128Test`. The first vector also appears in Druid's
    /// `KubernetesOverlordUtilsTest.test_stripJobName`.
    const MMH3_VECTORS: &[(&str, &str)] = &[
        (
            "api-issued_kill_wikipedia_new_balhnoib_1000-01-01T00:00:00.000Z_2023-05-14T00:00:00.000Z_2023-05-15T17:28:42.526Z",
            "8916017dfd5469fe9a8881b1035497a2",
        ),
        ("", "00000000000000000000000000000000"),
        ("a", "897859f6655555855a890e51483ab5e6"),
        ("hell", "67f8103e694299624753ebba820bdb92"),
        ("hello", "029bbd41b3a7d8cb191dae486a901e5b"),
        (
            "index_parallel_wikipedia_kfjdnkeh_2026-11-23T10:15:02.117Z",
            "2d8caab432039730470cee250a99d5dd",
        ),
        (
            "The quick brown fox jumps over the lazy dog",
            "6c1b07bc7bbc4be347939ac4a93c437a",
        ),
        ("0123456789abcde", "5123bfc0f6d52da6f04c547c0cf5cc4f"),
        ("0123456789abcdef", "a7d14acf946de04bda08a7635c5bc387"),
        ("0123456789abcdef0", "75c0a58587ae24ebca283131b368fb73"),
        ("tâche_é_日本語_🚀", "b4a2f4ab321793fd30cf305714643740"),
        (
            "coordinator-issued_compact_1234_telemetry_wikipedia_geteditfailuresinnorthamerica_agg_summ_116_pcgkebcl_2023-07-19T16:53:11.416Z",
            "c28cf6dd2bbc47d9ae78f7894f51fd01",
        ),
        (
            "coordinator-issued_compact_1234_telemetry_wikipedia_geteditfailuresinnorthamerica_agg_summ_117_pcgkebcl_2023-07-19T16:53:11.416Z",
            "df25bd210a136ea2e3f86c992536d691",
        ),
    ];

    #[test]
    fn murmur3_matches_mmh3_and_guava() {
        for (input, want) in MMH3_VECTORS {
            assert_eq!(murmur3_128_hex(input), *want, "input {input:?}");
        }
        assert_eq!(
            murmur3_x64_128(b"hell", 0),
            (0x6299_4269_3e10_f867, 0x92db_0b82_baeb_5347)
        );
    }

    #[test]
    fn job_name_is_druids() {
        // Druid's KubernetesOverlordUtilsTest.test_stripJobName.
        assert_eq!(
            job_name(MMH3_VECTORS[0].0),
            "apiissuedkillwikipedianewbalhn-8916017dfd5469fe9a8881b1035497a2"
        );
        assert_eq!(
            job_name("index_parallel_wikipedia_kfjdnkeh_2026-11-23T10:15:02.117Z"),
            "indexparallelwikipediakfjdnkeh-2d8caab432039730470cee250a99d5dd"
        );
        assert_eq!(job_name("a"), "a-897859f6655555855a890e51483ab5e6");
    }

    #[test]
    fn job_names_are_valid_and_distinct() {
        let a = job_name(MMH3_VECTORS[11].0);
        let b = job_name(MMH3_VECTORS[11 + 1].0);
        assert_ne!(a, b);
        assert_eq!(a[..31], b[..31], "same 30-character prefix");
        for (id, _) in MMH3_VECTORS {
            let name = job_name(id);
            assert!(name.len() <= MAX_LABEL_LEN, "{name}");
            assert!(is_dns1123_label(&name), "{name:?} from {id:?}");
        }
        let empty = job_name("");
        assert_eq!(empty, "00000000000000000000000000000000");
        assert!(is_dns1123_label(&job_name("___...:::")));
        assert!(is_dns1123_label(&job_name(&"Ü".repeat(500))));
        assert!(is_dns1123_label(&job_name(&"x_".repeat(5000))));
    }

    #[test]
    fn task_id_labels_are_druids() {
        // Druid's KubernetesOverlordUtilsTest.test_stripTaskId.
        assert_eq!(
            task_id_label(MMH3_VECTORS[0].0),
            "apiissuedkillwikipedianewbalhnoib10000101t000000000z20230514t00"
        );
        assert_eq!(task_id_label(""), "");
    }

    #[test]
    fn label_values_are_sanitised() {
        assert_eq!(sanitize_label_value("index_parallel"), "index_parallel");
        assert_eq!(sanitize_label_value("_wiki pedia!_"), "wikipedia");
        assert_eq!(sanitize_label_value("...---"), "");
        assert_eq!(sanitize_label_value(""), "");
        let long = format!("{}_{}", "a".repeat(62), "b".repeat(10));
        let got = sanitize_label_value(&long);
        assert_eq!(
            got,
            "a".repeat(62),
            "cut at 63 then trimmed of the trailing '_'"
        );
        for v in ["x", "日本", "a.b-c_d", &"Z".repeat(100), "-a-", "ü-é"] {
            let s = sanitize_label_value(v);
            assert!(check_label_value(&s).is_ok(), "{v:?} -> {s:?}");
        }
    }

    #[test]
    fn dns_names_are_sanitised() {
        assert_eq!(sanitize_dns1123_label("My_Team  Name!", 63), "my-team-name");
        assert_eq!(sanitize_dns1123_label("--", 63), "");
        assert_eq!(sanitize_dns1123_label(&"ab".repeat(50), 10), "ababababab");
        assert_eq!(sanitize_dns1123_label("abcdefghi-jk", 10), "abcdefghi");
        assert_eq!(
            sanitize_dns1123_subdomain("Druid.Example..COM_x", 253),
            "druid.example.com-x"
        );
        let long = sanitize_dns1123_subdomain(&"abc.".repeat(100), 253);
        assert!(long.len() <= 253 && is_dns1123_subdomain(&long), "{long}");
        let cut = sanitize_dns1123_subdomain("aaaa.bbbb", 7);
        assert_eq!(cut, "aaaa.bb");
    }

    #[test]
    fn label_keys_are_checked() {
        for ok in [
            "app",
            "druid.k8s.peons",
            "taskpod.dev/task",
            "app.kubernetes.io/name",
            "a_b.c-d",
        ] {
            assert_eq!(check_label_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "Example.com/x",
            "a/b/c",
            "-x",
            "x-",
            "has space",
            &"k".repeat(64),
        ] {
            assert!(check_label_key(bad).is_err(), "{bad:?} accepted");
        }
        let err = check_label_key(&"k".repeat(64)).unwrap_err().to_string();
        assert!(err.contains("64") && err.contains("63"), "{err}");
    }

    #[test]
    fn dns_checks() {
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label("a_b"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }
}
