//! Queued emails. Tenants queue them (insert only, their own tenant); the
//! operator's tools and the sender read and send them.

use chrono::{DateTime, Utc};

use crate::{Database, StoreError, TenantTx};

pub struct NewEmail<'a> {
    pub to: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub token_expires_at: Option<DateTime<Utc>>,
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
            &email.body,
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
/// the token blanked even before maintenance blanks it in the table.
pub async fn list(db: &Database, limit: i64) -> anyhow::Result<Vec<QueuedEmail>> {
    let session = db.session().await?;
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
            let body: String = r.get(5);
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
    let session = db.session().await?;
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
            body: r.get(3),
        })
        .collect())
}

/// Records a delivery: the token leaves the stored body with it.
pub async fn mark_sent(db: &Database, id: i64, body: &str) -> Result<(), StoreError> {
    db.session()
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
    db.session()
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
    use super::blank_token;

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
