//! Pipeline stages.

use axum::extract::Path;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::pipeline::{self, NewStage, StageChanges};
use atrium_store::pipeline::Stage;

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Authed, Json};
use crate::list::{Page, Query, position_page};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_stages, create_stage))
        .routes(routes!(update_stage, delete_stage))
        .routes(routes!(summary))
}

/// A stage: `probability` is a decimal string with two places.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StageView {
    name: String,
    position: i32,
    probability: String,
    /// `open`, `won` or `lost`.
    kind: String,
}

impl From<&Stage> for StageView {
    fn from(s: &Stage) -> Self {
        Self {
            name: s.name.clone(),
            position: s.position,
            probability: s.probability.clone(),
            kind: s.kind.clone(),
        }
    }
}

/// The tenant's stages in order; the cursor is a position in the pipeline.
#[utoipa::path(get, path = "/api/v1/pipeline/stages", tag = "pipeline", security(("session" = [])),
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<StageView>), (status = 422, body = Problem)))]
async fn list_stages(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<StageView>>> {
    let stages = authed.run(async |tx, _me| pipeline::list(tx).await).await?;
    Ok(axum::Json(position_page(
        stages.iter().map(StageView::from).collect(),
        &query,
    )?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStageBody {
    name: String,
    /// 0–100, a number or a decimal string.
    #[schema(value_type = String)]
    probability: Value,
    kind: Option<String>,
    /// 1-based; the stages from there on move down. Default: last.
    #[schema(value_type = Option<i32>)]
    position: Option<Value>,
}

/// Add a stage (managers and admins).
#[utoipa::path(post, path = "/api/v1/pipeline/stages", tag = "pipeline", security(("session" = [])),
    request_body = NewStageBody,
    responses((status = 201, body = StageView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_stage(
    authed: Authed,
    Json(body): Json<NewStageBody>,
) -> ApiResult<(StatusCode, axum::Json<StageView>)> {
    let new = NewStage {
        name: body.name,
        probability: body.probability,
        kind: body.kind,
        position: body.position,
    };
    let stage = authed
        .run(async |tx, me| pipeline::create(tx, me, new).await)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(StageView::from(&stage))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageChangesBody {
    name: Option<String>,
    #[schema(value_type = Option<String>)]
    probability: Option<Value>,
    kind: Option<String>,
    #[schema(value_type = Option<i32>)]
    position: Option<Value>,
}

/// Change a stage (managers and admins); a rename moves every deal with it.
#[utoipa::path(patch, path = "/api/v1/pipeline/stages/{name}", tag = "pipeline", security(("session" = [])),
    params(("name" = String, Path)), request_body = StageChangesBody,
    responses((status = 200, body = StageView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_stage(
    authed: Authed,
    Path(name): Path<String>,
    Json(body): Json<StageChangesBody>,
) -> ApiResult<axum::Json<StageView>> {
    let changes = StageChanges {
        name: body.name,
        probability: body.probability,
        kind: body.kind,
        position: body.position,
    };
    let stage = authed
        .run(async |tx, me| pipeline::update(tx, me, &name, changes).await)
        .await?;
    Ok(axum::Json(StageView::from(&stage)))
}

/// Delete a stage (managers and admins); 409 while any deal, deleted or
/// not, uses it.
#[utoipa::path(delete, path = "/api/v1/pipeline/stages/{name}", tag = "pipeline", security(("session" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_stage(authed: Authed, Path(name): Path<String>) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| pipeline::delete(tx, me, &name).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One stage's totals: `total_value` and `weighted_value` are decimal
/// strings; `weighted_value` = Σ value × probability / 100, rounded once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StageSummaryView {
    stage: String,
    count: i64,
    total_value: String,
    weighted_value: String,
}

/// Deals per stage, in stage order (stages with no deals included), not
/// counting deleted deals.
#[utoipa::path(get, path = "/api/v1/pipeline/summary", tag = "pipeline", security(("session" = [])),
    params(("owner_id" = Option<i32>, Query), ("expected_close_from" = Option<String>, Query),
           ("expected_close_to" = Option<String>, Query),
           ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<StageSummaryView>), (status = 422, body = Problem)))]
async fn summary(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<StageSummaryView>>> {
    let rows = authed
        .run(async |tx, _me| pipeline::summary(tx, query.all()).await)
        .await?;
    let data = rows
        .into_iter()
        .map(|r| StageSummaryView {
            stage: r.stage,
            count: r.count,
            total_value: r.total_value,
            weighted_value: r.weighted_value,
        })
        .collect();
    Ok(axum::Json(position_page(data, &query)?))
}
