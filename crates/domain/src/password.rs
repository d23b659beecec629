use crate::Invalid;

/// A password that meets the policy: 10 to 72 bytes (72 is bcrypt's limit;
/// longer input would be silently truncated by the hash).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_BYTES: usize = 10;
    pub const MAX_BYTES: usize = 72;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::parse_field("password", raw)
    }

    pub fn parse_field(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        match raw.len() {
            n if n < Self::MIN_BYTES => Err(Invalid::new(
                field,
                format!("must be at least {} bytes long", Self::MIN_BYTES),
            )),
            n if n > Self::MAX_BYTES => Err(Invalid::new(
                field,
                format!("must be at most {} bytes long", Self::MAX_BYTES),
            )),
            _ => Ok(Self(raw.to_owned())),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(********)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_bytes() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("exactly10!").is_ok());
        assert!(Password::parse(&"x".repeat(72)).is_ok());
        assert!(Password::parse(&"x".repeat(73)).is_err());
        // 25 three-byte characters are 75 bytes: too long although 25 chars.
        assert!(Password::parse(&"€".repeat(25)).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
