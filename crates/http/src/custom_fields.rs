//! Custom field definitions.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::custom_fields::{self, FieldChanges, NewField};
use atrium_store::custom_fields::FieldDefinition;

use crate::AppState;
use crate::error::{ApiResult, Problem};
use crate::extract::{Authed, Id, Json};
use crate::list::{Page, Query, id_page};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_fields, create_field))
        .routes(routes!(update_field, delete_field))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldView {
    id: i32,
    /// `contact`, `company` or `deal`.
    entity: String,
    key: String,
    label: String,
    /// `text`, `number`, `boolean`, `date`, `select` or `multiselect`.
    #[serde(rename = "type")]
    field_type: String,
    options: Option<Vec<String>>,
    required: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&FieldDefinition> for FieldView {
    fn from(d: &FieldDefinition) -> Self {
        Self {
            id: d.id,
            entity: d.entity.clone(),
            key: d.key.clone(),
            label: d.label.clone(),
            field_type: d.field_type.clone(),
            options: d
                .options
                .as_ref()
                .and_then(|o| serde_json::from_value(o.clone()).ok()),
            required: d.required,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// Definitions (any role), optionally of one `entity`.
#[utoipa::path(get, path = "/api/v1/custom-fields", tag = "custom fields", security(("session" = [])),
    params(("entity" = Option<String>, Query), ("limit" = Option<i64>, Query),
           ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<FieldView>), (status = 422, body = Problem)))]
async fn list_fields(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<FieldView>>> {
    let (limit, after) = (query.limit()?, query.id_cursor()?);
    let fields = authed
        .run(async |tx, _me| custom_fields::list(tx, query.str("entity"), after, limit + 1).await)
        .await?;
    Ok(axum::Json(id_page(
        fields,
        limit,
        |f| f.id,
        |f| FieldView::from(f),
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFieldBody {
    entity: String,
    key: String,
    label: String,
    #[serde(rename = "type")]
    field_type: String,
    #[schema(value_type = Option<Vec<String>>)]
    options: Option<Value>,
    required: Option<bool>,
}

/// Define a field (managers and admins); a key is unique per entity.
#[utoipa::path(post, path = "/api/v1/custom-fields", tag = "custom fields", security(("session" = [])),
    request_body = NewFieldBody,
    responses((status = 201, body = FieldView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_field(
    authed: Authed,
    Json(body): Json<NewFieldBody>,
) -> ApiResult<(StatusCode, axum::Json<FieldView>)> {
    let new = NewField {
        entity: body.entity,
        key: body.key,
        label: body.label,
        field_type: body.field_type,
        options: body.options,
        required: body.required,
    };
    let field = authed
        .run(async |tx, me| custom_fields::create(tx, me, new).await)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(FieldView::from(&field))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldChangesBody {
    label: Option<String>,
    #[schema(value_type = Option<Vec<String>>)]
    options: Option<Value>,
    required: Option<bool>,
}

/// Change a definition's label, options or required flag.
#[utoipa::path(patch, path = "/api/v1/custom-fields/{id}", tag = "custom fields", security(("session" = [])),
    params(("id" = i32, Path)), request_body = FieldChangesBody,
    responses((status = 200, body = FieldView), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_field(
    authed: Authed,
    Id(id): Id,
    Json(body): Json<FieldChangesBody>,
) -> ApiResult<axum::Json<FieldView>> {
    let changes = FieldChanges {
        label: body.label,
        options: body.options,
        required: body.required,
    };
    let field = authed
        .run(async |tx, me| custom_fields::update(tx, me, id, changes).await)
        .await?;
    Ok(axum::Json(FieldView::from(&field)))
}

/// Delete a definition: stored values stay, the key is no longer accepted.
#[utoipa::path(delete, path = "/api/v1/custom-fields/{id}", tag = "custom fields", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_field(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| custom_fields::delete(tx, me, id).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
