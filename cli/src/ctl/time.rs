//! Timestamps as records print them.

/// `2023-11-14T22:13:20.123Z`: RFC 3339 in UTC, always with milliseconds
/// so that columns line up.
pub(super) fn rfc3339_millis(t: &prost_types::Timestamp) -> String {
    let mut t = *t;
    t.normalize();
    let millis = t.nanos / 1_000_000;
    let whole = prost_types::Timestamp {
        seconds: t.seconds,
        nanos: 0,
    }
    .to_string();
    let seconds = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{seconds}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_always_there() {
        let t = |seconds, nanos| rfc3339_millis(&prost_types::Timestamp { seconds, nanos });
        assert_eq!(t(1_700_000_000, 0), "2023-11-14T22:13:20.000Z");
        assert_eq!(t(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123Z");
        assert_eq!(t(0, 5_000_000), "1970-01-01T00:00:00.005Z");
    }
}
