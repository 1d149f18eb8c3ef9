//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `128M`, `1e3`) as numbers: CPU in
//! millicores, memory in bytes. The host's output policy compares pods with its ceilings this
//! way; adapters can use it to check or derive resources from a task's settings.
//!
//! ```
//! use taskpod_adapter_sdk::quantity::{cpu_millis, memory_bytes};
//! assert_eq!(cpu_millis("500m"), Some(500));
//! assert_eq!(cpu_millis("1.5"), Some(1500));
//! assert_eq!(memory_bytes("1Gi"), Some(1 << 30));
//! assert_eq!(memory_bytes("12x"), None);
//! ```

/// A quantity in base units (cores, bytes); `None` when it is not a valid, finite,
/// non-negative quantity.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let value = num * factor;
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// A CPU quantity in millicores, rounded up as Kubernetes does.
pub fn cpu_millis(q: &str) -> Option<u64> {
    parse(q).map(|v| (v * 1000.0).ceil() as u64)
}

/// A memory (or any other non-CPU) quantity in bytes, rounded up as Kubernetes does.
pub fn memory_bytes(q: &str) -> Option<u64> {
    parse(q).map(|v| v.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities_are_read() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(cpu_millis("1u"), Some(1), "rounded up");
        assert_eq!(memory_bytes("1Gi"), Some(1 << 30));
        assert_eq!(memory_bytes("128M"), Some(128_000_000));
        assert_eq!(memory_bytes("1e3"), Some(1000));
        assert_eq!(memory_bytes(" 2Ki "), Some(2048));
    }

    #[test]
    fn what_is_not_a_quantity_is_none() {
        for bad in ["", "12x", "Gi", "-1", "1e400", "1.2.3", "m"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
