use crate::Invalid;

/// An email address as people type it: kept as given (trimmed), compared in
/// lower case by the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::parse_field("email", raw)
    }

    /// Same rules, reported against another field name (`admin.email`).
    pub fn parse_field(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let value = raw.trim();
        let fail = |message: &str| Err(Invalid::new(field, message));
        if value.is_empty() {
            return fail("is required");
        }
        if value.len() > 254 {
            return fail("must be at most 254 characters long");
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return fail("must be an email address like name@example.com");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if local.is_empty()
            || local.len() > 64
            || local.chars().any(|c| c.is_whitespace() || c == '@')
            || !domain_ok
        {
            return fail("must be an email address like name@example.com");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in ["a@b.co", "First.Last+tag@example.co.uk", " x@y.org "] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Email::parse(" x@y.org ").unwrap().as_str(), "x@y.org");
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "plain",
            "@x.com",
            "a@",
            "a@b",
            "a b@c.com",
            "a@b..com",
            "a@.b.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.com", "a".repeat(250))).is_err());
    }
}
