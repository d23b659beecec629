//! Liveness and readiness, on any host.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers a query within a second.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let probe = async {
        let session = state.db.session().await?;
        session.simple_query("SELECT 1").await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(1), probe).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable"})),
        ),
    }
}
