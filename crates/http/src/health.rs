//! Health, readiness, metrics and the OpenAPI document: on any host.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn router(openapi: Arc<serde_json::Value>) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the home database (the registry) answers a query within a
/// second. A data cluster that does not answer leaves the server ready,
/// since every other cluster's tenants are served, but is named:
/// `{"status": "degraded", "clusters_down": ["eu"]}`. Taking the server out
/// of a load balancer would not bring that cluster back.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let answers = futures::future::join_all(state.fleet.clusters().iter().map(|cluster| async {
        let answered = tokio::time::timeout(READY_WITHIN, cluster.db.ping()).await;
        (cluster.name.as_str(), matches!(answered, Ok(Ok(()))))
    }))
    .await;
    let home_up = answers[0].1;
    let down: Vec<&str> = answers
        .iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| *name)
        .collect();
    match (home_up, down.is_empty()) {
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "clusters_down": down})),
        ),
        (true, true) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        (true, false) => (
            StatusCode::OK,
            Json(json!({"status": "degraded", "clusters_down": down})),
        ),
    }
}

const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder (installed once, shared by every
/// server in the process).
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then
        // this handle still renders what it records, which is nothing.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples wait in buffers until the recorder's upkeep
        // folds them in, and `build_recorder` starts none: with nobody
        // scraping `/metrics`, every request's samples would stay for
        // good. A thread, not a task: the recorder outlives any runtime.
        let upkept = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkept.run_upkeep();
                    UPKEEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .expect("starting the metrics upkeep thread");
        handle
    })
}

/// How often buffered histogram samples are folded into their summaries.
const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Upkeep passes run so far (a test watches the thread work).
static UPKEEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// CPU, memory, open files and threads of this process, as the standard
/// `process_*` metrics.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    })
}

/// Process, pool and request figures. Labels are routes, methods and
/// statuses, never tenants: 10,000 tenants would make 10,000 series per
/// metric. Per-tenant figures are at `/platform/v1/tenants/{id}/metrics`
/// and `atrium top`.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    process_collector().collect();
    for cluster in state.fleet.clusters() {
        let pool = cluster.db.status();
        let name = cluster.name.clone();
        metrics::gauge!("atrium_db_pool_size", "cluster" => name.clone()).set(pool.size as f64);
        metrics::gauge!("atrium_db_pool_available", "cluster" => name.clone())
            .set(pool.available as f64);
        metrics::gauge!("atrium_db_pool_waiting", "cluster" => name).set(pool.waiting as f64);
    }
    let activity = state.db.activity();
    metrics::counter!("atrium_db_connections_opened_total").absolute(activity.connections_opened);
    metrics::counter!("atrium_db_connections_retired_total").absolute(activity.connections_retired);
    metrics::counter!("atrium_db_tenant_first_visits_total").absolute(activity.first_visits);
    for source in atrium_store::TenantConnectionSource::ALL {
        metrics::counter!("atrium_db_tenant_connections_total", "from" => source.label())
            .absolute(activity.tenant_connections_from(source));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_samples_are_folded_in_without_a_scrape() {
        super::prometheus();
        let before = super::UPKEEPS.load(std::sync::atomic::Ordering::Relaxed);
        let deadline = std::time::Instant::now() + 4 * super::METRICS_UPKEEP_INTERVAL;
        while super::UPKEEPS.load(std::sync::atomic::Ordering::Relaxed) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no upkeep ran: unscraped histogram samples would pile up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
