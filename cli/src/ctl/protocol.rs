//! IP protocols as operators type them and as records print them.

/// A protocol argument as the API takes it: `tcp`, `udp`, `icmp` (any
/// case), or a number up to 255; `icmpv6` goes as its number, 58.
///
/// # Errors
/// Anything else.
pub(crate) fn parse(text: &str) -> Result<String, String> {
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "tcp" | "udp" | "icmp" => Ok(lower),
        "icmpv6" => Ok("58".to_owned()),
        n => n.parse::<u8>().map(|n| n.to_string()).map_err(|_| {
            format!("{text:?} is not a protocol: use tcp, udp, icmp, icmpv6 or a number up to 255")
        }),
    }
}

/// The name of protocol number `n`, or the number.
pub(super) fn name(n: u32) -> String {
    match n {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "icmpv6".to_owned(),
        132 => "sctp".to_owned(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_taken() {
        assert_eq!(parse("TCP"), Ok("tcp".to_owned()));
        assert_eq!(parse("icmpv6"), Ok("58".to_owned()));
        assert_eq!(parse("47"), Ok("47".to_owned()));
        assert!(parse("256").is_err());
        assert!(parse("quic").is_err());
    }

    #[test]
    fn numbers_are_named() {
        assert_eq!(name(6), "tcp");
        assert_eq!(name(58), "icmpv6");
        assert_eq!(name(47), "47");
    }
}
