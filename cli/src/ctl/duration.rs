//! Durations as operators write them (`5s`, `250ms`, `1.5m`) and their
//! protobuf form.

use std::time::Duration;

use anyhow::{Context, Result};

/// Parses a number and a unit: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`.
///
/// # Errors
/// No unit, an unknown unit, a number that does not parse, or a duration
/// too long to represent.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{text:?} has no unit: write e.g. 5s or 250ms"))?;
    let (number, unit) = text.split_at(unit_at);
    let nanos_per_unit = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ns, us, ms, s, m or h"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: {number:?} is not a number; write e.g. 5s or 1.5s"))?;
    let nanos = (value * nanos_per_unit).round();
    if !(0.0..=u64::MAX as f64).contains(&nanos) {
        return Err(format!("{text:?} is too long"));
    }
    // In range and whole, checked above.
    Ok(Duration::from_nanos(nanos as u64))
}

/// The protobuf form of `d`.
///
/// # Errors
/// `d` is longer than protobuf durations go (about 10,000 years).
pub(super) fn to_proto(d: Duration) -> Result<prost_types::Duration> {
    prost_types::Duration::try_from(d).with_context(|| format!("{d:?} is too long"))
}

/// A protobuf duration as text, e.g. `1.2ms`; `?` for a negative one.
pub(super) fn show(d: &prost_types::Duration) -> String {
    Duration::try_from(*d).map_or_else(|_| "?".to_owned(), |d| format!("{d:.1?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_fractions_exactly() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1.2ms"), Ok(Duration::from_micros(1200)));
        assert_eq!(parse(" 0.25s "), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["5", "", "s", "-5s", "5 s", "5sec", "1.2.3s", "5d", "1e30h"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse("5"),
            Err("\"5\" has no unit: write e.g. 5s or 250ms".to_owned())
        );
    }

    #[test]
    fn shows_protobuf_durations_shortly() {
        let d = to_proto(Duration::from_micros(1200)).unwrap();
        assert_eq!(show(&d), "1.2ms");
        assert_eq!(
            show(&prost_types::Duration {
                seconds: -1,
                nanos: 0
            }),
            "?"
        );
    }
}
