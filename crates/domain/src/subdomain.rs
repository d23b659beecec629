use crate::Invalid;

/// Names a customer may not take because they are (or will be) ours.
const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "mail",
    "smtp",
    "imap",
    "pop",
    "ftp",
    "ns1",
    "ns2",
    "dns",
    "static",
    "assets",
    "cdn",
    "media",
    "img",
    "images",
    "status",
    "help",
    "support",
    "docs",
    "blog",
    "dev",
    "staging",
    "test",
    "demo-admin",
    "platform",
    "console",
    "dashboard",
    "login",
    "auth",
    "sso",
    "account",
    "accounts",
    "billing",
    "root",
    "system",
    "internal",
    "template",
    "public",
    "postgres",
    "atrium",
    "localhost",
    "webmail",
    "mx",
];

/// A tenant's subdomain: an RFC 1123 label in lower case, 3–63 characters,
/// not on the reserved list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Subdomain(String);

impl Subdomain {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let value = raw.trim().to_ascii_lowercase();
        let fail = |message: &str| Err(Invalid::new("subdomain", message));
        if value.len() < 3 {
            return fail("must be at least 3 characters long");
        }
        if value.len() > 63 {
            return fail("must be at most 63 characters long");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return fail("may contain only letters a-z, digits 0-9 and hyphens");
        }
        if value.starts_with('-') || value.ends_with('-') {
            return fail("must not start or end with a hyphen");
        }
        if RESERVED.contains(&value.as_str()) {
            return Err(Invalid::new(
                "subdomain",
                format!("'{value}' is reserved; choose another"),
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Subdomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_label_and_lowers_it() {
        assert_eq!(Subdomain::parse("Acme-42").unwrap().as_str(), "acme-42");
    }

    #[test]
    fn each_rule_names_itself() {
        let msg = |s: &str| Subdomain::parse(s).unwrap_err().message;
        assert!(msg("ab").contains("at least 3"));
        assert!(msg(&"a".repeat(64)).contains("at most 63"));
        assert!(msg("acme_corp").contains("letters a-z"));
        assert!(msg("acme.corp").contains("letters a-z"));
        assert!(msg("-acme").contains("hyphen"));
        assert!(msg("acme-").contains("hyphen"));
        assert!(msg("www").contains("reserved"));
        assert!(msg("API").contains("reserved"));
        assert!(msg("ünï").contains("letters a-z"));
    }

    #[test]
    fn sixty_three_characters_are_fine() {
        assert!(Subdomain::parse(&"a".repeat(63)).is_ok());
    }
}
