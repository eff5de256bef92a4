//! Lab names.

use super::error::{LabError, Result};

/// The longest lab name. `NAME-gw` must stay a short, readable namespace
/// name, and 15 is what an interface name may hold, should one ever carry it.
pub const MAX_NAME_LEN: usize = 15;

/// Checks that `name` matches `[a-z0-9][a-z0-9-]{0,14}`.
///
/// The three namespaces of a lab end in `-a`, `-b` and `-gw`, so two labs
/// with valid, different names never share a namespace.
///
/// # Errors
///
/// [`LabError::InvalidName`] saying which part of the rule `name` breaks.
pub fn validate(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(LabError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let Some(first) = name.bytes().next() else {
        return invalid("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return invalid("it is longer than 15 characters");
    }
    if first == b'-' {
        return invalid("it starts with '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("it has a character other than a-z, 0-9 and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in [
            "a",
            "0",
            "demo",
            "lt12345",
            "a-b-c",
            "x-",
            "abcdefghijklmno",
            "9lives",
        ] {
            assert!(validate(name).is_ok(), "{name:?} should be valid");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for (name, reason) in [
            ("", "empty"),
            ("-a", "starts with '-'"),
            ("abcdefghijklmnop", "longer than 15"),
            ("Demo", "character other than"),
            ("a_b", "character other than"),
            ("a.b", "character other than"),
            ("a/b", "character other than"),
            ("a b", "character other than"),
            ("é", "character other than"),
            ("../x", "character other than"),
        ] {
            let err = validate(name).expect_err(name).to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
            assert!(err.contains("invalid lab name"), "{name:?}: {err}");
        }
    }

    #[test]
    fn length_is_counted_in_bytes_after_the_alphabet_check() {
        // 15 ASCII characters pass; a 15-byte name with a multibyte character
        // fails on the alphabet, not the length.
        assert!(validate("abcdefghijklmn1").is_ok());
        let err = validate("abcdefghijklmé").unwrap_err().to_string();
        assert!(err.contains("character other than"), "{err}");
    }
}
