//! Parsing of human durations on the command line: `90`, `1.5s`, `250ms`, `2m`, `1h`.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration: give a number with an optional unit, e.g. 30s, 250ms, 2m")]
    Empty,
    #[error("{0:?} is not a duration: use a number with an optional unit ms, s, m or h (e.g. 30s, 250ms, 2m)")]
    Invalid(String),
    #[error("{0:?} is too long: at most 365 days")]
    TooLong(String),
}

/// Parse `NUMBER[UNIT]` where UNIT is `ms`, `s` (default), `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale_ms: f64 = match unit.trim() {
        "" | "s" | "sec" => 1_000.0,
        "ms" => 1.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(DurationError::Invalid(s.to_string())),
    };
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return Err(DurationError::Invalid(s.to_string()));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| DurationError::Invalid(s.to_string()))?;
    let ms = value * scale_ms;
    if !ms.is_finite() || ms > 365.0 * 86_400_000.0 {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(Duration::from_micros((ms * 1_000.0).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for bad in ["s", "1.2.3s", "-1s", "5 parsecs", ".", "1e9"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            parse_duration("99999999h"),
            Err(DurationError::TooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_duration(&s);
        }
    }
}
