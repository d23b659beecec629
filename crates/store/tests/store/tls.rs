//! TLS to PostgreSQL: a throwaway cluster with a certificate of a test CA,
//! reached with each `sslmode`.

use atrium_store::Database;
use atrium_store::connection::embedded::ThrowawayCluster;

/// A CA, and a server certificate it signed for `localhost` only.
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Atrium test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

async fn uses_tls(url: &str) -> anyhow::Result<bool> {
    let db = Database::connect(url, 1).await?;
    let session = db.connection().await?;
    let row = session
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn each_sslmode_encrypts_and_checks_as_libpq_does() {
    let (ca, cert, key) = certificates();
    let cluster =
        tokio::task::spawn_blocking(move || ThrowawayCluster::start_with_tls(&cert, &key))
            .await
            .unwrap()
            .expect("a TLS cluster");
    let port = cluster.tls_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let (other_ca, _, _) = certificates();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let url =
        |host: &str, query: &str| format!("postgresql://postgres@{host}:{port}/postgres{query}");
    let root = |file: &std::path::Path| format!("&sslrootcert={}", file.display());

    let mut ready = false;
    for _ in 0..100 {
        if uses_tls(&url("localhost", "?sslmode=require"))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the TLS cluster answers");

    // Encrypted, the certificate checked as far as the mode says.
    for query in [
        "?sslmode=require".to_owned(),
        format!("?sslmode=verify-full{}", root(&ca_file)),
        format!("?sslmode=verify-ca{}", root(&ca_file)),
    ] {
        assert!(
            uses_tls(&url("localhost", &query)).await.unwrap(),
            "{query}"
        );
    }
    // verify-ca forgives a name the certificate does not carry;
    // verify-full does not.
    let by_address = format!("?sslmode=verify-ca{}", root(&ca_file));
    assert!(uses_tls(&url("127.0.0.1", &by_address)).await.unwrap());
    let by_address = format!("?sslmode=verify-full{}", root(&ca_file));
    assert!(uses_tls(&url("127.0.0.1", &by_address)).await.is_err());
    // Another CA's certificate is refused.
    let foreign = format!("?sslmode=verify-full{}", root(&other_ca_file));
    assert!(uses_tls(&url("localhost", &foreign)).await.is_err());
    // No sslmode: in the clear, as before.
    assert!(!uses_tls(&url("localhost", "")).await.unwrap());
}
