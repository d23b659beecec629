//! The platform API: the operator's view of every tenant.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::operator;
use atrium_services::tenants::{self, CreateTenant, TenantView, UpdateTenant};
use atrium_store::registry::Totals;

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Id, Json, Platform};
use crate::list::{Page, Query, id_page};
use crate::tenant_metrics::TenantMetricsView;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(stats))
        .routes(routes!(list_clusters))
        .routes(routes!(start_move, show_move))
        .routes(routes!(tenant_metrics))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantBody {
    name: String,
    subdomain: String,
    /// `small` (default), `medium` or `large`.
    tier: Option<String>,
    /// The data cluster to place the tenant on. Without it, the accepting
    /// cluster with the fewest tenants (ties by name). An unknown cluster,
    /// or one that takes no new tenants, is 422.
    cluster: Option<String>,
    admin: NewAdminBody,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdminBody {
    email: String,
    first_name: String,
    last_name: String,
    password: String,
}

/// Provision a tenant with its first admin.
#[utoipa::path(post, path = "/platform/v1/tenants", tag = "platform",
    security(("platform" = [])), request_body = NewTenantBody,
    responses((status = 201, body = TenantView), (status = 409, body = Problem),
              (status = 422, body = Problem), (status = 401, body = Problem)))]
async fn create_tenant(
    _: Platform,
    State(state): State<AppState>,
    Json(body): Json<NewTenantBody>,
) -> ApiResult<(StatusCode, axum::Json<TenantView>)> {
    let created = tenants::create(
        &state.fleet,
        CreateTenant {
            name: body.name,
            subdomain: body.subdomain,
            tier: body.tier,
            admin_email: body.admin.email,
            admin_first_name: body.admin.first_name,
            admin_last_name: body.admin.last_name,
            admin_password: body.admin.password,
            cluster: body.cluster,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TenantView::from(&created.tenant)),
    ))
}

/// Every tenant, by id, with its user count (from the registry's counters).
#[utoipa::path(get, path = "/platform/v1/tenants", tag = "platform",
    security(("platform" = [])),
    params(("limit" = Option<i64>, Query, description = "1–200, default 50"),
           ("cursor" = Option<String>, Query, description = "from the previous page")),
    responses((status = 200, body = Page<TenantView>), (status = 422, body = Problem)))]
async fn list_tenants(
    _: Platform,
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<axum::Json<Page<TenantView>>> {
    let limit = query.limit()?;
    let rows = tenants::page(&state.fleet, query.id_cursor()?, limit + 1).await?;
    Ok(axum::Json(id_page(
        rows,
        limit,
        |t| t.id,
        |t| TenantView::from(t),
    )))
}

/// One tenant with its record counts and schema version.
#[utoipa::path(get, path = "/platform/v1/tenants/{id}", tag = "platform",
    security(("platform" = [])), params(("id" = i32, Path)),
    responses((status = 200, body = TenantView), (status = 404, body = Problem)))]
