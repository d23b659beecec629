//! Secrets handed to people (session, invitation and reset tokens): 256
//! random bits shown once, stored only as their SHA-256.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub struct IssuedToken {
    /// What the person gets, once.
    pub token: String,
    /// What the database keeps.
    pub hash: String,
}

pub fn issue() -> IssuedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    IssuedToken {
        hash: hash(&token),
        token,
    }
}

/// The stored form of a presented token. Lookups compare hashes inside the
/// database, so the time they take says nothing about the token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let a = issue();
        let b = issue();
        assert_eq!(a.token.len(), 43);
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, hash(&a.token));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.token));
    }
}
