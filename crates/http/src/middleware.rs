//! What wraps every route: request ids, body limits, timeouts, metrics and
//! request logs.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ChargedTenant;

pub const BODY_LIMIT: usize = 1024 * 1024;
/// CSV imports may be larger.
pub const IMPORT_BODY_LIMIT: usize = 20 * 1024 * 1024;
pub const IMPORT_PATH: &str = "/api/v1/contacts/import";
/// The web application's upload of the same file.
pub const WEB_IMPORT_PATH: &str = "/contacts/import/check";
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn wrap(router: Router, state: AppState) -> Router {
    router
        .layer(middleware::from_fn_with_state(state, observe_and_bound))
        .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Refuses oversized bodies early, bounds the request's time (503 when it
/// runs out: the transaction is rolled back and its statement cancelled by
/// the statement timeout), records metrics and logs the request.
async fn observe_and_bound(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // A pile-up is turned away at once, cheaply, instead of queueing for
    // memory and sessions; the health endpoints answer all the same.
    let _in_flight = match request.uri().path() {
        "/healthz" | "/readyz" | "/metrics" => None,
        _ => match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                metrics::counter!("atrium_http_requests_shed_total").increment(1);
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok());
                let busy = ApiError::unavailable("the server is at capacity; retry shortly", 1);
                return crate::web::refusal(request.uri().path(), busy, id).await;
            }
        },
    };
    let started = Instant::now();
    let charged = ChargedTenant::default();
    request.extensions_mut().insert(charged.clone());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let over_https = crate::web::session::over_https(&state.settings, peer, request.headers());
    // An import of a 100,000-row file takes minutes, not seconds.
    let is_import = [IMPORT_PATH, WEB_IMPORT_PATH].contains(&request.uri().path());
    let (limit, limit_text, timeout) = if is_import {
        (IMPORT_BODY_LIMIT, "20 MiB", IMPORT_TIMEOUT)
    } else {
        (BODY_LIMIT, "1 MiB", state.settings.request_timeout)
    };
    let too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit);
    let handled = async {
        if too_large {
            let error = ApiError::payload_too_large(limit_text);
            return crate::web::refusal(&path, error, Some(&request_id)).await;
        }
        // The whole body arrives before any handler starts: a slow upload
        // must not hold a tenant transaction (and connection) open.
        let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
            || request
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if !has_body {
            return next.run(request).await;
        }
        if is_import {
            // The import handler signs the user in before it reads a byte
            // of the file (to disk, see `spool_to_file`): an anonymous
            // upload is refused without costing 20 MiB.
            return next.run(request).await;
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
            let error = ApiError::payload_too_large(limit_text);
            return crate::web::refusal(&path, error, Some(&request_id)).await;
        };
        next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
            .await
    };
    // Every log line of the request, an internal error's included, carries
    // its id, route, tenant and user (the last two once known).
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        %method,
        route = %route,
        tenant = tracing::field::Empty,
        user = tracing::field::Empty,
    );
    let handled = tracing::Instrument::instrument(handled, span.clone());
    // The clock runs outside the deadline: a request that runs out of
    // time still has its slow statements logged and its database time
    // charged.
    let (response, db) = atrium_store::connection::db_time::measured(
        &request_id,
        state.settings.slow_statement,
        tokio::time::timeout(timeout, handled),
    )
    .await;
    let response = match response {
        Ok(response) => response,
        Err(_) => {
            crate::web::refusal(
                &path,
                ApiError::unavailable("the request took too long", 1),
                Some(&request_id),
            )
            .await
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let tenant = charged.get();
    if let Some(tenant_id) = tenant {
        state.metrics.record(tenant_id, elapsed, status >= 500, db);
        if db.slow_statements > 0 {
            // Labelled by tenant id: only tenants with slow statements
            // get a series, and the id never changes (a subdomain can).
            metrics::counter!("atrium_slow_statements_total", "tenant_id" => tenant_id.to_string())
                .increment(u64::from(db.slow_statements));
        }
    }
    // An import is the one request meant to run for minutes: it is bounded
    // by its row limit and works one batch transaction at a time, on one
    // of the tenant's connections. Charged to the per-second budget, one
    // file would lock the tenant's people out for the longest debt.
    if let Some(policy) = charged.policy()
        && !is_import
    {
        policy.charge_db_time(db.time);
    }
    metrics::counter!("atrium_http_requests_total", "route" => route.clone(), "method" => method.to_string(), "status" => status.to_string()).increment(1);
    metrics::histogram!("atrium_http_request_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if elapsed > Duration::from_secs(1) {
        span.in_scope(|| {
            tracing::warn!(
                status,
                elapsed_ms = elapsed.as_millis() as u64,
                "slow request"
            )
        });
    } else {
        span.in_scope(|| {
            tracing::info!(status, elapsed_ms = elapsed.as_millis() as u64, "request")
        });
    }
    let mut response = response;
    if over_https {
        crate::web::session::mark_cookies_secure(response.headers_mut());
    }
    if !response.headers().contains_key(REQUEST_ID)
        && let Ok(value) = HeaderValue::from_str(&request_id)
    {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Writes a body to an anonymous temporary file (gone when dropped) and
/// rewinds it; `None` when the body is longer than `limit` or breaks off.
/// Imports go to disk, not memory: a 20 MiB file times a few concurrent
/// imports would otherwise sit in the heap.
pub(crate) async fn spool_to_file(
    body: axum::body::Body,
    limit: usize,
) -> anyhow::Result<Option<tokio::fs::File>> {
    use futures::StreamExt;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let file = tokio::task::spawn_blocking(tempfile::tempfile).await??;
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
    let mut stream = body.into_data_stream();
    let mut written = 0;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Ok(None);
        };
        written += chunk.len();
        if written > limit {
            return Ok(None);
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    let mut file = file.into_inner();
    file.rewind().await?;
    Ok(Some(file))
}
