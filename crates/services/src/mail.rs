//! Delivering the outbox over SMTP, with retries and backoff.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use atrium_store::{Database, outbox};

/// Sends due emails every `interval` until the task is dropped. Failures
/// are recorded on the email and retried with exponential backoff (up to
/// ten attempts); a sent email keeps no token.
pub async fn run_sender(
    db: Database,
    smtp_url: String,
    from: String,
    interval: Duration,
) -> anyhow::Result<()> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp_url)
        .map_err(|e| anyhow::anyhow!("ATRIUM_SMTP_URL is not a valid SMTP URL: {e}"))?
        .build();
    let from: Mailbox = from
        .parse()
        .map_err(|e| anyhow::anyhow!("the sender address {from:?} is not valid: {e}"))?;
    loop {
        if let Err(e) = send_due(&db, &transport, &from).await {
            tracing::warn!(error = format!("{e:#}"), "sending queued email");
        }
        tokio::time::sleep(interval).await;
    }
}

async fn send_due(
    db: &Database,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> anyhow::Result<()> {
    for email in outbox::claim_due(db, 20).await? {
        let message = email
            .to
            .parse::<Mailbox>()
            .map_err(anyhow::Error::from)
            .and_then(|to| {
                Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject)
                    .body(email.body.clone())
                    .map_err(anyhow::Error::from)
            });
        let sent = match message {
            Ok(message) => transport
                .send(message)
                .await
                .map(drop)
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                outbox::mark_sent(db, email.id, &email.body).await?;
                tracing::info!(email = email.id, "email sent");
            }
            Err(e) => {
                tracing::warn!(
                    email = email.id,
                    error = format!("{e:#}"),
                    "email not sent; will retry"
                );
                outbox::mark_failed(db, email.id, &format!("{e:#}")).await?;
            }
        }
    }
    Ok(())
}
