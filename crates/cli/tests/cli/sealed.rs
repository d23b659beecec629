//! Queued emails are sealed at rest when the server holds a key: the
//! database holds no working token, and `atrium outbox` with the key reads
//! the email as it was written.

use std::io::{Read, Write};

use atrium_testkit::migrated_database;

use crate::helpers::{Serving, atrium, command, json, stderr};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn post(port: u16, host: &str, path: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test]
async fn reset_emails_are_sealed_in_the_database_and_read_back_with_the_key() {
    let t = migrated_database().await;
    let with_key = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        command(dir.path())
            .env("ATRIUM_DATABASE_URL", &t.url)
            .env("ATRIUM_SECRET_KEY", KEY)
            .args(args)
            .output()
            .unwrap()
    };
    let created = with_key(&[
        "tenant",
        "create",
        "--name",
        "Acme",
        "--subdomain",
        "acme",
        "--admin-email",
        "boss@acme.com",
        "--admin-password",
        "a-long-password",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));

    let dir = tempfile::tempdir().unwrap();
    let server = Serving::start(
        command(dir.path())
            .env("ATRIUM_DATABASE_URL", &t.url)
            .env("ATRIUM_SECRET_KEY", KEY)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--unsafe-allow-privileged-login",
            ]),
    );
    let answer = post(
        server.port,
        "acme.localhost",
        "/api/v1/auth/password-reset",
        r#"{"email": "boss@acme.com"}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    server.stop();

    let stored: String =
        t.db.connection()
            .await
            .unwrap()
            .query_one("SELECT body FROM public.outbox", &[])
            .await
            .unwrap()
            .get(0);
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains("token="), "{stored}");

    let read = json(&with_key(&["outbox", "--json"]));
    let body = read[0]["body"].as_str().unwrap();
    let token = body.split("token=").nth(1).unwrap_or_default();
    assert!(token.len() > 20, "the link and its token: {body}");
    let without_key = json(&atrium(&t.url, &["outbox", "--json"]));
    assert!(
        without_key[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("[sealed"),
        "{without_key}"
    );
}
