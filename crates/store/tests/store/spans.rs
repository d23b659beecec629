//! Fleet work logs inside a span per tenant, so a line about one tenant
//! says which.

use std::sync::{Arc, Mutex};

use atrium_store::fleet::{archive, migrate};
use atrium_testkit::migrated_database;

use crate::helpers::{new_tenant, with_extra_tenant_migration};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The test binary's log, with a line as each span closes. Global: a
/// thread-local subscriber races with other tests over tracing's callsite
/// cache.
fn captured_logs() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .finish(),
        )
        .expect("no other global subscriber in this test binary");
        captured
    })
}

#[tokio::test]
async fn provisioning_migrating_and_archiving_log_in_a_span_naming_the_tenant() {
    let logs = captured_logs();
    let t = migrated_database().await;
    let tenant = new_tenant(&t.db, "spanned").await;
    let sets = with_extra_tenant_migration("SELECT 1;");
    migrate::migrate_sets(&t.admin, sets, &Default::default(), &|_, _| {})
        .await
        .unwrap();
    archive::export(&t.admin, &tenant, tokio::io::sink())
        .await
        .unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for span in [
        "provision{tenant=spanned cluster=default}",
        "migrate_tenant{tenant=spanned schema=",
        "archive_export{tenant=spanned}",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(span) && l.contains("close")),
            "no closed span {span} in:\n{text}"
        );
    }
}
