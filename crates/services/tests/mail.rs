//! The outbox sender against a minimal SMTP server and a real PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use atrium_testkit::migrated_database;

/// Accepts SMTP sessions and keeps each message's DATA.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let kept = messages.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            kept.lock().unwrap().push(std::mem::take(body));
                            data = None;
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, messages)
}

#[tokio::test]
async fn queued_emails_are_delivered_once_and_keep_no_token_after_sending() {
    let t = migrated_database().await;
    let session = t.db.connection().await.unwrap();
    session
        .batch_execute(
            "INSERT INTO public.outbox (to_email, kind, subject, body, token_expires_at) VALUES
               ('ann@example.com', 'password_reset', 'Reset', 'Open http://a.localhost/reset-password?token=SECRET123 now', now() + interval '1 hour'),
               ('bob@example.com', 'password_reset', 'Reset', 'Open http://a.localhost/reset-password?token=EXPIRED9 now', now() - interval '1 second')",
        )
        .await
        .unwrap();
    let (port, messages) = smtp_sink().await;
    let sender = tokio::spawn(atrium_services::mail::run_sender(
        t.db.clone(),
        format!("smtp://127.0.0.1:{port}"),
        "Atrium <no-reply@localhost>".into(),
        Duration::from_millis(50),
    ));
    let mut sent_body = None;
    for _ in 0..100 {
        let row = session
            .query_one(
                "SELECT sent_at IS NOT NULL, body FROM public.outbox WHERE to_email = 'ann@example.com'",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            sent_body = Some(row.get::<_, String>(1));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sender.abort();
    let stored = sent_body.expect("the email was sent");
    assert!(
        !stored.contains("SECRET123"),
        "the stored body keeps no token: {stored}"
    );
    assert!(stored.contains("token=[expired]"));
    let delivered = messages.lock().unwrap().clone();
    assert_eq!(
        delivered.len(),
        1,
        "only the unexpired email goes out: {delivered:?}"
    );
    assert!(
        delivered[0].contains("SECRET123"),
        "the recipient gets the link"
    );
    assert!(delivered[0].contains("ann@example.com"));
    let unsent: i64 = session
        .query_one(
            "SELECT count(*) FROM public.outbox WHERE sent_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unsent, 1, "the expired one stays unsent");
}

#[tokio::test]
async fn a_refused_delivery_is_retried_later_with_the_error_recorded() {
    let t = migrated_database().await;
    let session = t.db.connection().await.unwrap();
    session
        .batch_execute(
            "INSERT INTO public.outbox (to_email, kind, subject, body) VALUES
               ('carl@example.com', 'invitation', 'Hi', 'Welcome')",
        )
        .await
        .unwrap();
    // Nothing listens on this port: the connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sender = tokio::spawn(atrium_services::mail::run_sender(
        t.db.clone(),
        format!("smtp://127.0.0.1:{port}"),
        "Atrium <no-reply@localhost>".into(),
        Duration::from_millis(50),
    ));
    let mut attempts = 0;
    for _ in 0..100 {
        attempts = session
            .query_one("SELECT attempts FROM public.outbox", &[])
            .await
            .unwrap()
            .get::<_, i32>(0);
        if attempts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sender.abort();
    assert_eq!(attempts, 1, "one attempt, then a backoff");
    let row = session
        .query_one(
            "SELECT sent_at IS NULL, last_error IS NOT NULL, next_attempt_at > now() + interval '20 seconds'
             FROM public.outbox",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (true, true, true)
    );
}
