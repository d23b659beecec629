//! CRM record endpoints: one set of routes per record type, made from its
//! definition (the OpenAPI document describes them from the same
//! definitions, see `openapi.rs`), plus the few that one type has alone.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::records::{self, ENTITIES, Entity, ListRequest};
use atrium_store::records::RawRecord;

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Authed, Id, Json};
use crate::list::{Page, Query, encode_id_cursor, id_page};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(complete_activity))
        .routes(routes!(list_deal_contacts))
        .routes(routes!(put_deal_contact, delete_deal_contact))
        .routes(routes!(audit_history));
    for entity in ENTITIES {
        router = record_routes(router, entity);
    }
    router
}

/// The collection, the record, and restoring it, at `/api/v1/<table>`.
fn record_routes(
    router: OpenApiRouter<AppState>,
    entity: &'static Entity,
) -> OpenApiRouter<AppState> {
    let collection = format!("/api/v1/{}", entity.table);
    router
        .route(
            &collection,
            get(move |authed: Authed, query: Query| list(authed, entity, query))
                .post(move |authed: Authed, Json(body): Json<Value>| create(authed, entity, body)),
        )
        .route(
            &format!("{collection}/{{id}}"),
            get(move |authed: Authed, Id(id): Id, query: Query| fetch(authed, entity, id, query))
                .patch(
                    move |authed: Authed,
                          Id(id): Id,
                          headers: HeaderMap,
                          Json(body): Json<Value>| {
                        update(authed, entity, id, headers, body)
                    },
                )
                .delete(move |authed: Authed, Id(id): Id| delete(authed, entity, id)),
        )
        .route(
            &format!("{collection}/{{id}}/restore"),
            post(move |authed: Authed, Id(id): Id| restore(authed, entity, id)),
        )
}

fn with_etag(status: StatusCode, record: Value) -> impl IntoResponse {
    (
        status,
        [(header::ETAG, records::etag(&record))],
        axum::Json(record),
    )
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn list(
    authed: Authed,
    entity: &'static Entity,
    query: Query,
) -> ApiResult<axum::Json<Page<RawRecord>>> {
    // The records go out as PostgreSQL wrote them, unread.
    let page = authed
        .run(async |tx, me| -> ApiResult<_> {
            let request = ListRequest {
                params: query.all(),
                limit: query.limit()?,
                include_deleted: query.bool("include_deleted")?,
            };
            Ok(records::list(tx, me, entity, request).await?)
        })
        .await?;
    Ok(axum::Json(Page {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

async fn create(
    authed: Authed,
    entity: &'static Entity,
    body: Value,
) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        StatusCode::CREATED,
        authed
            .run(async |tx, me| records::create(tx, me, entity, body).await)
            .await?,
    ))
}

async fn fetch(
    authed: Authed,
    entity: &'static Entity,
    id: i32,
    query: Query,
) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        StatusCode::OK,
        authed
            .run(async |tx, me| -> ApiResult<_> {
                Ok(records::get(tx, me, entity, id, query.bool("include_deleted")?).await?)
            })
            .await?,
    ))
}

async fn update(
    authed: Authed,
    entity: &'static Entity,
    id: i32,
    headers: HeaderMap,
    body: Value,
) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        StatusCode::OK,
        authed
            .run(async |tx, me| {
                records::update(tx, me, entity, id, body, if_match(&headers).as_deref()).await
            })
            .await?,
    ))
}

async fn delete(authed: Authed, entity: &'static Entity, id: i32) -> ApiResult<StatusCode> {
    authed
        .run(async |tx, me| records::delete(tx, me, entity, id).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restore(authed: Authed, entity: &'static Entity, id: i32) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        StatusCode::OK,
        authed
            .run(async |tx, me| records::restore(tx, me, entity, id).await)
            .await?,
    ))
}

/// Stands for the record schemas in the annotations of the routes one
/// record type has alone; `openapi.rs` puts the schemas made from the
/// definitions in their place.
#[derive(utoipa::ToSchema)]
pub struct Contact;

#[derive(utoipa::ToSchema)]
pub struct Activity;

/// One audit event: `changes` maps each field to `{"from", "to"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// `create`, `update`, `delete` or `restore`.
    action: String,
    user_id: Option<i32>,
    at: String,
    #[schema(value_type = Object)]
    changes: Value,
}

