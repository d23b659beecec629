//! Queued emails. Tenants queue them (insert only, their own tenant); the
//! operator's tools and the sender read and send them.
//!
//! An invitation or reset email carries a working token until it is sent
//! or the token expires. The application's login must read the outbox to
//! send it, so SQL run as that login (an injection that resets its role)
//! could read every pending token. When the process holds a key
//! ([`use_key`]: the embedded default keeps one in its data directory, a
//! server elsewhere takes `ATRIUM_SECRET_KEY`), bodies are sealed with
//! ChaCha20-Poly1305 before they are stored, and only processes holding
//! the key read them. Bodies stored without a key stay readable as they
//! are.

use std::sync::OnceLock;

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use chrono::{DateTime, Utc};

use crate::{Database, StoreError, TenantTx};

pub struct NewEmail<'a> {
    /// The recipient, called `to` everywhere but in SQL, where `to` is a
    /// keyword and the column is `to_email`.
    pub to: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub token_expires_at: Option<DateTime<Utc>>,
}

/// How a sealed body starts; the rest is base64 of nonce and ciphertext.
const SEALED: &str = "sealed:v1:";
/// What a process without the key shows of a sealed body.
const UNREADABLE: &str = "[sealed: this process has no key to read it]";

static KEY: OnceLock<Key> = OnceLock::new();

/// The key this process seals and opens bodies with, set once at start.
pub fn use_key(key: [u8; 32]) {
    let _ = KEY.set(Key::from(key));
}

/// A key written as 64 hexadecimal digits (`ATRIUM_SECRET_KEY`).
pub fn key_from_hex(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            anyhow::anyhow!("the secret key must be 64 hexadecimal digits (32 bytes)")
        })?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// The key kept in `file` (readable by its owner only), made on first use.
pub fn key_in_file(file: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(file) {
        Ok(text) => key_from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", file.display()))?;
            writeln!(out, "{}", hex::encode(key))?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", file.display())),
    }
}

/// Whether this process seals the bodies it queues.
pub fn seals() -> bool {
    KEY.get().is_some()
}

fn seal(body: &str) -> String {
    match KEY.get() {
        Some(key) => seal_with(key, body),
        None => body.to_owned(),
    }
}

