//! `serve --tls-cert --tls-key`: HTTPS with HTTP/2, a certificate reloaded
//! on SIGHUP without dropping open connections, and secure cookies.

use std::path::Path;

use atrium_testkit::migrated_database;

use crate::helpers::{Serving, assert_fails, command};

/// A self-signed certificate for localhost and acme.localhost: its PEM
/// and its key's.
fn self_signed() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "acme.localhost".to_owned(),
    ])
    .unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// A client that trusts `cert` alone and reaches every name on `port`.
fn client_trusting(cert: &str, port: u16) -> reqwest::Client {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .resolve("localhost", address)
        .resolve("acme.localhost", address)
        .build()
        .unwrap()
}

fn hang_up(server: &Serving) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_and_takes_a_new_certificate_on_sighup() {
    let t = migrated_database().await;
    let url = &t.url;
    crate::helpers::create_tenant(url, "acme");
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed();
    write_pair(dir.path(), &first);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let mut server = Serving::start(
        command(dir.path())
            .env("ATRIUM_DATABASE_URL", url)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0", "--unsafe-allow-privileged-login"])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key),
    );
    assert!(
        server.announced.contains("https://"),
        "{}",
        server.announced
    );
    let port = server.port;
    let health = format!("https://localhost:{port}/healthz");

    let kept = client_trusting(&first.0, port);
    let answer = kept.get(&health).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let http1 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(first.0.as_bytes()).unwrap())
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .http1_only()
        .build()
        .unwrap();
    let answer = http1.get(&health).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    // Cookies set over TLS are Secure.
    let sign_in = kept
        .get(format!("https://acme.localhost:{port}/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 200);
    let cookie = sign_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // A new certificate, read on SIGHUP.
    let second = self_signed();
    write_pair(dir.path(), &second);
    hang_up(&server);
    server.wait_for("reloaded the TLS certificate");
    // The connection opened before the reload still serves...
    let again = kept.get(&health).send().await.unwrap();
    assert_eq!(again.status(), 200, "the open connection was kept");
    // ...while new connections get the new certificate.
    assert!(
        client_trusting(&first.0, port)
            .get(&health)
            .send()
            .await
            .is_err(),
        "a new connection no longer gets the old certificate"
    );
    let fresh = client_trusting(&second.0, port)
        .get(&health)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);

    // A broken file on reload: the error is logged, the certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    hang_up(&server);
    server.wait_for("reloading the TLS certificate failed");
    let still = client_trusting(&second.0, port)
        .get(&health)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    server.stop();
}

#[test]
fn bad_certificates_stop_serve_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |cert: &Path, key: &Path| {
        command(dir.path())
            .env(
                "ATRIUM_DATABASE_URL",
                "postgresql://nobody@127.0.0.1:1/none",
            )
            .args(["serve", "--bind", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    assert_fails(&serve(&cert, &key), 1, "reading certificates from");
    let first = self_signed();
    let second = self_signed();
    std::fs::write(&cert, &first.0).unwrap();
    std::fs::write(&key, &second.1).unwrap();
    assert_fails(&serve(&cert, &key), 1, "does not go with the certificate");
    std::fs::write(&key, "no key here").unwrap();
    assert_fails(&serve(&cert, &key), 1, "reading a private key from");
    let only_cert = command(dir.path())
        .args(["serve", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_fails(&only_cert, 2, "tls-key");
}