/// A record's changes, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("session" = [])),
    params(("entity" = String, Query, description = "company, contact, deal or activity"),
           ("entity_id" = i32, Query), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<AuditEvent>), (status = 422, body = Problem)))]
async fn audit_history(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    Ok(axum::Json(
        authed
            .run(async |tx, _me| -> ApiResult<_> {
                let limit = query.limit()?;
                let entity = query
                    .str("entity")
                    .ok_or_else(|| ApiError::invalid_field("entity", "is required"))?;
                let id = query
                    .str("entity_id")
                    .and_then(|v| v.parse::<i32>().ok())
                    .ok_or_else(|| {
                        ApiError::invalid_field("entity_id", "must be the id of a record")
                    })?;
                let before = match query.id_cursor()? {
                    0 => None,
                    id => Some(i64::from(id)),
                };
                let mut events =
                    atrium_services::records::history(tx, entity, id, before, limit + 1).await?;
                let more = events.len() as i64 > limit;
                events.truncate(limit as usize);
                let next_cursor = more
                    .then(|| events.last().map(|(id, _)| encode_id_cursor(*id as i32)))
                    .flatten();
                Ok(Page {
                    data: events.into_iter().map(|(_, event)| event).collect(),
                    next_cursor,
                })
            })
            .await?,
    ))
}

/// Mark an activity done now (no change if it already is).
#[utoipa::path(post, path = "/api/v1/activities/{id}/complete", tag = "activities", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 200, body = Activity), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn complete_activity(authed: Authed, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(with_etag(
        StatusCode::OK,
        authed
            .run(async |tx, me| records::complete_activity(tx, me, id).await)
            .await?,
    ))
}

/// `{"contact_id", "role", "contact": {...}}`
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON for the OpenAPI document
pub struct DealContact {
    contact_id: i32,
    role: Option<String>,
    contact: Contact,
}

/// The contacts of a deal, with their roles.
#[utoipa::path(get, path = "/api/v1/deals/{id}/contacts", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DealContact>), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn list_deal_contacts(
    authed: Authed,
    Id(id): Id,
    query: Query,
) -> ApiResult<axum::Json<Page<Value>>> {
    let (limit, after) = (query.limit()?, query.id_cursor()?);
    let rows = authed
        .run(async |tx, me| records::deal_contacts(tx, me, id, after, limit + 1).await)
        .await?;
    Ok(axum::Json(id_page(rows, limit, |r| r.0, |r| r.1.clone())))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DealContactBody {
    /// e.g. decision_maker, influencer, user
    #[schema(value_type = Option<String>)]
    role: Option<Value>,
}

/// Link a contact to a deal, or change its role (idempotent).
#[utoipa::path(put, path = "/api/v1/deals/{id}/contacts/{contact_id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("contact_id" = i32, Path)), request_body = DealContactBody,
    responses((status = 200, body = DealContact), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn put_deal_contact(
    authed: Authed,
    axum::extract::Path((id, contact_id)): axum::extract::Path<(String, String)>,
    Json(body): Json<DealContactBody>,
) -> ApiResult<axum::Json<Value>> {
    let (id, contact_id) = ids(&id, &contact_id)?;
    Ok(axum::Json(
        authed
            .run(async |tx, me| {
                records::put_deal_contact(tx, me, id, contact_id, body.role.as_ref()).await
            })
            .await?,
    ))
}

/// Unlink a contact from a deal.
#[utoipa::path(delete, path = "/api/v1/deals/{id}/contacts/{contact_id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("contact_id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_deal_contact(
    authed: Authed,
    axum::extract::Path((id, contact_id)): axum::extract::Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (id, contact_id) = ids(&id, &contact_id)?;
    authed
        .run(async |tx, me| records::delete_deal_contact(tx, me, id, contact_id).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Two ids from a path; anything else is a record that is not there.
fn ids(a: &str, b: &str) -> ApiResult<(i32, i32)> {
    let parse = |s: &str| s.parse::<i32>().ok().filter(|n| *n > 0);
    parse(a)
        .zip(parse(b))
        .ok_or_else(|| ApiError::not_found("not found"))
}