fn seal_with(key: &Key, body: &str) -> String {
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = ChaCha20Poly1305::new(key)
        .encrypt(&nonce, body.as_bytes())
        .expect("sealing a short text cannot fail");
    let mut bytes = nonce.to_vec();
    bytes.extend(sealed);
    format!(
        "{SEALED}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The body as written: opened when sealed (if this process can).
fn open(stored: &str) -> String {
    match stored.strip_prefix(SEALED) {
        None => stored.to_owned(),
        Some(_) => KEY
            .get()
            .and_then(|key| open_with(key, stored))
            .unwrap_or_else(|| UNREADABLE.to_owned()),
    }
}

fn open_with(key: &Key, stored: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored.strip_prefix(SEALED)?)
        .ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(12);
    let plain = ChaCha20Poly1305::new(key)
        .decrypt(Nonce::from_slice(nonce), sealed)
        .ok()?;
    String::from_utf8(plain).ok()
}

/// What `maintain` keeps of an email whose token expired: the body with
/// the token blanked (no secret is left, so it is stored readable), or,
/// when this process cannot open it, a line saying the link expired.
pub(crate) fn expired_body(stored: &str) -> String {
    let body = open(stored);
    if body == UNREADABLE {
        "[the link in this email has expired]".to_owned()
    } else {
        blank_token(&body)
    }
}

pub async fn enqueue(tx: &TenantTx, email: &NewEmail<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO public.outbox (tenant_id, to_email, kind, subject, body, token_expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &tx.tenant().id,
            &email.to,
            &email.kind,
            &email.subject,
            &seal(email.body),
            &email.token_expires_at,
        ],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedEmail {
    pub id: i64,
    pub tenant: Option<String>,
    pub to: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The newest emails first. A body whose token has expired is shown with
/// the token blanked even before `maintain` blanks it in the table.
pub async fn list(db: &Database, limit: i64) -> anyhow::Result<Vec<QueuedEmail>> {
    let session = db.connection().await?;
    let rows = session
        .query(
            "SELECT o.id, t.subdomain, o.to_email, o.kind, o.subject, o.body, o.created_at,
                    o.sent_at, (o.token_expires_at IS NOT NULL AND o.token_expires_at <= now())
             FROM public.outbox o LEFT JOIN public.tenants t ON t.id = o.tenant_id
             ORDER BY o.id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let expired: bool = r.get(8);
            let body = open(r.get(5));
            QueuedEmail {
                id: r.get(0),
                tenant: r.get(1),
                to: r.get(2),
                kind: r.get(3),
                subject: r.get(4),
                body: if expired { blank_token(&body) } else { body },
                created_at: r.get(6),
                sent_at: r.get(7),
            }
        })
        .collect())
}

/// Emails carry their token as `token=<value>` in a link; this is what a
/// sent or expired email keeps of it. Blanking twice changes nothing.
pub fn blank_token(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find("token=") {
        out.push_str(&rest[..at + "token=".len()]);
        rest = &rest[at + "token=".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        // An empty value was blanked before (or never held a token).
        if end > 0 {
            out.push_str("[expired]");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// An email claimed for sending.
pub struct Claimed {
    pub id: i64,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Claims up to `limit` emails due for sending, oldest first. A claim is a
/// five-minute lease (`next_attempt_at` moves ahead), so several server
/// processes never send the same email twice, and an email whose sender
/// died is retried after the lease. Emails whose token has expired are not
/// sent.
pub async fn claim_due(db: &Database, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    let session = db.connection().await?;
    let rows = session
        .query(
            "UPDATE public.outbox SET next_attempt_at = now() + interval '5 minutes'
             WHERE id IN (
               SELECT id FROM public.outbox
               WHERE sent_at IS NULL AND next_attempt_at <= now() AND attempts < 10
                 AND (token_expires_at IS NULL OR token_expires_at > now())
               ORDER BY next_attempt_at LIMIT $1
               FOR UPDATE SKIP LOCKED)
             RETURNING id, to_email, subject, body",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            to: r.get(1),
            subject: r.get(2),
            body: open(r.get(3)),
        })
        .collect())
}

/// Records a delivery: the token leaves the stored body with it.
pub async fn mark_sent(db: &Database, id: i64, body: &str) -> Result<(), StoreError> {
    db.connection()
        .await?
        .execute(
            "UPDATE public.outbox SET sent_at = now(), attempts = attempts + 1, body = $2,
                    last_error = NULL
             WHERE id = $1",
            &[&id, &blank_token(body)],
        )
        .await?;
    Ok(())
}

/// Records a failed attempt and when to try again (exponential backoff).
pub async fn mark_failed(db: &Database, id: i64, error: &str) -> Result<(), StoreError> {
    db.connection()
        .await?
        .execute(
            "UPDATE public.outbox SET attempts = attempts + 1, last_error = $2,
                    next_attempt_at = now() + make_interval(secs => 30 * power(2, attempts))
             WHERE id = $1",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_with_their_key_only() {
        let key = Key::from([7u8; 32]);
        let body = "Join us: https://acme.example/accept-invitation?token=abc123";
        let sealed = seal_with(&key, body);
        assert!(sealed.starts_with(SEALED) && !sealed.contains("abc123"));
        assert_ne!(sealed, seal_with(&key, body), "a fresh nonce each time");
        assert_eq!(open_with(&key, &sealed).as_deref(), Some(body));
        assert_eq!(open_with(&Key::from([8u8; 32]), &sealed), None);
        let mut tampered = sealed.clone();
        tampered.insert(SEALED.len() + 20, 'A');
        assert_eq!(open_with(&key, &tampered), None);
    }

    #[test]
    fn keys_are_64_hex_digits_and_a_key_file_is_made_once_for_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        assert!(key_from_hex(&"ab".repeat(32)).is_ok());
        assert!(key_from_hex("abc").is_err());
        assert!(key_from_hex(&"zz".repeat(32)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.key");
        let made = key_in_file(&file).unwrap();
        assert_eq!(
            key_in_file(&file).unwrap(),
            made,
            "read back, not made again"
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn tokens_in_links_are_blanked_and_the_rest_kept() {
        let body = "Hi,\nhttp://acme.localhost:8080/reset?token=AbC-123_x&x=1\nBye";
        assert_eq!(
            blank_token(body),
            "Hi,\nhttp://acme.localhost:8080/reset?token=[expired]&x=1\nBye"
        );
        assert_eq!(blank_token("no link"), "no link");
        let once = blank_token(body);
        assert_eq!(blank_token(&once), once, "blanking again changes nothing");
    }
}
