//! Parsing sizes ("64M") and durations ("30s") given on the command line.

use std::time::Duration;

/// Parses a byte size: a number with an optional K, M, G suffix (powers of
/// 1024; "KiB", "MB" and friends are accepted too). A bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size; write it like 64M, 512K or 2G"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}; use K, M or G")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a `--timeout`: a number with ms, s, m or h (a bare number is
/// seconds). It must be positive: zero is refused everywhere (`compare`,
/// `vm run`, `container run`) rather than meaning "never" in one command
/// and "no time at all" in another; leaving `--timeout` out gives the
/// command's default.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration; write it like 500ms, 30s or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown time unit {other:?} in {s:?}; use ms, s, m or h")),
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    let d = Duration::from_secs_f64(secs);
    if d.is_zero() {
        return Err(format!(
            "{s:?} is no time at all: give a positive duration such as 500ms, 30s or 10m, or leave --timeout out for \
             the default (no timeout in `container run`)"
        ));
    }
    Ok(d)
}

/// A `vm run --timeout`: as [`parse_timeout`], or `none` for a guest that
/// runs until it is stopped (a VM container's); `none` is the zero
/// duration, which `vm run` reads as no timeout.
pub fn parse_timeout_or_none(s: &str) -> Result<Duration, String> {
    if s.trim() == "none" {
        Ok(Duration::ZERO)
    } else {
        parse_timeout(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("3 weeks").is_err());
    }

    #[test]
    fn a_zero_timeout_is_refused_not_read_as_never_or_instant() {
        for zero in ["0", "0s", "0ms", "0.0", " 0 "] {
            let e = parse_timeout(zero).unwrap_err();
            assert!(e.contains("positive duration") && e.contains("leave --timeout out"), "{zero}: {e}");
        }
        // Too small to count is zero too, not a sub-nanosecond limit.
        assert!(parse_timeout("0.0000000001").is_err());
    }
}
