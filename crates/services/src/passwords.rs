//! Password hashing, off the async executor: bcrypt is slow on purpose.

use atrium_domain::Password;

/// bcrypt's work factor for stored passwords.
pub const BCRYPT_COST: u32 = 10;

pub async fn hash(password: &Password) -> anyhow::Result<String> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || bcrypt::hash(password.expose(), BCRYPT_COST))
        .await?
        .map_err(Into::into)
}

pub async fn verify(password: &str, hash: &str) -> anyhow::Result<bool> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
        .await?
        .map_err(Into::into)
}

/// A strong password for an admin who did not choose one: 20 characters
/// from an alphabet without look-alikes (about 115 bits).
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Password::parse("correct horse battery").unwrap();
        let h = hash(&p).await.unwrap();
        assert!(h.starts_with("$2b$10$"));
        assert!(verify("correct horse battery", &h).await.unwrap());
        assert!(!verify("wrong horse battery", &h).await.unwrap());
    }

    #[test]
    fn generated_passwords_meet_the_policy_and_differ() {
        let (a, b) = (generate(), generate());
        assert!(Password::parse(&a).is_ok());
        assert_ne!(a, b);
    }
}