async fn get_tenant(
    _: Platform,
    State(state): State<AppState>,
    Id(id): Id,
) -> ApiResult<axum::Json<TenantView>> {
    Ok(axum::Json(TenantView::from(
        &tenants::get(&state.fleet, id).await?,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChangesBody {
    name: Option<String>,
    subdomain: Option<String>,
    tier: Option<String>,
    /// `active`, `suspended` or `maintenance` (its API answers 503
    /// `maintenance` until `active` again).
    status: Option<String>,
    /// With `"status": "maintenance"`: what the tenant's people are told
    /// (at most 500 characters).
    maintenance_message: Option<String>,
}

/// Rename, re-tier, suspend, resume a tenant, or put it in maintenance.
#[utoipa::path(patch, path = "/platform/v1/tenants/{id}", tag = "platform",
    security(("platform" = [])), params(("id" = i32, Path)), request_body = TenantChangesBody,
    responses((status = 200, body = TenantView), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_tenant(
    _: Platform,
    State(state): State<AppState>,
    Id(id): Id,
    Json(body): Json<TenantChangesBody>,
) -> ApiResult<axum::Json<TenantView>> {
    let tenant = tenants::update(
        &state.admin_db,
        id,
        UpdateTenant {
            name: body.name,
            subdomain: body.subdomain,
            tier: body.tier,
            status: body.status,
            maintenance_message: body.maintenance_message,
            changed_by: Some("platform API".into()),
        },
    )
    .await;
    // Before answering, whether or not the change went through: a caller
    // that saw the answer must not be served the old entry next.
    state.directory.forget(id);
    Ok(axum::Json(TenantView::from(&tenant?)))
}

/// Delete a tenant: its schema, every row in it, its role and its registry row.
#[utoipa::path(delete, path = "/platform/v1/tenants/{id}", tag = "platform",
    security(("platform" = [])), params(("id" = i32, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_tenant(
    _: Platform,
    State(state): State<AppState>,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    let deleted = tenants::delete(&state.fleet, id).await;
    state.directory.forget(id);
    deleted?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StatsBody {
    tenant_count: i64,
    total_users: i64,
    total_companies: i64,
    total_contacts: i64,
    total_deals: i64,
    total_activities: i64,
}

/// System-wide totals, from the registry's counters.
#[utoipa::path(get, path = "/platform/v1/stats", tag = "platform",
    security(("platform" = [])), responses((status = 200, body = StatsBody)))]
async fn stats(_: Platform, State(state): State<AppState>) -> ApiResult<axum::Json<StatsBody>> {
    let Totals {
        tenant_count,
        total_users,
        total_companies,
        total_contacts,
        total_deals,
        total_activities,
    } = atrium_services::operator::totals(&state.fleet)
        .await
        .map_err(atrium_services::ServiceError::from)?;
    Ok(axum::Json(StatsBody {
        tenant_count,
        total_users,
        total_companies,
        total_contacts,
        total_deals,
        total_activities,
    }))
}

/// The tenant's requests over the last hour, as this server process saw
/// them (kept in memory): count, 5xx errors, latency p50/p99 and the time
/// its requests spent waiting on PostgreSQL. `atrium top` shows every
/// server's figures together.
#[utoipa::path(get, path = "/platform/v1/tenants/{id}/metrics", tag = "platform",
    security(("platform" = [])), params(("id" = i32, Path)),
    responses((status = 200, body = TenantMetricsView), (status = 404, body = Problem)))]
async fn tenant_metrics(
    _: Platform,
    State(state): State<AppState>,
    Id(id): Id,
) -> ApiResult<axum::Json<TenantMetricsView>> {
    // A tenant that does not exist is 404, not an empty window.
    tenants::get(&state.fleet, id).await?;
    Ok(axum::Json(TenantMetricsView::from(
        &state.metrics.window(id),
    )))
}

/// A data cluster as the platform API shows it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ClusterBody {
    name: String,
    /// Whether new tenants may be placed on it.
    accepting: bool,
    /// Whether this server reached it within five seconds just now.
    reachable: bool,
    tenant_count: i64,
    /// The size of its database in bytes; `null` when unreachable.
    size_bytes: Option<i64>,
}

/// Every data cluster the registry records: `default` is the home
/// database, the others are declared in the server's settings.
#[utoipa::path(get, path = "/platform/v1/clusters", tag = "platform",
    security(("platform" = [])), responses((status = 200, body = Vec<ClusterBody>)))]
async fn list_clusters(
    _: Platform,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Vec<ClusterBody>>> {
    let clusters = atrium_services::operator::clusters(&state.fleet).await?;
    Ok(axum::Json(
        clusters
            .into_iter()
            .map(|c| ClusterBody {
                name: c.entry.name,
                accepting: c.entry.accepting,
                reachable: c.reachable,
                tenant_count: c.entry.tenants,
                size_bytes: c.size_bytes,
            })
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The cluster to move the tenant to.
    to: String,
    /// The longest the tenant's writes may wait at the cut-over (default
    /// 2000, 50 to 60000); a cut-over that would take longer backs off and
    /// is tried again.
    max_pause_ms: Option<u64>,
}

/// A tenant's move as the registry records it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MoveView {
    tenant_id: i32,
    from: String,
    to: String,
    /// `preparing`, `copying`, `catching_up`, `cutting_over`, `done` or
    /// `failed`.
    state: String,
    /// Progress while it runs (tables copied, bytes, lag), the reason when
    /// it failed.
    detail: String,
    max_pause_ms: i32,
    /// When done: `copy_ms`, `rows`, `bytes`, `longest_pause_ms`,
    /// `verified` and each table's check.
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    started_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<operator::MoveRecord> for MoveView {
    fn from(m: operator::MoveRecord) -> Self {
        Self {
            tenant_id: m.tenant_id,
            from: m.source,
            to: m.target,
            state: m.state.as_str().to_owned(),
            detail: m.detail,
            max_pause_ms: m.max_pause_ms,
            result: m.result,
            started_at: m.started_at,
            updated_at: m.updated_at,
            finished_at: m.finished_at,
        }
    }
}

/// Start moving a tenant to another cluster. The move runs in this server
/// while the tenant keeps serving; `GET` on the same path follows it.
#[utoipa::path(post, path = "/platform/v1/tenants/{id}/move", tag = "platform",
    security(("platform" = [])), params(("id" = i32, Path)), request_body = MoveBody,
    responses((status = 202, body = MoveView), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn start_move(
    _: Platform,
    State(state): State<AppState>,
    Id(id): Id,
    Json(body): Json<MoveBody>,
) -> ApiResult<(StatusCode, axum::Json<MoveView>)> {
    let tenant = tenants::get(&state.fleet, id).await?;
    let max_pause_ms = body.max_pause_ms.unwrap_or(2000);
    if !(50..=60_000).contains(&max_pause_ms) {
        return Err(crate::error::ApiError::invalid_field(
            "max_pause_ms",
            "must be between 50 and 60000",
        ));
    }
    operator::check_move(&state.fleet, &tenant, &body.to).await?;
    let before = operator::latest_move(&state.fleet, id)
        .await?
        .map(|m| m.started_at);
    let (fleet, directory, to) = (
        state.fleet.clone(),
        state.directory.clone(),
        body.to.clone(),
    );
    let options = operator::MoveOptions {
        max_pause: std::time::Duration::from_millis(max_pause_ms),
        ..Default::default()
    };
    let moving = tenant.clone();
    tokio::spawn(async move {
        match operator::move_tenant(&fleet, &moving, &to, &options, &|_| {}).await {
            Ok(report) => tracing::info!(
                tenant = moving.id,
                to = %to,
                longest_pause_ms = report.longest_pause_ms,
                "tenant moved"
            ),
            Err(e) => tracing::warn!(tenant = moving.id, error = %e, "tenant move failed"),
        }
        directory.forget(moving.id);
    });
    // The move records itself first thing; answer with that record.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if let Some(record) = operator::latest_move(&state.fleet, id).await?
            && Some(record.started_at) != before
        {
            return Ok((StatusCode::ACCEPTED, axum::Json(record.into())));
        }
        if std::time::Instant::now() >= deadline {
            let now = chrono::Utc::now();
            return Ok((
                StatusCode::ACCEPTED,
                axum::Json(MoveView {
                    tenant_id: id,
                    from: tenant.cluster,
                    to: body.to,
                    state: "preparing".into(),
                    detail: "starting".into(),
                    max_pause_ms: max_pause_ms as i32,
                    result: None,
                    started_at: now,
                    updated_at: now,
                    finished_at: None,
                }),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The tenant's latest move: its state while it runs, its result when
/// done. 404 if the tenant was never moved.
#[utoipa::path(get, path = "/platform/v1/tenants/{id}/move", tag = "platform",
    security(("platform" = [])), params(("id" = i32, Path)),
    responses((status = 200, body = MoveView), (status = 404, body = Problem)))]
async fn show_move(
    _: Platform,
    State(state): State<AppState>,
    Id(id): Id,
) -> ApiResult<axum::Json<MoveView>> {
    tenants::get(&state.fleet, id).await?;
    let record = operator::latest_move(&state.fleet, id)
        .await?
        .ok_or_else(|| crate::error::ApiError::not_found("this tenant was never moved"))?;
    Ok(axum::Json(record.into()))
}
