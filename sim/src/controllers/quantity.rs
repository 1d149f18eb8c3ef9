//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `128M`, `1e3`) as numbers, for the
//! scheduler's fit checks: CPU in millicores, everything else in base units (bytes).

/// Parses a quantity into base units (rounded up to whole units as Kubernetes does for
/// `Value()`); `None` when it is not a valid quantity.
pub(crate) fn parse_base(q: &str) -> Option<f64> {
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
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(num * factor)
}

/// CPU quantity in millicores (rounded up).
pub(crate) fn cpu_millis(q: &str) -> Option<u64> {
    parse_base(q).map(|v| (v * 1000.0).ceil().max(0.0) as u64)
}

/// Memory quantity in bytes (rounded up).
pub(crate) fn bytes(q: &str) -> Option<u64> {
    parse_base(q).map(|v| v.ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("128M"), Some(128_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("12x"), None);
    }
}
