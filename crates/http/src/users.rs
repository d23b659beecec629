//! A tenant's users.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::users::{self, UpdateUser, UserView};
use atrium_store::users::User;

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Authed, Id, Json};
use crate::list::{Page, Query, id_page};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user, update_user, delete_user))
}

/// A record's version for `ETag` / `If-Match`: its id and last change.
pub(crate) fn etag(id: i32, updated_at: chrono::DateTime<chrono::Utc>) -> String {
    format!("\"{id}-{}\"", updated_at.timestamp_micros())
}

/// 412 when `If-Match` is given and names another version.
pub(crate) fn check_if_match(headers: &HeaderMap, current: &str) -> ApiResult<()> {
    let Some(given) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    if atrium_services::records::if_match_allows(given, current) {
        Ok(())
    } else {
        Err(ApiError::precondition_failed())
    }
}

fn with_etag(user: &User) -> impl IntoResponse + use<> {
    (
        [(header::ETAG, etag(user.id, user.updated_at))],
        axum::Json(UserView::from(user)),
    )
}

/// Users of the organisation (any signed-in role).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("session" = [])),
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query),
           ("include_deleted" = Option<bool>, Query, description = "managers and admins")),
    responses((status = 200, body = Page<UserView>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_users(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<UserView>>> {
    Ok(axum::Json(
        authed
            .run(async |tx, me| -> ApiResult<_> {
                let limit = query.limit()?;
                let rows = users::list(
                    tx,
                    me,
                    query.id_cursor()?,
                    limit + 1,
                    query.bool("include_deleted")?,
                )
                .await?;
                Ok(id_page(rows, limit, |u| u.id, |u| UserView::from(u)))
            })
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("session" = [])),
    params(("id" = i32, Path), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = UserView), (status = 404, body = Problem)))]
async fn get_user(authed: Authed, Id(id): Id, query: Query) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        &authed
            .run(async |tx, me| -> ApiResult<_> {
                Ok(users::get(tx, me, id, query.bool("include_deleted")?).await?)
            })
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChangesBody {
    first_name: Option<String>,
    last_name: Option<String>,
    /// `admin`, `manager`, `sales_rep` or `viewer`.
    role: Option<String>,
    /// `false` deactivates the user and ends their sessions.
    active: Option<bool>,
    /// Overrides of the role, e.g. `{"contacts.export": true}`.
    #[schema(value_type = Option<Object>)]
    permissions: Option<serde_json::Value>,
}

/// Change a user (admins). 409 if no active admin would be left.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("session" = [])),
    params(("id" = i32, Path)), request_body = UserChangesBody,
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
async fn update_user(
    authed: Authed,
    Id(id): Id,
    headers: HeaderMap,
    Json(body): Json<UserChangesBody>,
) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        &authed
            .run(async |tx, me| -> ApiResult<_> {
                if headers.contains_key(header::IF_MATCH) {
                    let current = users::get_for_change(tx, me, id).await?;
                    check_if_match(&headers, &etag(current.id, current.updated_at))?;
                }
                let request = UpdateUser {
                    first_name: body.first_name,
                    last_name: body.last_name,
                    role: body.role,
                    active: body.active,
                    permissions: body.permissions,
                };
                Ok(users::update(tx, me, id, request).await?)
            })
            .await?,
    ))
}

/// Deactivate and soft-delete a user (admins); their sessions end.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_user(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| users::delete(tx, me, id).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
