//! The naming and input rules of SPEC.md, each failing with the field it concerns.

use crate::error::{Error, Result};

/// Longest instance name: `{name}-{8 hex}` must fit a 63-character Kubernetes name.
pub const MAX_INSTANCE_NAME: usize = 63 - 9;

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
}

/// An instance name: an RFC 1123 label starting with a letter, at most 54 characters.
pub fn instance_name(field: &str, s: &str) -> Result<()> {
    if s.len() > MAX_INSTANCE_NAME {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_INSTANCE_NAME} characters"),
        ));
    }
    if !is_label(s) {
        return Err(Error::invalid(field, "must be lowercase letters, digits and '-', start with a letter and end with a letter or digit"));
    }
    Ok(())
}

/// A DNS label: the same rules, at most 63 characters.
pub fn dns_label(field: &str, s: &str) -> Result<()> {
    if s.len() > 63 {
        return Err(Error::invalid(field, "must be at most 63 characters"));
    }
    if !is_label(s) {
        return Err(Error::invalid(field, "must be lowercase letters, digits and '-', start with a letter and end with a letter or digit"));
    }
    Ok(())
}

/// An image name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn image_name(field: &str, s: &str) -> Result<()> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, "must match [a-z0-9][a-z0-9_-]{0,62}"))
    }
}

/// A description: at most 1000 characters.
pub fn description(field: &str, s: &str) -> Result<()> {
    if s.chars().count() > 1000 {
        return Err(Error::invalid(field, "must be at most 1000 characters"));
    }
    Ok(())
}

/// A password for a fresh instance: 8 to 128 characters.
pub fn password(field: &str, s: &str) -> Result<()> {
    let n = s.chars().count();
    if !(8..=128).contains(&n) {
        return Err(Error::invalid(field, "must be 8 to 128 characters"));
    }
    if s.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL"));
    }
    Ok(())
}

/// Storage size: 1 to 16384 GiB.
pub fn storage_size(field: &str, n: i32) -> Result<()> {
    if !(1..=16384).contains(&n) {
        return Err(Error::invalid(field, "must be between 1 and 16384"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders-prod", "a1", "x-1-y"] {
            instance_name("name", ok).unwrap();
        }
        for bad in ["", "1abc", "-a", "a-", "Abc", "a_b", "a.b", &"a".repeat(55)] {
            let e = instance_name("name", bad).unwrap_err();
            assert_eq!(
                (e.code(), e.field()),
                ("BAD_USER_INPUT", Some("name")),
                "{bad}"
            );
        }
        instance_name("name", &"a".repeat(54)).unwrap();
        dns_label("dnsLabel", &"a".repeat(63)).unwrap();
        assert!(dns_label("dnsLabel", &"a".repeat(64)).is_err());
        for ok in ["0nightly", "orders_2026-11-25", "a"] {
            image_name("name", ok).unwrap();
        }
        for bad in ["", "_x", "-x", "X", "a b", &"a".repeat(64)] {
            assert!(image_name("name", bad).is_err(), "{bad}");
        }
        assert!(password("password", "short").is_err());
        password("password", "long enough").unwrap();
        assert!(password("password", &"x".repeat(129)).is_err());
        assert!(description("description", &"é".repeat(1000)).is_ok());
        assert!(description("description", &"é".repeat(1001)).is_err());
    }
}
